"""HpcSpawner: a JupyterHub server as a batch job on a compute node.

Built on batchspawner's protocol (the job reports its port to ``/hub/api/batchspawner``;
our launcher speaks it, with retries) with its defects replaced (shared design, "Known
defects"), and with an optional warm pool of pre-started jobs per user (``warm.py``):

- every path (form, REST ``user_options``, URL query) is validated in :meth:`start`
  by the profile's one gate, before anything is written or submitted (defects 2, 3);
- commands are argv lists through our transports, with timeouts (defect 4);
- the job id is saved to the hub database the moment submission returns (defect 5);
- job states come from the cluster's shared batched poller; "cannot ask" is never
  "gone", suspended and requeued jobs are alive (defect 6);
- a job that ends before reporting its port fails the spawn at once (defect 7);
- scripts never use ``--get-user-env`` (defect 8), and carry ``--no-requeue``.
"""

from __future__ import annotations

import asyncio
import time

from jupyterhub.spawner import Spawner
from sqlalchemy.orm import object_session
from tornado import web
from traitlets import Bool, Dict, Float, Integer, Unicode, default, observe

from hpcbridge.errors import HpcBridgeError
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.profiles.jobcopy import JOB_PROFILE_ENV, job_copy_json
from hpcbridge.spawner import (
    adopt,
    following,
    form,
    guard,
    jobenv,
    messages,
    options,
    records,
    serving,
    standin,
    teardown,
    warm,
)
from hpcbridge.spawner.registry import site_for

_STATE_KEYS = ("job_id", "cluster", "node", "token_digest", "reported_port", "env_file",
               "token_id", "session")


class HpcSpawner(Spawner):
    """Start each notebook server as a batch job described by a site profile."""

    site_profile = Unicode(
        "", config=True,
        help="Path of the site profile (YAML); required (``configure`` sets it). The "
        "testbed's is site_profiles/testbed.yaml.",
    )
    status_interval = Float(
        30.0, config=True,
        help="Seconds between the cluster-wide batched status queries (one per cluster).",
    )
    resolve_nodes_on_login = Bool(
        True, config=True,
        help="Resolve a compute node's name to an address on the login node (getent "
        "hosts), for hubs that cannot resolve the cluster's internal names themselves.",
    )
    walltime_warning = Integer(
        300, config=True,
        help="Warn (hub log) when a running server has fewer seconds of walltime left.",
    )
    job_tag = Unicode(
        "", config=True,
        help="Marks this hub's notebook jobs (``hpcb-nb.<tag>-<user>``) when several hubs "
        "submit to one cluster, so that each hub's orphan sweep cancels only its own jobs. "
        "Set it with ``configure(c, job_tag=...)``, which also tells the sweep.",
    )
    warm_handover_timeout = Float(
        30.0, config=True,
        help="Seconds a warm job that was waiting at the hub may take to report its port "
        "after the hand-over before the spawn falls back to a job of its own.",
    )
    bench_standin_server = Bool(
        False, config=True,
        help="Benchmarks only (``python -m bench scale``): jobs run a stand-in HTTP server "
        "(hpcbridge/spawner/standin.py) instead of JupyterLab. It serves no notebook and "
        "authenticates nobody; never set it on a hub people use.",
    )

    #: JupyterHub's traitlet, re-set by port_reported() after a re-attach
    api_token: str
    job_id = Unicode(None, allow_none=True)
    #: the options of the last job this server ran, put back when new ones are refused
    accepted_options = Dict(None, allow_none=True)
    cluster = Unicode(None, allow_none=True)
    node = Unicode(None, allow_none=True)
    token_digest = Unicode(None, allow_none=True)
    #: the private file holding the server's environment until the job reads it
    env_file = Unicode(None, allow_none=True)
    #: JupyterHub's database row of the token in the job's environment (not a secret)
    token_id = Integer(None, allow_none=True)
    #: the port the server reported; unset while the job waits in the queue
    reported_port = Integer(None, allow_none=True)
    #: the current job's session: the request part of its record (``records.py``)
    session = Dict(None, allow_none=True)

    @default("start_timeout")
    def _default_start_timeout(self) -> int:
        return 900  # queue waits are normal on a batch system

    @default("poll_interval")
    def _default_poll_interval(self) -> int:
        return 10  # reads the shared poller's answer: costs the scheduler nothing

    @default("http_timeout")
    def _default_http_timeout(self) -> int:
        return 120

    @default("ip")
    def _default_ip(self) -> str:
        return "0.0.0.0"

    @default("env_keep")
    def _default_env_keep(self) -> list[str]:
        return []  # the hub's own environment means nothing on a compute node

    @default("options_form")
    def _default_options_form(self):
        return options.options_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # start() checks options through the profile's gate; JupyterHub's fallback logs
        # every key as sent (megabytes, for a hostile one)
        return options.checked_in_start

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._port: asyncio.Future[int] | None = None
        self._events: asyncio.Queue[dict] = asyncio.Queue()
        self._warned = False
        self._unsubscribe = None
        #: the poller and job id ``_unsubscribe`` follows (spawner/following.py)
        self._following: tuple[object, str | None] | None = None
        self._info: JobInfo | None = None
        self._node_known = asyncio.Event()
        #: a queued job of a hub that stopped before the job ran; JupyterHub must not
        #: wait for its URL nor cancel it, the re-attach service starts it again
        self._detached = False
        #: how this server's last job ended on its own; kept in the spawner state so the
        #: spawn page can tell its user on her next visit, also after a hub restart
        self.last_end: str | None = None
        #: the current start's submission (env file, sbatch): a task of its own, so that
        #: cancelling start() cannot lose the job id or the file that commands already made
        self._submission: asyncio.Task[None] | None = None
        #: the clean-up after a stop, or after a start that was cancelled
        self._discarding: asyncio.Task[None] | None = None
        #: a cancelled start's own clean-up, if no stop() comes in ABANDON_GRACE seconds
        self._abandoning: asyncio.Task[None] | None = None
        #: the start under way was stopped: what its submission makes is cancelled
        self._abandoned = False
        #: (stage, time.monotonic()) of the current start, logged when it serves
        self._stages: list[tuple[str, float]] = []
        #: where the current start's job writes its log (named when it fails)
        self._log_folder: str | None = None
        #: the session whose record's end is being written (once per session)
        self._session_ended: str | None = None

    # -- shared site ------------------------------------------------------------------
    @property
    def site(self):
        return site_for(self.site_profile, self.status_interval)

    def _client(self):
        return self.site.client(self.cluster)

    def _poller(self):
        return self.site.poller(self.cluster)

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        # the job copy of the site profile (no hub secrets): batch notebooks and Dask in
        # the server check requests against the same limits as this spawner, on the
        # server's own cluster only (its scheduler commands reach no other)
        env[JOB_PROFILE_ENV] = job_copy_json(self.site.profile,
                                             self.site.cluster_name(self.cluster))
        env.update(records.job_env(self))  # the session record's request part
        if self.bench_standin_server:
            env[standin.STANDIN_ENV] = "1"
        return env

    # -- state ------------------------------------------------------------------------
    def get_state(self) -> dict:
        state = super().get_state()
        for key in _STATE_KEYS:
            if getattr(self, key):
                state[key] = getattr(self, key)
        if self._detached:
            state["detached"] = True  # JupyterHub may rebuild this object before re-attach
        if (accepted := guard.remember_options(self)) is not None:
            state["accepted_options"] = accepted
        if self.last_end:
            state["last_end"] = self.last_end
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        for key in _STATE_KEYS:
            setattr(self, key, state.get(key))
        self._detached = bool(state.get("detached"))
        self.accepted_options = state.get("accepted_options")  # type: ignore[assignment]
        self.last_end = state.get("last_end")

    def clear_state(self) -> None:
        super().clear_state()
        if self._detached:
            return  # keep the job for the re-attach service (see poll)
        self._revoke_job_token()  # after a restart, JupyterHub's stop finds no token to delete
        if self.job_id and self.env_file and self.reported_port is None and self._port is None:
            # not started by this hub process: JupyterHub's restart stops a server whose
            # job ended unread while the hub was down without asking us to stop anything
            teardown.remove_file_in_background(self, self.env_file)
        self.job_id = self.node = self.token_digest = self.reported_port = None
        self.env_file = None
        self.session = None  # type: ignore[assignment]

    def _save_state_now(self) -> None:
        """Write the job id to the hub database before waiting on anything (defect 5)."""
        if self.orm_spawner is None:
            return
        self.orm_spawner.state = self.get_state()
        session = object_session(self.orm_spawner)
        if session is not None:
            session.commit()

    # -- options ----------------------------------------------------------------------
    def options_from_form(self, formdata: dict) -> dict:
        return form.options_from_form(formdata)

    # -- lifecycle --------------------------------------------------------------------
    @teardown.forgotten_when_refused
    @teardown.cleaned_up_when_cancelled
    async def start(self) -> str:
        from hpcbridge.spawner.hubconfig import assert_safe_routes

        assert_safe_routes()
        loop = asyncio.get_running_loop()
        # ready for the port callback before the first await: a queued job may start now
        self._port = loop.create_future()
        self._detached = False
        await guard.check_identity(self.site, self.cluster, self.user.name)
        await teardown.settled(self)  # a stopped start's clean-up ends before this one begins
        self._abandoned = False
        if self.job_id:
            if await adopt.reattachable(self):
                # the job reports its port with the token it holds; port_reported() makes
                # it this server's token again (see there)
                self.log.info("re-attaching %s to job %s", self._log_name, self.job_id)
                # a failure stops the server, and clear_state() revokes the job's token;
                # not on the cancellation of a hub shutting down: the job stays queued
                return await self._wait_until_serving()
            self._port = loop.create_future()
        self.reported_port = None
        self._stages = [("start", time.monotonic())]
        request = await options.validated(self, jobenv.launch_command("ENV_FILE"))
        self.cluster, self._log_folder = request.cluster, request.log_folder
        records.begin(self, request)
        pool = warm.pool_for(self.site)
        job = pool.take(self.user.name, request) if pool.enabled else None
        if job is not None:
            url = await serving.start_warm(self, pool, job)
            if url is not None:
                return url
            self._port = loop.create_future()  # fall back to a job of its own
        self._submission = asyncio.ensure_future(serving.submit(self, request))
        await asyncio.shield(self._submission)
        return await self._wait_until_serving()

    def prewarm(self) -> None:
        """Start this user's warm jobs if the site keeps a pool (after login, spawn page)."""
        pool = warm.pool_for(self.site)
        if pool.enabled and not self.active:
            pool.prewarm(self.user.name, self.hub.api_url)

    @observe("token_digest")
    def _note_token_row(self, change) -> None:
        """See ``adopt.note_token_row``."""
        return adopt.note_token_row(self, change)

    def _revoke_job_token(self) -> None:
        """See ``adopt.revoke_job_token``."""
        return adopt.revoke_job_token(self)

    async def _wait_until_serving(self) -> str:
        """See ``serving.wait_until_serving``."""
        return await serving.wait_until_serving(self)

    def accepts_port_from(self, token: str | None) -> bool:
        """Does this server's job hold ``token``, while a start waits for its port? (port
        callback; ``adopt.accepts_port_from``)"""
        return adopt.accepts_port_from(self, token)

    def port_reported(self, port: int, token: str) -> None:
        """Take the port a job reported with ``token``, and the job's token as this
        server's own after a re-attach (``adopt.port_reported``)."""
        return adopt.port_reported(self, port, token)

    async def get_url(self) -> str:
        """Where the server is, when JupyterHub checks it at start-up (poll() said alive).

        A hub killed after the job reported its port but before start() returned never
        recorded the server's address, only the state did (the port, and the job whose
        node the poller names): the server is found there instead of being stopped.
        """
        url = await super().get_url()
        if self.reported_port is None or self.server is None or \
                self.server.port == self.reported_port:
            return url
        try:
            host = await self._node_address()
        except (HpcBridgeError, web.HTTPError) as exc:
            self.log.warning("%s: cannot find job %s's node again: %s", self._log_name,
                             self.job_id, exc)
            return url
        self.log.info("%s: job %s serves on %s:%s (the hub stopped while it started)",
                      self._log_name, self.job_id, host, self.reported_port)
        return f"http://{host}:{self.reported_port}"

    async def _node_address(self) -> str:
        """See ``serving.node_address``."""
        return await serving.node_address(self)

    async def _fresh_info(self) -> JobInfo | None:
        """This job's state after the poller's next round (one query for all waiters)."""
        return await self.site.fresh_info(self.cluster, self.job_id, self.user.name)

    async def poll(self) -> int | None:
        if teardown.in_flight(self):
            return None  # a submission or its clean-up is under way: stop() waits for it
        if not self.job_id:
            return 0
        if self._info is None or not self._info.state.is_terminal:
            following.follow(self)
        info = self._info or await self._fresh_info()
        alive = info is None or info.state is JobState.UNKNOWN or info.state.is_active
        if alive and self.reported_port is None and self._port is None:
            # queued when the hub last stopped: not serving yet, not to be cancelled
            self._detached = True
            self.log.info("%s: job %s was queued when the hub stopped; left for re-attach",
                          self._log_name, self.job_id)
            return 0
        if alive:
            self._warn_walltime(info)
            return None
        assert info is not None  # None counts as alive
        records.ended(self, self.job_id, info, ran=self.reported_port is not None)
        self.last_end = messages.describe_end(info)
        self.log.warning("%s: job %s ended: %s", self._log_name, self.job_id, self.last_end)
        return info.exit_code if info.exit_code else 1

    def _warn_walltime(self, info: JobInfo | None) -> None:
        if info is None or info.time_left is None or self._warned:
            return
        left = info.time_left.total_seconds()
        if info.state is JobState.RUNNING and left < self.walltime_warning:
            self._warned = True
            self.log.warning("%s: job %s reaches its walltime in %d s", self._log_name,
                             self.job_id, int(left))

    async def stop(self, now: bool = False) -> None:
        """Cancel the server's job, also one whose submission is still under way (the
        clean-up waits for it), and remove its env file if the job never read it."""
        if refusal := guard.name_refused(self.site, self.cluster, self.user.name):
            self.log.error("not stopping job %s: %s", self.job_id, refusal)  # never ours
            return
        info = self._info
        if (self.job_id and self.reported_port is None and info is not None
                and info.state in (JobState.PENDING, JobState.REQUEUED)):
            # e.g. Cancel on the progress page: the next form says what became of the job
            self.last_end = f"job {self.job_id} was cancelled while it was queued"
        self._abandoned = True
        teardown.take_over_abandon(self)
        if self._port is not None and not self._port.done():
            self._port.cancel()  # a start still waiting for its port ends here
        await asyncio.shield(teardown.begin_discard(self))

    # -- progress ---------------------------------------------------------------------
    def _emit(self, progress: int, message: str) -> None:
        self._events.put_nowait({"progress": progress, "message": message,
                                 "time": time.time()})

    async def progress(self):
        if self.last_end:
            yield {"progress": 1, "message": f"your previous server ended: {self.last_end}"}
        while True:
            event = await self._events.get()
            yield event


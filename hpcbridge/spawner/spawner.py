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
import dataclasses
import hmac
import functools
import json
import time
from collections.abc import Awaitable, Callable

from jupyterhub import orm
from jupyterhub.spawner import Spawner
from jupyterhub.utils import hash_token
from sqlalchemy.orm import object_session
from tornado import web
from traitlets import Bool, Dict, Float, Integer, Unicode, default, observe

from hpcbridge.errors import (
    HpcBridgeError,
    RequestError,
    SchedulerUnavailable,
    SubmitRefused,
    TransportError,
    Unreachable,
)
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.profiles import JobRequest, render_script, validate_request
from hpcbridge.profiles.jobcopy import JOB_PROFILE_ENV, job_copy_json
from hpcbridge.spawner import form, guard, jobenv, warm
from hpcbridge.spawner.registry import site_for

_STATE_KEYS = ("job_id", "cluster", "node", "token_digest", "reported_port", "env_file",
               "token_id")
#: what a full home (or an exhausted quota) says when the job's file is written
_HOME_FULL = ("No space left on device", "Disk quota exceeded")
#: background removals of env files (a reference keeps each task alive until it ends)
_TASKS: set[asyncio.Task] = set()
#: first and longest pause (seconds) between asking again while the cluster cannot answer
RETRY_PAUSES = (1.0, 10.0)
#: seconds a cancelled start waits for JupyterHub's stop() before it cleans up by itself
ABANDON_GRACE = 10.0
_STARTING = {JobState.PENDING: 20, JobState.REQUEUED: 20, JobState.RUNNING: 60,
             JobState.SUSPENDED: 40, JobState.COMPLETING: 90}


def _cleaned_up_when_cancelled(start: Callable[[HpcSpawner], Awaitable[str]]
                               ) -> Callable[[HpcSpawner], Awaitable[str]]:
    """A cancelled start() (a stop while starting, the start timeout) hands its clean-up
    to a background task (``_abandon``) and ends at once; any await in start() may be
    where the cancellation lands. A cancellation that something swallowed on the way
    (Python 3.11's ``asyncio.wait_for`` returns an inner result that arrives with the
    cancel) still counts: a start that was asked to stop never returns a server."""
    @functools.wraps(start)
    async def cancellable_start(self: HpcSpawner) -> str:
        try:
            url = await start(self)
        except asyncio.CancelledError:
            self._abandon()
            raise
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            self._abandon()
            raise asyncio.CancelledError
        return url
    return cancellable_start


def _forgotten_when_refused(start: Callable[[HpcSpawner], Awaitable[str]]
                            ) -> Callable[[HpcSpawner], Awaitable[str]]:
    """A start refused before anything ran leaves no row of a new named server
    (``guard.forget_unused_server``; shared design, invariant 6)."""
    @functools.wraps(start)
    async def refusable_start(self: HpcSpawner) -> str:
        try:
            return await start(self)
        except guard.Refusal:
            guard.forget_unused_server(self)
            raise
    return refusable_start


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
        return _options_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # start() checks options through the profile's gate; JupyterHub's fallback logs
        # every key as sent (megabytes, for a hostile one)
        return _options_checked_in_start

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._port: asyncio.Future[int] | None = None
        self._events: asyncio.Queue[dict] = asyncio.Queue()
        self._warned = False
        self._unsubscribe = None
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
        # the server check requests against the same limits as this spawner
        env[JOB_PROFILE_ENV] = job_copy_json(self.site.profile)
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
            task = asyncio.get_running_loop().create_task(self._remove_file(self.env_file))
            _TASKS.add(task)
            task.add_done_callback(_TASKS.discard)
        self.job_id = self.node = self.token_digest = self.reported_port = None
        self.env_file = None

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

    async def _validated(self, command: tuple[str, ...]):
        """The request of this start, checked by the profile's gate (400 and the last
        accepted options put back when refused) and for its user's identity (403)."""
        try:
            request = validate_request(self.site.profile, JobRequest.from_options(
                self.user_options or {}, user=self.user.name,
                job_name=jobenv.job_name(self.user.name, self.name, self.job_tag),
                command=command))
        except RequestError as exc:
            guard.keep_refused_form(self, dict(self.user_options or {}), exc.problems)
            guard.restore_options(self)
            raise guard.Refusal(400, str(exc)) from None
        await guard.check_identity(self.site, request.cluster, self.user.name)
        return request

    # -- lifecycle --------------------------------------------------------------------
    @_forgotten_when_refused
    @_cleaned_up_when_cancelled
    async def start(self) -> str:
        from hpcbridge.spawner.hubconfig import assert_safe_routes

        assert_safe_routes()
        loop = asyncio.get_running_loop()
        # ready for the port callback before the first await: a queued job may start now
        self._port = loop.create_future()
        self._detached = False
        await guard.check_identity(self.site, self.cluster, self.user.name)
        await self._settled()  # a stopped start's clean-up ends before this one begins
        self._abandoned = False
        if self.job_id:
            if await self._reattachable():
                # the job reports its port with the token it holds; port_reported() makes
                # it this server's token again (see there)
                self.log.info("re-attaching %s to job %s", self._log_name, self.job_id)
                # a failure stops the server, and clear_state() revokes the job's token;
                # not on the cancellation of a hub shutting down: the job stays queued
                return await self._wait_until_serving()
            self._port = loop.create_future()
        self.reported_port = None
        self._stages = [("start", time.monotonic())]
        request = await self._validated(jobenv.launch_command("ENV_FILE"))
        self.cluster, self._log_folder = request.cluster, request.log_folder
        pool = warm.pool_for(self.site)
        job = pool.take(self.user.name, request) if pool.enabled else None
        if job is not None:
            url = await self._start_warm(pool, job)
            if url is not None:
                return url
            self._port = loop.create_future()  # fall back to a job of its own
        self._submission = asyncio.ensure_future(self._submit(request))
        await asyncio.shield(self._submission)
        return await self._wait_until_serving()

    async def _submit(self, request) -> None:
        """Write the env file and submit the job; the job id is in the hub database when
        this returns. A task of its own: the commands run to their end on the login node
        whatever happens to start(), so only this task can learn what they made, and the
        clean-up of a stop waits for it (``_discard``)."""
        env_file = self.env_file = await self._write_env(request)
        self._stage("prepare")
        if self._abandoned:
            return  # stopped while the file was written: submit nothing (the clean-up
            # removes the file)
        script = render_script(self.site.profile, dataclasses.replace(
            request, command=jobenv.launch_command(env_file)))
        try:
            job_id = await self._client().submit(self.user.name, script)
        except (SubmitRefused, SchedulerUnavailable) as exc:
            self.env_file = None
            await self._cancel_job(None, env_file)
            if isinstance(exc, SubmitRefused):
                guard.restore_options(self)
            code = 400 if isinstance(exc, SubmitRefused) else 503
            raise guard.Failure(code, f"the scheduler refused the job: {exc}") from None
        self.job_id = job_id
        self.token_digest = jobenv.token_digest(self.api_token)
        self._save_state_now()
        self._stage("submit")
        self.log.info("%s: submitted job %s", self._log_name, job_id)
        self._emit(10, f"submitted job {job_id} to {request.queue} "
                       f"({request.cores} cores, {request.memory}, {request.walltime})")

    async def _start_warm(self, pool: warm.WarmPool, job: warm.WarmJob) -> str | None:
        """Serve from a warm job of this user; None if it fails (the caller submits)."""
        # the warm job's own file (its secret) is removed with it if it never started
        self.job_id, self.cluster, self.env_file = job.job_id, job.cluster, job.env_file
        self.token_digest = jobenv.token_digest(self.api_token)
        self._save_state_now()
        self._stage("prepare")
        waiting = job.connected
        self.log.info("%s: handing over warm job %s (%s)", self._log_name, job.job_id,
                      "waiting at the hub" if waiting else "not started yet")
        self._emit(10, f"taking over your pre-started job {job.job_id} (preset {job.preset})")
        pool.hand_over(job, json.loads(jobenv.env_document(self.get_env())))
        self._stage("handover")
        try:
            serving = self._wait_until_serving()
            if waiting:  # it was ready: it reports in well under a second, or it is broken
                async with asyncio.timeout(self.warm_handover_timeout):
                    return await serving
            return await serving
        except (TimeoutError, web.HTTPError) as exc:
            reason = "no port in time" if isinstance(exc, TimeoutError) else exc.log_message
            self.log.warning("%s: warm job %s failed (%s); submitting a job of its own",
                             self._log_name, job.job_id, reason)
            pool.release(job)
            self._unfollow()
            self._poller().untrack(job.job_id)
            await self._cancel_job(job.job_id, job.env_file)
            self.job_id = self.token_digest = self.node = self.env_file = None
            self._info = None
            self._node_known = asyncio.Event()
            return None

    def prewarm(self) -> None:
        """Start this user's warm jobs if the site keeps a pool (after login, spawn page)."""
        pool = warm.pool_for(self.site)
        if pool.enabled and not self.active:
            pool.prewarm(self.user.name, self.hub.api_url)

    def _stage(self, name: str) -> None:
        self._stages.append((name, time.monotonic()))

    def _log_stages(self) -> None:
        if len(self._stages) < 2:
            return
        parts = [f"{name} {now - before:.2f} s" for (_, before), (name, now)
                 in zip(self._stages, self._stages[1:], strict=False)]
        total = self._stages[-1][1] - self._stages[0][1]
        self.log.info("%s: spawn stages: %s (total %.2f s)", self._log_name, ", ".join(parts),
                      total)

    async def _write_env(self, request) -> str:
        try:
            return await jobenv.write_env_file(self._client(), self.user.name,
                                               request.home, self.get_env(),
                                               request.log_folder)
        except (TransportError, HpcBridgeError) as exc:
            if any(text in str(exc) for text in _HOME_FULL):
                # not an outage: retrying will not help until she frees space
                raise guard.Failure(
                    507, f"your home directory {request.home} is full; free some space and "
                         f"start again (cannot prepare the job: {exc})") from None
            raise guard.Failure(503, f"cannot prepare the job: {exc}") from None

    async def _reattachable(self) -> bool:
        """Can this start wait for the job of an earlier one? Else forget (or end) it."""
        info = await self._fresh_info()
        alive = info is not None and (info.state.is_active or info.state is JobState.UNKNOWN)
        if alive and self.reported_port is None:
            return True
        if alive:
            # it reported its port to an earlier start, with a token this start cannot
            # learn: JupyterHub's OAuth client for the server would never match it
            self.log.warning("%s: job %s reported its port before the hub stopped; its token "
                             "is lost, cancelling it and submitting a new one", self._log_name,
                             self.job_id)
            try:
                await self._client().cancel(self.user.name, [self.job_id])
            except SchedulerUnavailable:
                self.site.cancel_later(self.cluster, self.user.name, self.job_id)
        else:
            self.log.info("%s: job %s of a previous start is %s; submitting a new one",
                          self._log_name, self.job_id, info.state.value if info else "not known")
            await self._remove_env_file()  # e.g. cancelled in the queue while the hub was down
        self._revoke_job_token()
        self.clear_state()
        return False

    @observe("token_digest")
    def _note_token_row(self, change) -> None:
        """Remember which of JupyterHub's token rows the job was given (when the digest is
        set for the token JupyterHub made for this start), to revoke it should the job be
        dropped after a hub restart, when no one knows the token any more."""
        self.token_id = None
        session = object_session(self.orm_spawner) if self.orm_spawner is not None else None
        if session is None or not change.new or not self.api_token or \
                jobenv.token_digest(self.api_token) != change.new:
            return
        row = orm.APIToken.find(session, self.api_token)
        self.token_id = row.id if row is not None else None

    async def _remove_file(self, path: str) -> None:
        await self._cancel_job(None, path)  # during an outage: again in the background

    def _revoke_job_token(self) -> None:
        """Delete the token of a job that is gone or going, if it is not this start's.

        JupyterHub keeps a start's token in its database until a stop of a spawner
        holding it; after a restart no spawner holds it (docs/architecture.md,
        "Re-attach").
        """
        session = object_session(self.orm_spawner) if self.orm_spawner is not None else None
        if self.token_id is None or session is None:
            return
        row = session.get(orm.APIToken, self.token_id)
        self.token_id = None
        if row is None or row.user_id != self.orm_spawner.user_id or \
                (self.api_token and row.match(self.api_token)):
            return
        session.delete(row)
        session.commit()
        self.log.info("%s: revoked the API token of job %s", self._log_name, self.job_id)

    async def _wait_until_serving(self) -> str:
        self._follow()
        try:
            assert self._port is not None, "start() creates the port future before waiting"
            port = await self._port
        except asyncio.CancelledError:
            # a hub shutting down cancels the starts that wait: the queued job stays for
            # the re-attach, and needs its file; a stop cleans up (_abandon, stop)
            raise
        except BaseException:
            await self._remove_env_file()  # the job ended unread
            raise
        self._stage("port")
        host = await self._node_address()
        self._stage("address")
        self.reported_port = port
        self.last_end = None  # told at this start (progress); a new server is up
        self._emit(95, f"server starting on {self.node} port {port}")
        self._save_state_now()
        if await _listening(host, port, self.http_timeout):
            self._stage("listen")
        self._log_stages()
        return f"http://{host}:{port}"

    async def _remove_env_file(self) -> None:
        if self.env_file and self.reported_port is None:
            await self._remove_file(self.env_file)

    async def _cancel_job(self, job_id: str | None, env_file: str | None) -> None:
        """Remove a job's unread env file, then cancel the job (without its file a job
        cannot start a server); while the login node or the scheduler cannot be reached,
        keep trying in the background."""
        client = self._client()
        try:
            if env_file:
                await client.remove_file(self.user.name, env_file)
            if job_id:
                await client.cancel(self.user.name, [job_id])
        except (SchedulerUnavailable, Unreachable) as exc:
            self.log.error("%s: cannot cancel job %s or remove %s now (%s); retrying in "
                           "the background", self._log_name, job_id, env_file, exc)
            self.site.cancel_later(self.cluster, self.user.name, job_id, env_file=env_file)
        except HpcBridgeError as exc:
            self.log.error("%s: cannot cancel job %s or remove %s: %s", self._log_name,
                           job_id, env_file, exc)

    def _abandon(self) -> None:
        """start() was cancelled: by a stop or the start timeout (JupyterHub then calls
        stop() within a second or two), or by a hub shutting down (the queued job and its
        env file stay for the re-attach after the restart). If no stop() comes — JupyterHub's
        DELETE fails when a cancelled start takes over a second to end — clean up anyway."""
        self._abandoned = True
        if self._abandoning is None or self._abandoning.done():
            self._abandoning = asyncio.ensure_future(self._discard_after_grace())

    async def _discard_after_grace(self) -> None:
        await asyncio.sleep(ABANDON_GRACE)
        await self._begin_discard()

    def _take_over_abandon(self) -> None:
        """A stop or a new start cleans up now (and proves the hub is not shutting down)."""
        if self._abandoning is not None and not self._abandoning.done():
            self._abandoning.cancel()

    def _begin_discard(self) -> asyncio.Task[None]:
        if self._discarding is None or self._discarding.done():
            self._discarding = asyncio.ensure_future(self._discard())
        return self._discarding

    async def _discard(self) -> None:
        """Cancel this server's job and remove its unread env file, after the submission
        under way (if any) has ended: a job submitted for a stopped server is never missed."""
        submission, self._submission = self._submission, None
        if submission is not None:
            await asyncio.wait([submission])
            if not submission.cancelled() and submission.exception() is not None:
                self.log.info("%s: the stopped start's submission failed: %s",
                              self._log_name, submission.exception())
        job_id = self.job_id
        env_file = self.env_file if self.reported_port is None else None
        self._unfollow()
        if job_id:
            self._poller().untrack(job_id)
        self._info = None
        if job_id or env_file:
            await self._cancel_job(job_id, env_file)
        self.job_id = self.env_file = self.token_digest = self.node = None
        self.reported_port = None
        self._save_state_now()

    def _in_flight(self) -> bool:
        return any(t is not None and not t.done()
                   for t in (self._submission, self._discarding, self._abandoning))

    async def _settled(self) -> None:
        """Until the previous start's submission and clean-up have ended."""
        if self._abandoning is not None and not self._abandoning.done():
            self._take_over_abandon()
            await self._begin_discard()
        running = [t for t in (self._submission, self._discarding)
                   if t is not None and not t.done()]
        if running:
            await asyncio.wait(running)

    def _follow(self) -> None:
        """Subscribe to this job's state changes and have the shared poller track it."""
        poller = self._poller()
        if self._unsubscribe is None:
            self._unsubscribe = poller.subscribe(self._on_change)
        if self.job_id not in poller.tracked:
            poller.track(self.job_id, self.user.name)
        elif (known := poller.info(self.job_id)) is not None:
            self._learn(known)  # no change event comes for what the poller already knows

    def _unfollow(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _learn(self, info: JobInfo) -> None:
        self._info = info
        if info.nodes:
            self.node = info.nodes[0]
            self._node_known.set()

    def _on_change(self, change) -> None:
        if change.job_id != self.job_id:
            return
        info: JobInfo = change.current
        self._learn(info)
        if self._port is None or self._port.done():
            return
        if info.state.is_terminal:
            self.last_end = _describe_end(info)
            self._port.set_exception(guard.Failure(
                500, f"job {info.job_id} ended before the server started: {self.last_end}; "
                     f"see its log in {self._log_folder or 'your home directory'}"))
            return
        self._emit(_STARTING.get(info.state, 30), _describe_progress(info))

    def accepts_port_from(self, token: str | None) -> bool:
        """Does this server's job hold ``token``, while a start waits for its port? (port
        callback)"""
        return self._job_holds(token) and self._port is not None and not self._port.done()

    def _job_holds(self, token: str | None) -> bool:
        """Is ``token`` the one written into this server's job's environment?"""
        if not token or not self.token_digest or self.reported_port is not None:
            return False
        return hmac.compare_digest(jobenv.token_digest(token), self.token_digest)

    def port_reported(self, port: int, token: str) -> None:
        """Take the port a job reported with ``token`` (one :meth:`accepts_port_from` took).

        The job holds the token of the start that submitted it. When this start
        re-attached to the job after a hub restart, JupyterHub made a new token for it and
        registered the server's OAuth client with that one. The job's token becomes this
        server's token again, and its OAuth client's secret at once (a hub killed from now
        on finds a consistent server, see get_url). When start() returns, JupyterHub sees
        ``api_token`` changed, deletes its unused new token and registers the client with
        the job's token itself (docs/architecture.md, "Re-attach").
        """
        if token != self.api_token:
            self.log.info("%s: job %s holds the token of the start that submitted it; "
                          "re-using it", self._log_name, self.job_id)
            self.api_token = token
            client = getattr(self.orm_spawner, "oauth_client", None)
            if client is not None:
                client.secret = hash_token(token)  # how JupyterHub stores a client secret
        self.reported_port = port
        self._save_state_now()  # one commit: the port and the client's secret
        if self._port is not None and not self._port.done():
            self._port.set_result(port)
        self._poller().wake()

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
        """The address of the job's node. The job runs (it reported a port), so while the
        scheduler or the login node cannot be asked this waits and asks again: an outage
        is no failure. JupyterHub's ``start_timeout`` bounds the wait."""
        pause, longest = RETRY_PAUSES
        told = False
        while not (node := self.node):
            info = self._info
            if info is not None and info.state.is_terminal:
                raise guard.Failure(500, f"job {self.job_id} ended before the server "
                                         f"started: {_describe_end(info)}")
            if info is not None and info.state is JobState.UNKNOWN and not told:
                told = True
                self._emit(90, f"job {self.job_id} is running; waiting until the scheduler "
                               f"answers again to learn its node ({info.reason})")
            self._poller().wake()  # its next round names the node
            try:
                async with asyncio.timeout(pause):
                    await self._node_known.wait()
            except TimeoutError:
                pause = min(pause * 2, longest)
        if not self.resolve_nodes_on_login:
            return node
        pause = RETRY_PAUSES[0]
        while True:
            try:
                return await self.site.node_address(self.cluster, node, self.user.name)
            except (SchedulerUnavailable, Unreachable) as exc:
                self.log.warning("%s: cannot resolve node %s now (%s); asking again in "
                                 "%.0f s", self._log_name, node, exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, longest)

    async def _fresh_info(self) -> JobInfo | None:
        """This job's state after the poller's next round (one query for all waiters)."""
        return await self.site.fresh_info(self.cluster, self.job_id, self.user.name)

    async def poll(self) -> int | None:
        if self._in_flight():
            return None  # a submission or its clean-up is under way: stop() waits for it
        if not self.job_id:
            return 0
        if self._info is None or not self._info.state.is_terminal:
            self._follow()
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
        self.last_end = _describe_end(info)
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
        self._abandoned = True
        self._take_over_abandon()
        if self._port is not None and not self._port.done():
            self._port.cancel()  # a start still waiting for its port ends here
        await asyncio.shield(self._begin_discard())

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


def _options_checked_in_start(spawner: HpcSpawner, options: dict) -> None:
    """Options are validated in :meth:`HpcSpawner.start`, on every path."""


async def _listening(host: str, port: int, timeout: float, every: float = 0.05) -> bool:
    """Wait until the server accepts connections, so that JupyterHub's first check (which
    otherwise backs off for up to seconds between tries) finds it up. False on timeout:
    JupyterHub's own check then decides."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(2.0):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            await asyncio.sleep(every)
            continue
        writer.close()
        return True
    return False


async def _options_form(spawner: HpcSpawner) -> str:
    site, user = spawner.site, spawner.user.name
    for name in site.profile.clusters:  # the form asks each cluster as her
        await guard.check_identity(site, name, user)
    spawner.prewarm()  # the user is about to spawn: her warm jobs start while she chooses
    accounts = sorted({a for name in site.profile.clusters
                       for a in await site.user_accounts(name, user)})
    free = {}
    for name in site.profile.clusters:
        free.update({(name, p): a for p, a in (await site.availability(name)).items()})
    return form.render(site.profile, user, accounts, spawner.last_end, free,
                       guard.take_refused_form(user))


def _describe_progress(info: JobInfo) -> str:
    if info.state is JobState.PENDING:
        text = f"job {info.job_id} is queued"
        if info.reason and info.reason != "None":
            text += f" ({info.reason})"
        if info.start_time:
            text += f"; estimated start {info.start_time:%H:%M:%S}"
        return text
    if info.state is JobState.RUNNING:
        return f"job {info.job_id} running on {', '.join(info.nodes)}; starting Jupyter"
    return f"job {info.job_id} is {info.state.value}" + (f" ({info.reason})" if info.reason else "")


def _describe_end(info: JobInfo) -> str:
    text = info.state.description
    if info.reason and info.reason != "None":
        text += f" ({info.reason})"
    if info.exit_code:
        text += f", exit code {info.exit_code}"
    return text

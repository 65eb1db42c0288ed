"""The warm pool: notebook jobs started ahead of time, each for one user, handed over on spawn.

A cold spawn waits for the queue, the job's start and ~1.6 s of Jupyter imports on the
node. When the site profile lists presets under ``hub.warm_pool``, the hub submits, right
after a user logs in (or opens the spawn page), ``per_user`` jobs per preset **as that
user**. Each runs ``launch --warm``: it imports Jupyter and waits at the hub, long-polling
``/hub/api/hpcbridge/warm`` with its own secret. A spawn whose validated request is the
same job as a warm one's (same cluster, partition, account, cores, memory, GPUs, walltime,
environment) is given that job: the hub answers the job's poll with the server's
environment, the job reports its port and starts the server in well under a second.

Why nobody can reach another user's server or data through the pool:
- a warm job is submitted as its user, runs as its user, and is only ever handed to a
  server of that same user (the pool is keyed by user name);
- it authenticates to the hub with a random secret that the hub wrote, as the user, into
  a 0600 file in a 0700 folder of her home; the script and argv name only the file, the
  hub keeps only the secret's digest (compared in constant time);
- the server's token reaches the job only in the answer to that authenticated poll, and
  the port report afterwards is checked against the server's token like a cold start's;
- there is no shared pool identity: a batch job cannot change its uid, so a server
  started as a pool account would run with that account's rights (refused by the model).

Bounded cost: at most ``per_user`` jobs per preset and user and ``max_jobs`` on the site;
a job not claimed in ``max_idle`` ends by itself; a job of a previous hub process learns
it is unknown (HTTP 410) at its first poll and ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hpcbridge.errors import HpcBridgeError
from hpcbridge.jobs import JobState
from hpcbridge.profiles import JobRequest, render_script, validate_request
from hpcbridge.profiles.request import ValidatedRequest
from hpcbridge.spawner import jobenv

log = logging.getLogger("hpcbridge.warm")

#: how long one long poll of a warm job is held open before it is answered 204
POLL_HOLD = 50.0


class UnknownWarmJob(Exception):
    """No warm job of this hub has this id and secret."""


def request_key(req: ValidatedRequest) -> tuple:
    """What makes two notebook requests the same batch job (name and command aside)."""
    return (req.cluster, req.queue, req.nodes, req.cores, int(req.memory), req.gpus,
            int(req.walltime), req.account, req.environment, req.qos, req.constraint)


@dataclass(eq=False)
class WarmJob:
    warm_id: str
    user: str
    preset: str
    cluster: str
    key: tuple
    secret_digest: str
    job_id: str = ""
    env_file: str = ""
    submitted: float = field(default_factory=time.monotonic)
    #: its launcher is waiting at the hub right now (imports done)
    connected: bool = False
    #: handed to a server; no longer counts as warm
    taken: bool = False
    #: the server's environment, set by the spawner that took the job
    handover: asyncio.Future[dict[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        self.handover = asyncio.get_running_loop().create_future()


class WarmPool:
    """The warm jobs of one site in one hub process."""

    def __init__(self, site) -> None:
        self.site = site
        self.settings = site.profile.hub.warm_pool
        self.jobs: dict[str, WarmJob] = {}
        self._filling: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._unsubscribe: dict[str, Callable[[], None]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.settings.presets)

    def waiting(self, user: str | None = None) -> list[WarmJob]:
        return [j for j in self.jobs.values()
                if not j.taken and (user is None or j.user == user)]

    # -- filling ------------------------------------------------------------------------
    def prewarm(self, user: str, api_url: str) -> None:
        """Top up ``user``'s warm jobs in the background (login, spawn page)."""
        if self.enabled and user not in self._filling:
            self._in_background(self.fill(user, api_url))

    async def fill(self, user: str, api_url: str) -> list[WarmJob]:
        made: list[WarmJob] = []
        if not self.enabled or user in self._filling:
            return made
        self._filling.add(user)
        try:
            for preset in self.settings.presets:
                have = sum(1 for j in self.waiting(user) if j.preset == preset)
                while (have < self.settings.per_user
                       and len(self.waiting()) < self.settings.max_jobs):
                    job = await self._submit(user, preset, api_url)
                    if job is None:
                        break
                    made.append(job)
                    have += 1
        finally:
            self._filling.discard(user)
        return made

    async def _submit(self, user: str, preset: str, api_url: str) -> WarmJob | None:
        profile = self.site.profile
        try:
            request = validate_request(profile, JobRequest(
                user=user, preset=preset, job_name=jobenv.warm_job_name(user, preset),
                command=jobenv.launch_command("ENV_FILE", warm=True)))
            await self.site.identity.check(request.cluster, user)
        except HpcBridgeError as exc:  # e.g. the preset's account is not hers, or she
            # is a system account (hpcbridge/identity.py); RequestError is one too
            log.warning("warm pool: no %s job for %s: %s", preset, user, exc)
            return None
        secret = secrets.token_urlsafe(32)
        job = WarmJob(warm_id=secrets.token_hex(12), user=user, preset=preset,
                      cluster=request.cluster, key=request_key(request),
                      secret_digest=jobenv.token_digest(secret))
        client = self.site.client(request.cluster)
        try:
            job.env_file = await jobenv.write_env_file(client, user, request.home, {
                "JUPYTERHUB_API_URL": api_url,
                "HPCBRIDGE_WARM_ID": job.warm_id,
                "HPCBRIDGE_WARM_SECRET": secret,
                "HPCBRIDGE_WARM_MAX_IDLE": str(int(self.settings.max_idle)),
            }, request.log_folder)
            script = render_script(profile, dataclasses.replace(
                request, command=jobenv.launch_command(job.env_file, warm=True)))
            job.job_id = await client.submit(user, script)
        except HpcBridgeError as exc:
            log.warning("warm pool: cannot submit a %s job for %s: %s", preset, user, exc)
            if job.env_file:
                await self._remove_env_file(job)
            return None
        self.jobs[job.warm_id] = job
        self._follow(job)
        log.info("warm pool: job %s for %s (preset %s) submitted", job.job_id, user, preset)
        return job

    def _follow(self, job: WarmJob) -> None:
        poller = self.site.poller(job.cluster)

        def on_change(change) -> None:
            if change.job_id != job.job_id or not change.current.state.is_terminal:
                return
            self._forget(job)
            if not job.taken:
                log.info("warm pool: job %s of %s ended unclaimed (%s)", job.job_id,
                         job.user, change.current.state.value)
                if not job.connected and change.current.state is not JobState.COMPLETED:
                    self._in_background(self._remove_env_file(job))
            if job.handover is not None and not job.handover.done():
                job.handover.set_exception(UnknownWarmJob(job.warm_id))

        self._unsubscribe[job.warm_id] = poller.subscribe(on_change)
        poller.track(job.job_id, job.user)

    def _forget(self, job: WarmJob) -> None:
        self.jobs.pop(job.warm_id, None)
        unsubscribe = self._unsubscribe.pop(job.warm_id, None)
        if unsubscribe is not None:
            unsubscribe()
        if not job.taken:
            self.site.poller(job.cluster).untrack(job.job_id)

    async def _remove_env_file(self, job: WarmJob) -> None:
        try:
            await self.site.client(job.cluster).remove_file(job.user, job.env_file)
        except HpcBridgeError as exc:
            log.warning("warm pool: could not remove %s: %s", job.env_file, exc)

    def _in_background(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- handing over -------------------------------------------------------------------
    def take(self, user: str, request: ValidatedRequest) -> WarmJob | None:
        """A warm job of ``user`` that is the same batch job as ``request``, now hers."""
        key = request_key(request)
        matches = [j for j in self.waiting(user) if j.key == key]
        if not matches:
            return None
        # one that already waits at the hub first, then the oldest
        job = min(matches, key=lambda j: (not j.connected, j.submitted))
        job.taken = True
        unsubscribe = self._unsubscribe.pop(job.warm_id, None)
        if unsubscribe is not None:
            unsubscribe()  # the server's spawner follows the job from now on
        return job

    def hand_over(self, job: WarmJob, env: dict[str, str]) -> None:
        if job.handover is not None and not job.handover.done():
            job.handover.set_result(env)

    def release(self, job: WarmJob) -> None:
        """A taken job that did not become a server: forget it (the caller cancels it)."""
        self.jobs.pop(job.warm_id, None)
        if job.handover is not None and not job.handover.done():
            job.handover.set_exception(UnknownWarmJob(job.warm_id))

    async def wait_for_owner(self, warm_id: str, secret: str,
                             hold: float = POLL_HOLD) -> dict[str, str] | None:
        """The long poll of a warm job: the server's environment, or None (ask again)."""
        job = self.jobs.get(warm_id)
        if job is None or not hmac.compare_digest(jobenv.token_digest(secret),
                                                  job.secret_digest):
            raise UnknownWarmJob(warm_id)
        job.connected = True
        try:
            env = await asyncio.wait_for(asyncio.shield(job.handover), hold)
        except TimeoutError:
            return None
        finally:
            job.connected = False
        self.jobs.pop(warm_id, None)
        return env


_POOLS: dict[int, WarmPool] = {}


def pool_for(site) -> WarmPool:
    """The one pool of ``site`` in this process."""
    if id(site) not in _POOLS:
        _POOLS[id(site)] = WarmPool(site)
    return _POOLS[id(site)]


async def wait_for_owner(warm_id: str, secret: str, hold: float = POLL_HOLD):
    """Find the pool that knows ``warm_id`` (a hub may serve several site profiles)."""
    for pool in _POOLS.values():
        if warm_id in pool.jobs:
            return await pool.wait_for_owner(warm_id, secret, hold)
    raise UnknownWarmJob(warm_id)

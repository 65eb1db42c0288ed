"""One start or stop at a time per server, and the clean-up after a cancelled start.

A stop (or a new start) waits for the submission under way and the previous clean-up;
a cancelled start hands its clean-up to a background task that a stop takes over.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from hpcbridge.errors import HpcBridgeError, SchedulerUnavailable, Unreachable
from hpcbridge.jobs import dask_workers_of
from hpcbridge.spawner import following, guard, records

if TYPE_CHECKING:
    from hpcbridge.spawner.spawner import HpcSpawner

#: seconds a cancelled start waits for JupyterHub's stop() before it cleans up by itself
ABANDON_GRACE = 10.0
#: background removals of env files and cancels of a stopped server's Dask workers (a
#: reference keeps each task alive until it ends)
_TASKS: set[asyncio.Task] = set()


def cleaned_up_when_cancelled(start: Callable[[HpcSpawner], Awaitable[str]]
                              ) -> Callable[[HpcSpawner], Awaitable[str]]:
    """A cancelled start() (a stop while starting, the start timeout) hands its clean-up
    to a background task (``abandon``) and ends at once; any await in start() may be
    where the cancellation lands. A cancellation that something swallowed on the way
    (Python 3.11's ``asyncio.wait_for`` returns an inner result that arrives with the
    cancel) still counts: a start that was asked to stop never returns a server."""
    @functools.wraps(start)
    async def cancellable_start(spawner) -> str:
        try:
            url = await start(spawner)
        except asyncio.CancelledError:
            abandon(spawner)
            raise
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            abandon(spawner)
            raise asyncio.CancelledError
        return url
    return cancellable_start


def forgotten_when_refused(start: Callable[[HpcSpawner], Awaitable[str]]
                           ) -> Callable[[HpcSpawner], Awaitable[str]]:
    """A start refused before anything ran leaves no row of a new named server
    (``guard.forget_unused_server``; shared design, invariant 6)."""
    @functools.wraps(start)
    async def refusable_start(spawner) -> str:
        try:
            return await start(spawner)
        except guard.Refusal:
            guard.forget_unused_server(spawner)
            raise
    return refusable_start


def abandon(spawner: HpcSpawner) -> None:
    """start() was cancelled: by a stop or the start timeout (JupyterHub then calls
    stop() within a second or two), or by a hub shutting down (the queued job and its
    env file stay for the re-attach after the restart). If no stop() comes — JupyterHub's
    DELETE fails when a cancelled start takes over a second to end — clean up anyway."""
    spawner._abandoned = True
    if spawner._abandoning is None or spawner._abandoning.done():
        spawner._abandoning = asyncio.ensure_future(discard_after_grace(spawner))


async def discard_after_grace(spawner: HpcSpawner) -> None:
    await asyncio.sleep(ABANDON_GRACE)
    await begin_discard(spawner)


def take_over_abandon(spawner: HpcSpawner) -> None:
    """A stop or a new start cleans up now (and proves the hub is not shutting down)."""
    if spawner._abandoning is not None and not spawner._abandoning.done():
        spawner._abandoning.cancel()


def begin_discard(spawner: HpcSpawner) -> asyncio.Task[None]:
    if spawner._discarding is None or spawner._discarding.done():
        spawner._discarding = asyncio.ensure_future(discard(spawner))
    return spawner._discarding


async def discard(spawner: HpcSpawner) -> None:
    """Cancel this server's job and remove its unread env file, after the submission
    under way (if any) has ended: a job submitted for a stopped server is never missed."""
    submission, spawner._submission = spawner._submission, None
    if submission is not None:
        await asyncio.wait([submission])
        if not submission.cancelled() and submission.exception() is not None:
            spawner.log.info("%s: the stopped start's submission failed: %s",
                             spawner._log_name, submission.exception())
    job_id = spawner.job_id
    env_file = spawner.env_file if spawner.reported_port is None else None
    following.unfollow(spawner)
    if job_id:
        spawner._poller().untrack(job_id)
    spawner._info = None
    if job_id or env_file:
        await cancel_job(spawner, job_id, env_file)
    if job_id:  # the session record's end, from accounting once the job is over
        records.ended(spawner, job_id, spawner._info, ran=spawner.reported_port is not None)
    if job_id:
        _in_background(cancel_dask_workers(spawner, job_id))
    spawner.job_id = spawner.env_file = spawner.token_digest = spawner.node = None
    spawner.reported_port = None
    spawner._save_state_now()


def in_flight(spawner: HpcSpawner) -> bool:
    return any(t is not None and not t.done()
               for t in (spawner._submission, spawner._discarding, spawner._abandoning))


async def settled(spawner: HpcSpawner) -> None:
    """Until the previous start's submission and clean-up have ended."""
    if spawner._abandoning is not None and not spawner._abandoning.done():
        take_over_abandon(spawner)
        await begin_discard(spawner)
    running = [t for t in (spawner._submission, spawner._discarding)
               if t is not None and not t.done()]
    if running:
        await asyncio.wait(running)


async def cancel_job(spawner: HpcSpawner, job_id: str | None, env_file: str | None) -> None:
    """Remove a job's unread env file, then cancel the job (without its file a job
    cannot start a server); while the login node or the scheduler cannot be reached,
    keep trying in the background."""
    client = spawner._client()
    try:
        if env_file:
            await client.remove_file(spawner.user.name, env_file)
        if job_id:
            await client.cancel(spawner.user.name, [job_id])
    except (SchedulerUnavailable, Unreachable) as exc:
        spawner.log.error("%s: cannot cancel job %s or remove %s now (%s); retrying in "
                          "the background", spawner._log_name, job_id, env_file, exc)
        spawner.site.cancel_later(spawner.cluster, spawner.user.name, job_id, env_file=env_file)
    except HpcBridgeError as exc:
        spawner.log.error("%s: cannot cancel job %s or remove %s: %s", spawner._log_name,
                          job_id, env_file, exc)


async def remove_file(spawner: HpcSpawner, path: str) -> None:
    await cancel_job(spawner, None, path)  # during an outage: again in the background


async def remove_env_file(spawner: HpcSpawner) -> None:
    if spawner.env_file and spawner.reported_port is None:
        await remove_file(spawner, spawner.env_file)


def remove_file_in_background(spawner: HpcSpawner, path: str) -> None:
    _in_background(remove_file(spawner, path))


def _in_background(work: Awaitable[None]) -> None:
    task = asyncio.ensure_future(work)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def cancel_dask_workers(spawner: HpcSpawner, job_id: str) -> None:
    """Cancel the Dask worker jobs that the server's job ``job_id`` started (their names
    carry its id: ``hpcbridge.jobs.dask_cluster_name``), queued or running: with the
    server gone, nothing uses them, and a queued one would start only to find no
    scheduler. Other Dask clusters of the user (another server's, a login shell's)
    stay. In the background: the stop does not wait for this query."""
    prefix = dask_workers_of(job_id)
    if prefix is None:
        return
    user, client = spawner.user.name, spawner._client()
    try:
        jobs = await client.user_jobs(user) or []
        ids = [j.job_id for j in jobs if j.name.startswith(prefix) and j.state.is_active]
        if ids:
            await client.cancel(user, ids)
            spawner.log.info("%s: cancelled %d Dask worker job(s) of job %s: %s",
                             spawner._log_name, len(ids), job_id, ", ".join(ids))
    except HpcBridgeError as exc:
        spawner.log.warning("%s: cannot cancel the Dask worker jobs of job %s: %s",
                            spawner._log_name, job_id, exc)

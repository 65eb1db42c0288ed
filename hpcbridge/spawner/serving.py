"""From a checked request to a serving notebook: submission (or a warm job's
hand-over), waiting for the port, finding the job's node, and the time each stage took."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import TYPE_CHECKING

from tornado import web

from hpcbridge.errors import (
    HpcBridgeError,
    SchedulerUnavailable,
    SubmitRefused,
    TransportError,
    Unreachable,
)
from hpcbridge.jobs import JobState
from hpcbridge.profiles import render_script
from hpcbridge.spawner import following, guard, jobenv, messages, teardown, warm

if TYPE_CHECKING:
    from hpcbridge.spawner.spawner import HpcSpawner

#: what a full home (or an exhausted quota) says when the job's file is written
_HOME_FULL = ("No space left on device", "Disk quota exceeded")
#: first and longest pause (seconds) between asking again while the cluster cannot answer
RETRY_PAUSES = (1.0, 10.0)


async def submit(spawner: HpcSpawner, request) -> None:
    """Write the env file and submit the job; the job id is in the hub database when
    this returns. A task of its own: the commands run to their end on the login node
    whatever happens to start(), so only this task can learn what they made, and the
    clean-up of a stop waits for it (``teardown.discard``)."""
    env_file = spawner.env_file = await write_env(spawner, request)
    stage(spawner, "prepare")
    if spawner._abandoned:
        return  # stopped while the file was written: submit nothing (the clean-up
        # removes the file)
    script = render_script(spawner.site.profile, dataclasses.replace(
        request, command=jobenv.launch_command(env_file)))
    try:
        job_id = await spawner._client().submit(spawner.user.name, script)
    except (SubmitRefused, SchedulerUnavailable) as exc:
        spawner.env_file = None
        await teardown.cancel_job(spawner, None, env_file)
        if isinstance(exc, SubmitRefused):
            guard.restore_options(spawner)
        if isinstance(exc, SubmitRefused):
            raise guard.Failure(400, f"the scheduler refused the job: {exc}") from None
        raise guard.Failure(503, f"cluster {request.cluster} cannot take the job now: {exc}; "
                                 "no job was submitted, try again later") from None
    spawner.job_id = job_id
    spawner.token_digest = jobenv.token_digest(spawner.api_token)
    spawner._save_state_now()
    stage(spawner, "submit")
    spawner.log.info("%s: submitted job %s", spawner._log_name, job_id)
    spawner._emit(10, f"submitted job {job_id} to {request.queue} "
                      f"({request.cores} cores, {request.memory}, {request.walltime})")


async def start_warm(spawner: HpcSpawner, pool: warm.WarmPool, job: warm.WarmJob) -> str | None:
    """Serve from a warm job of this user; None if it fails (the caller submits)."""
    # the warm job's own file (its secret) is removed with it if it never started
    spawner.job_id, spawner.cluster, spawner.env_file = job.job_id, job.cluster, job.env_file
    spawner.token_digest = jobenv.token_digest(spawner.api_token)
    spawner._save_state_now()
    stage(spawner, "prepare")
    waiting = job.connected
    spawner.log.info("%s: handing over warm job %s (%s)", spawner._log_name, job.job_id,
                     "waiting at the hub" if waiting else "not started yet")
    spawner._emit(10, f"taking over your pre-started job {job.job_id} (preset {job.preset})")
    pool.hand_over(job, json.loads(jobenv.env_document(spawner.get_env())))
    stage(spawner, "handover")
    try:
        serving = spawner._wait_until_serving()
        if waiting:  # it was ready: it reports in well under a second, or it is broken
            async with asyncio.timeout(spawner.warm_handover_timeout):
                return await serving
        return await serving
    except (TimeoutError, web.HTTPError) as exc:
        reason = "no port in time" if isinstance(exc, TimeoutError) else exc.log_message
        spawner.log.warning("%s: warm job %s failed (%s); submitting a job of its own",
                            spawner._log_name, job.job_id, reason)
        pool.release(job)
        following.unfollow(spawner)
        spawner._poller().untrack(job.job_id)
        await teardown.cancel_job(spawner, job.job_id, job.env_file)
        spawner.job_id = spawner.token_digest = spawner.node = spawner.env_file = None
        spawner._info = None
        spawner._node_known = asyncio.Event()
        return None


def stage(spawner: HpcSpawner, name: str) -> None:
    spawner._stages.append((name, time.monotonic()))


def log_stages(spawner: HpcSpawner) -> None:
    if len(spawner._stages) < 2:
        return
    parts = [f"{name} {now - before:.2f} s" for (_, before), (name, now)
             in zip(spawner._stages, spawner._stages[1:], strict=False)]
    total = spawner._stages[-1][1] - spawner._stages[0][1]
    spawner.log.info("%s: spawn stages: %s (total %.2f s)", spawner._log_name, ", ".join(parts),
                     total)


async def write_env(spawner: HpcSpawner, request) -> str:
    try:
        return await jobenv.write_env_file(spawner._client(), spawner.user.name,
                                           request.home, spawner.get_env(),
                                           request.log_folder)
    except (TransportError, HpcBridgeError) as exc:
        if any(text in str(exc) for text in _HOME_FULL):
            # not an outage: retrying will not help until she frees space
            raise guard.Failure(
                507, f"your home directory {request.home} is full; free some space and "
                     f"start again (cannot prepare the job: {exc})") from None
        raise guard.Failure(503, f"cannot prepare the job on cluster {request.cluster}: "
                                 f"{exc}") from None


async def wait_until_serving(spawner: HpcSpawner) -> str:
    following.follow(spawner)
    try:
        assert spawner._port is not None, "start() creates the port future before waiting"
        port = await spawner._port
    except asyncio.CancelledError:
        # a hub shutting down cancels the starts that wait: the queued job stays for
        # the re-attach, and needs its file; a stop cleans up (teardown.abandon, stop)
        raise
    except BaseException:
        await teardown.remove_env_file(spawner)  # the job ended unread
        raise
    stage(spawner, "port")
    host = await spawner._node_address()
    stage(spawner, "address")
    spawner.reported_port = port
    spawner.last_end = None  # told at this start (progress); a new server is up
    spawner._emit(95, f"server starting on {spawner.node} port {port}")
    spawner._save_state_now()
    if await listening(host, port, spawner.http_timeout):
        stage(spawner, "listen")
    log_stages(spawner)
    return f"http://{host}:{port}"


async def node_address(spawner: HpcSpawner) -> str:
    """The address of the job's node. The job runs (it reported a port), so while the
    scheduler or the login node cannot be asked this waits and asks again: an outage
    is no failure. JupyterHub's ``start_timeout`` bounds the wait."""
    pause, longest = RETRY_PAUSES
    told = False
    while not (node := spawner.node):
        info = spawner._info
        if info is not None and info.state.is_terminal:
            raise guard.Failure(500, f"job {spawner.job_id} ended before the server "
                                     f"started: {messages.describe_end(info)}")
        if info is not None and info.state is JobState.UNKNOWN and not told:
            told = True
            spawner._emit(90, f"job {spawner.job_id} is running; waiting until the scheduler "
                              f"answers again to learn its node ({info.reason})")
        spawner._poller().wake()  # its next round names the node
        try:
            async with asyncio.timeout(pause):
                await spawner._node_known.wait()
        except TimeoutError:
            pause = min(pause * 2, longest)
    if not spawner.resolve_nodes_on_login:
        return node
    pause = RETRY_PAUSES[0]
    while True:
        try:
            return await spawner.site.node_address(spawner.cluster, node, spawner.user.name)
        except (SchedulerUnavailable, Unreachable) as exc:
            spawner.log.warning("%s: cannot resolve node %s now (%s); asking again in "
                                "%.0f s", spawner._log_name, node, exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, longest)


async def listening(host: str, port: int, timeout: float, every: float = 0.05) -> bool:
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

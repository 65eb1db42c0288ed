"""A server's job through the cluster's shared poller: its state, its node, and the end
of a start whose job ends before it reports its port (defect 7)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from hpcbridge.jobs import JobInfo
from hpcbridge.spawner import guard, messages

if TYPE_CHECKING:
    from hpcbridge.spawner.spawner import HpcSpawner


def follow(spawner: HpcSpawner) -> None:
    """Subscribe to this job's state changes and have the shared poller track it."""
    poller = spawner._poller()
    if spawner._following != (poller, spawner.job_id):  # its job, on its cluster's poller
        unfollow(spawner)
        spawner._unsubscribe = poller.subscribe(functools.partial(on_change, spawner),
                                                job_id=spawner.job_id)
        spawner._following = (poller, spawner.job_id)
    if spawner.job_id not in poller.tracked:
        poller.track(spawner.job_id, spawner.user.name)
    elif (known := poller.info(spawner.job_id)) is not None:
        learn(spawner, known)  # no change event comes for what the poller already knows


def unfollow(spawner: HpcSpawner) -> None:
    if spawner._unsubscribe is not None:
        spawner._unsubscribe()
        spawner._unsubscribe = None
    spawner._following = None


def learn(spawner: HpcSpawner, info: JobInfo) -> None:
    spawner._info = info
    if info.nodes:
        spawner.node = info.nodes[0]
        spawner._node_known.set()


def on_change(spawner: HpcSpawner, change) -> None:
    if change.job_id != spawner.job_id:
        return
    info: JobInfo = change.current
    learn(spawner, info)
    if spawner._port is None or spawner._port.done():
        return
    if info.state.is_terminal:
        spawner.last_end = messages.describe_end(info)
        spawner._port.set_exception(guard.Failure(
            500, f"job {info.job_id} ended before the server started: {spawner.last_end}; "
                 f"see its log in {spawner._log_folder or 'your home directory'}"))
        return
    spawner._emit(messages.STARTING.get(info.state, 30), messages.describe_progress(info))

"""Reading a user's limits and jobs from the scheduler, for :mod:`hpcbridge.dask.limits`.

Every fact comes through the scheduler client, whose adapter knows how its scheduler
tells it: associations, QOS (on PBS: the queue's per-user limits), budget, partitions and
the user's own jobs (other jobs count against limits; orphaned workers are found by
name). What an adapter cannot tell is named in its ``capabilities.unknown`` and passed
on in :class:`~hpcbridge.dask.limits.Limits`, never taken for "no limit".
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from hpcbridge.client import SchedulerClient
from hpcbridge.dask.limits import Limits, OtherJobs, ProfileCaps, WorkerShape
from hpcbridge.errors import SchedulerError
from hpcbridge.schedulers.base import (
    Association,
    PartitionInfo,
    QosLimits,
    UserJob,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

async def user_jobs(client: SchedulerClient, user: str) -> list[UserJob]:
    """The user's queued and running jobs; [] where the scheduler cannot list them (its
    adapter's ``capabilities.unknown`` says so, and the scaling message repeats it)."""
    return await client.user_jobs(user) or []


def other_jobs(jobs: Iterable[UserJob], ours: Iterable[str]) -> OtherJobs:
    """What the user's active jobs outside ``ours`` hold (array tasks count one by one)."""
    mine = set(ours)
    bases = {j.split("_", 1)[0] for j in mine}
    count = cores = mem = 0
    for job in jobs:
        if not job.state.is_active or job.job_id in mine or job.job_id.split("_", 1)[0] in bases:
            continue
        count += 1
        cores += job.cores
        mem += job.memory_mb
    return OtherJobs(count, cores, mem)


def pick_association(associations: list[Association], account: str | None,
                     partition: str) -> Association | None:
    """The association a job in ``partition`` charging ``account`` runs under."""
    rows = [a for a in associations if account is None or a.account == account]
    exact = [a for a in rows if a.partition == partition]
    for candidates in (exact, [a for a in rows if not a.partition], rows):
        if candidates:
            return candidates[0]
    return None


def pick_qos(qos: list[QosLimits], association: Association | None, wanted: str | None,
             partition: str | None = None) -> QosLimits | None:
    """The QOS a job runs under; where limits belong to queues (PBS), its queue's."""
    if any("queue" in q.flags for q in qos):
        return next((q for q in qos if q.name == partition), None)
    name = wanted or (association.default_qos if association else None) or "normal"
    return next((q for q in qos if q.name == name), None)


async def _optional(what: str, coro: Awaitable[T]) -> T | None:
    """A limit that cannot be read is left out (logged), never guessed."""
    try:
        return await coro
    except SchedulerError as exc:
        log.warning("could not read %s: %s", what, exc)
        return None


@dataclass(frozen=True)
class StaticLimits:
    """The slowly changing part (set by admins): read once, reused for minutes."""

    association: Association | None
    account: str | None
    qos: QosLimits | None
    partition: PartitionInfo | None
    #: every query answered (a partial read is not shared with other clusters)
    complete: bool = True


async def read_static(client: SchedulerClient, user: str, shape: WorkerShape,
                      qos_name: str | None) -> StaticLimits:
    """Association, QOS and partition limits (three queries, run at once)."""
    assocs, qos_list, partitions = await asyncio.gather(
        _optional("associations", client.associations(user)),
        _optional("QOS", client.qos(as_user=user)),
        _optional("partitions", client.partitions(as_user=user)))
    assoc = pick_association(assocs or [], shape.account, shape.partition)
    return StaticLimits(
        association=assoc,
        account=shape.account or (assoc.account if assoc else None),
        qos=pick_qos(qos_list or [], assoc, qos_name, shape.partition),
        partition=next((p for p in partitions or [] if p.name == shape.partition), None),
        complete=None not in (assocs, qos_list, partitions),
    )


#: client -> (user, partition, account, QOS) -> (monotonic time read, limits)
_STATIC: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], tuple[float, StaticLimits]]] = \
    weakref.WeakKeyDictionary()


def _static_key(user: str, shape: WorkerShape, qos_name: str | None) -> tuple[Any, ...]:
    return (user, shape.partition, shape.account, qos_name)


def recent_static(client: SchedulerClient, user: str, shape: WorkerShape,
                  qos_name: str | None, ttl: float) -> StaticLimits | None:
    """Static limits another cluster of this process read less than ``ttl`` seconds ago.

    They are set by admins and change rarely; reading them costs two ``sacctmgr`` calls
    (a slurmdbd round trip each, ~0.3 s), so a notebook's second cluster reuses them.
    """
    hit = _STATIC.get(client, {}).get(_static_key(user, shape, qos_name))
    return hit[1] if hit and time.monotonic() - hit[0] < ttl else None


def keep_static(client: SchedulerClient, user: str, shape: WorkerShape,
                qos_name: str | None, static: StaticLimits) -> None:
    if not static.complete:
        return
    _STATIC.setdefault(client, {})[_static_key(user, shape, qos_name)] = (
        time.monotonic(), static)


async def read_limits(client: SchedulerClient, user: str,
                      static: StaticLimits | Awaitable[StaticLimits], *,
                      caps: ProfileCaps, ours: Iterable[str] = ()
                      ) -> tuple[Limits, list[UserJob]]:
    """``static`` plus what changes by the minute (budget, the user's jobs): the limits
    that apply to ``user``'s worker jobs now, and her jobs. The job list is read while
    ``static`` (when still to come) is read."""
    jobs_read = asyncio.ensure_future(user_jobs(client, user))
    try:
        if not isinstance(static, StaticLimits):
            static = await static
        budget = await _optional("budget", client.budget(static.account, as_user=user)) \
            if static.account else None
        jobs = await jobs_read
    finally:
        jobs_read.cancel()  # only when something above failed: the outcome is known
    limits = Limits(qos=static.qos, association=static.association, budget=budget,
                    partition=static.partition, caps=caps, others=other_jobs(jobs, ours),
                    unknown=client.dialect.capabilities.unknown)
    return limits, jobs

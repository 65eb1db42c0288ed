"""Reading a user's limits and jobs from the scheduler, for :mod:`hpcbridge.dask.limits`.

The scheduler client (issue C) answers associations, QOS, budget and partitions; the
user's own job list (for other jobs that count against limits, and for finding orphaned
worker jobs by name) is a Slurm query kept here until the client grows one.

Job names are user-controlled text: they are printed *last* and split off once, and
every line must name the asking user, so a name cannot forge another user's job.
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
from hpcbridge.jobs import JobState
from hpcbridge.schedulers.base import (
    Association,
    Command,
    PartitionInfo,
    QosLimits,
)
from hpcbridge.schedulers.slurm import is_job_id, map_state
from hpcbridge.schedulers.textparse import is_none, parse_int, parse_memory_mb

log = logging.getLogger(__name__)
T = TypeVar("T")

#: raw id, shown id, state, reason, user, cpus, min memory, job name (last: free text)
USER_JOBS_FORMAT = "%A|%i|%T|%r|%u|%C|%m|%j"


@dataclass(frozen=True)
class UserJob:
    job_id: str
    state: JobState
    reason: str | None
    user: str
    cores: int
    memory_mb: int
    name: str


def user_jobs_command(user: str) -> Command:
    return Command(("squeue", "--noheader", "--array", f"--user={user}",
                    f"--format={USER_JOBS_FORMAT}"))


def parse_user_jobs(stdout: str, user: str) -> list[UserJob]:
    """Rows of :data:`USER_JOBS_FORMAT`; rows of other users or odd shape are dropped."""
    jobs = []
    for line in stdout.splitlines():
        fields = line.split("|", 7)
        if len(fields) != 8 or not is_job_id(fields[1]) or fields[4] != user:
            continue
        _raw, shown, state, reason, owner, cpus, mem, name = fields
        jobs.append(UserJob(shown, map_state(state), None if is_none(reason) else reason,
                            owner, parse_int(cpus) or 0, parse_memory_mb(mem) or 0, name))
    return jobs


async def user_jobs(client: SchedulerClient, user: str) -> list[UserJob]:
    """The user's jobs in the queue (Slurm); [] for schedulers without this query."""
    if client.dialect.name != "slurm":
        return []
    command = user_jobs_command(user)
    # through the client so that failures are mapped in its one place
    return parse_user_jobs(await client.query(command, as_user=user), user)


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


def pick_qos(qos: list[QosLimits], association: Association | None, wanted: str | None
             ) -> QosLimits | None:
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
        qos=pick_qos(qos_list or [], assoc, qos_name),
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
                    partition=static.partition, caps=caps, others=other_jobs(jobs, ours))
    return limits, jobs

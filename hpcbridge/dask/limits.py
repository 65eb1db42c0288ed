"""What a user may still run as Dask worker jobs: pure functions, no I/O.

The scheduler refuses nothing at submit time when a QOS or association limit is
reached: it queues the job with a reason such as ``QOSMaxJobsPerUserLimit`` and the job
waits, counted by dask-jobqueue as a worker to come, forever. So every scale request
is clamped *before* submitting, to the tightest of

* the QOS: MaxJobsPerUser, MaxSubmitJobsPerUser, MaxTRESPerUser (cpu, mem);
* the association: MaxJobs, MaxSubmitJobs, GrpTRES (cpu, mem);
* the profile: the partition's ``max_jobs_per_user`` and ``dask.per_user`` caps;

each minus what the user's *other* jobs (a notebook, other clusters) already hold.
A budget (GrpTRESMins) is not clamped but checked: a request it cannot pay is refused
with its cost, because a job over budget would pend forever too.

:func:`plan_scale` returns a :class:`ScalePlan` whose ``message`` is the one sentence
shown to the user, e.g. "scaling to 3 workers, not 10: QOS normal allows 4 jobs per
user; 1 is already used by your other jobs".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

from hpcbridge.errors import LimitExceeded
from hpcbridge.schedulers.base import Association, Budget, PartitionInfo, QosLimits


@dataclass(frozen=True)
class WorkerShape:
    """One worker job: what it asks the scheduler for."""

    cores: int
    memory_mb: int
    processes: int
    walltime: timedelta
    partition: str = ""
    account: str | None = None

    @property
    def core_minutes(self) -> float:
        """What one job may cost: cores × walltime (Slurm reserves the full walltime)."""
        return self.cores * self.walltime.total_seconds() / 60


@dataclass(frozen=True)
class OtherJobs:
    """The user's active jobs that are not this cluster's (they count against limits)."""

    count: int = 0
    cores: int = 0
    memory_mb: int = 0


@dataclass(frozen=True)
class ProfileCaps:
    """Caps from the site profile (partition and ``dask.per_user``)."""

    partition_max_jobs: int | None = None
    max_workers: int | None = None
    max_cores: int | None = None
    max_memory_mb: int | None = None


@dataclass(frozen=True)
class Limits:
    """Everything known about a user's limits at one moment; any part may be missing."""

    qos: QosLimits | None = None
    association: Association | None = None
    budget: Budget | None = None
    partition: PartitionInfo | None = None
    caps: ProfileCaps = field(default_factory=ProfileCaps)
    others: OtherJobs = field(default_factory=OtherJobs)
    #: (what, why) of limits this scheduler cannot show (the adapter's capabilities)
    unknown: tuple[tuple[str, str], ...] = ()

    def unknown_text(self) -> str:
        """"not known on this scheduler: budget (…)", or "" where everything is known."""
        if not self.unknown:
            return ""
        return "not known on this scheduler: " + "; ".join(
            f"{what} ({why})" for what, why in self.unknown)


@dataclass(frozen=True)
class Bound:
    """One limit on the number of worker jobs: how many it allows and why."""

    jobs: int
    reason: str


@dataclass(frozen=True)
class ScalePlan:
    requested_workers: int
    jobs: int
    workers: int
    #: the limits that decided ``jobs`` (empty when the request fits)
    binding: tuple[Bound, ...]
    #: cost of the planned jobs in core-hours, and what the budget has left (None: no budget)
    cost_core_hours: float
    budget_core_hours: float | None
    message: str | None

    @property
    def clamped(self) -> bool:
        return self.workers < self.requested_workers

    @property
    def cost_message(self) -> str:
        """"new jobs cost 0.50 core-hours of the 1.00 left" (or without a budget)."""
        text = f"new jobs cost {self.cost_core_hours:.2f} core-hours"
        if self.budget_core_hours is None:
            return text
        return text + f" of the {self.budget_core_hours:.2f} left"


def _per(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _left(limit: int, used: int) -> int:
    return max(0, limit - used)


def _count_bound(limit: int | None, used: int, what: str) -> Bound | None:
    if limit is None:
        return None
    held = (f"; {used} {'is' if used == 1 else 'are'} already used by your other jobs"
            if used else "")
    return Bound(_left(limit, used), f"{what} allows {_per(limit, 'job')} per user{held}")


def _tres_bound(limit: int | None, used: int, per_job: int, what: str, unit: str
                ) -> Bound | None:
    if limit is None or per_job <= 0:
        return None
    held = f"; your other jobs already use {used}{unit}" if used else ""
    return Bound(_left(limit, used) // per_job,
                 f"{what} allows {limit}{unit} per user, {per_job}{unit} per job{held}")


def job_bounds(shape: WorkerShape, limits: Limits) -> list[Bound]:
    """Every known limit on the number of this cluster's worker jobs."""
    o, caps = limits.others, limits.caps
    bounds: list[Bound | None] = []
    if limits.qos is not None:
        q = limits.qos
        what = f"queue {q.name}" if "queue" in q.flags else f"QOS {q.name}"
        bounds += [
            _count_bound(q.max_jobs_per_user, o.count, what),
            _count_bound(q.max_submit_jobs_per_user, o.count, what + " (submitted)"),
            _tres_bound(q.max_tres_per_user.get("cpu"), o.cores, shape.cores, what, " cores"),
            _tres_bound(q.max_tres_per_user.get("mem"), o.memory_mb, shape.memory_mb, what,
                        " MB"),
        ]
    if limits.association is not None:
        a = limits.association
        what = f"account {a.account}"
        bounds += [
            _count_bound(a.max_jobs, o.count, what),
            _count_bound(a.max_submit_jobs, o.count, what + " (submitted)"),
            _tres_bound(a.grp_tres.get("cpu"), o.cores, shape.cores, what + " (group)", " cores"),
            _tres_bound(a.grp_tres.get("mem"), o.memory_mb, shape.memory_mb, what + " (group)",
                        " MB"),
        ]
    part = shape.partition or "the partition"
    bounds += [
        _count_bound(caps.partition_max_jobs, o.count, f"partition {part} (site profile)"),
        _count_bound(caps.max_workers, 0, "the site profile's dask max_workers"),
        _tres_bound(caps.max_cores, 0, shape.cores, "the site profile's dask max_cores",
                    " cores"),
        _tres_bound(caps.max_memory_mb, 0, shape.memory_mb,
                    "the site profile's dask max_memory", " MB"),
    ]
    return [b for b in bounds if b is not None]


def _qos_word(qos: QosLimits | None) -> str:
    if qos is None:
        return "QOS "
    return f"queue {qos.name}" if "queue" in qos.flags else f"QOS {qos.name}"


def check_walltime(shape: WorkerShape, limits: Limits) -> None:
    """Refuse a walltime the partition or QOS would hold pending forever."""
    for what, limit in (
        (f"partition {limits.partition.name if limits.partition else ''}",
         limits.partition.max_walltime if limits.partition else None),
        (_qos_word(limits.qos), limits.qos.max_walltime if limits.qos else None),
    ):
        if limit is not None and shape.walltime > limit:
            raise LimitExceeded(
                f"worker walltime {shape.walltime} is over {what}'s limit {limit}: "
                "ask for a shorter walltime"
            )


def budget_core_hours(shape: WorkerShape, limits: Limits, reserved_core_minutes: float = 0
                      ) -> float | None:
    """Core-hours the account has left, less what this cluster's live jobs may still use."""
    if limits.budget is None:
        return None
    left = None
    for tres in ("cpu", "billing"):
        value = limits.budget.remaining(tres)
        if value is not None:
            left = value if left is None else min(left, value)
    if left is None:
        return None
    return max(0.0, left - reserved_core_minutes) / 60


def plan_scale(requested_workers: int, shape: WorkerShape, limits: Limits, *,
               current_jobs: int = 0, reserved_core_minutes: float = 0) -> ScalePlan:
    """How many worker jobs to have for ``requested_workers``, under every limit.

    ``current_jobs`` are this cluster's live jobs (already paid for in the budget by
    ``reserved_core_minutes``); only the jobs beyond them are charged against the budget.
    Raises LimitExceeded when the walltime breaks a limit or the budget cannot pay.
    """
    if requested_workers < 0:
        raise LimitExceeded(f"cannot scale to {requested_workers} workers")
    check_walltime(shape, limits)
    wanted = math.ceil(requested_workers / shape.processes)
    bounds = job_bounds(shape, limits)
    allowed = min((b.jobs for b in bounds), default=wanted)
    jobs = min(wanted, allowed)
    binding = tuple(b for b in bounds if b.jobs == jobs) if jobs < wanted else ()
    new_jobs = max(0, jobs - current_jobs)
    cost = new_jobs * shape.core_minutes / 60
    budget = budget_core_hours(shape, limits, reserved_core_minutes)
    if budget is not None and cost > budget + 1e-9:
        raise LimitExceeded(_budget_message(requested_workers, jobs, new_jobs, shape,
                                            limits, cost, budget))
    message = None
    if binding:
        message = scale_message(requested_workers, jobs, shape.processes, binding)
    if limits.unknown:
        message = "; ".join(x for x in (message, limits.unknown_text()) if x)
    return ScalePlan(requested_workers, jobs, jobs * shape.processes, binding, cost,
                     budget, message)


def scale_message(requested: int, jobs: int, processes: int, binding: tuple[Bound, ...]
                  ) -> str:
    """"scaling to 16 workers, not 40: QOS normal allows 4 jobs per user; each job runs 4
    workers"."""
    reasons = _explained(dict.fromkeys(b.reason for b in binding), processes)
    return f"scaling to {_per(jobs * processes, 'worker')}, not {requested}: {reasons}"


def _explained(reasons, processes: int) -> str:
    """The limits that bind, as clauses of one sentence, and the workers in each job."""
    each = [f"each job runs {_per(processes, 'worker')}"] if processes > 1 else []
    return "; ".join([*reasons, *each])


def _budget_message(requested: int, jobs: int, new_jobs: int, shape: WorkerShape,
                    limits: Limits, cost: float, budget: float) -> str:
    account = limits.budget.account if limits.budget else shape.account
    affordable = int(budget * 60 // shape.core_minutes) if shape.core_minutes else 0
    return (
        f"scaling to {_per(requested, 'worker')} is refused: {_per(new_jobs, 'new job')} × "
        f"{shape.cores} cores × {shape.walltime} cost {cost:.2f} core-hours, and account "
        f"{account} has {budget:.2f} core-hours left (enough for {_per(affordable, 'job')} "
        "of this size; ask for fewer workers or a shorter walltime)"
    )


def lifetime_options(walltime: timedelta) -> tuple[timedelta, timedelta]:
    """Worker ``--lifetime`` and ``--lifetime-stagger`` for a job of ``walltime``.

    A worker retires gracefully (hands its data over) before the scheduler kills its job.
    The margin leaves time for that hand-over and for the worker's late start in its job;
    the stagger (±) keeps a cluster's workers from all retiring at once.
    """
    total = walltime.total_seconds()
    margin = min(max(60.0, 0.1 * total), 900.0, 0.5 * total)
    stagger = min(0.05 * total, 300.0)
    lifetime = max(total - margin - stagger, 0.25 * total)
    return timedelta(seconds=int(lifetime)), timedelta(seconds=int(stagger))


def adapt_plan(maximum_workers: float, shape: WorkerShape, limits: Limits, *,
               current_jobs: int = 0) -> tuple[int, str | None]:
    """The most worker jobs ``adapt`` may grow to, and the message when that is clamped.

    Unlike :func:`plan_scale` the budget clamps instead of refusing: adaptive scaling
    asks for workers by itself, so it must stay within what the account can pay.
    """
    check_walltime(shape, limits)
    bounds = job_bounds(shape, limits)
    budget = budget_core_hours(shape, limits, current_jobs * shape.core_minutes)
    if budget is not None and shape.core_minutes:
        more = int(budget * 60 // shape.core_minutes)
        account = limits.budget.account if limits.budget else shape.account
        bounds.append(Bound(current_jobs + more, f"account {account}'s budget "
                            f"({budget:.2f} core-hours left) pays for {_per(more, 'more job')}"))
    finite = not math.isinf(maximum_workers)
    wanted = math.ceil(maximum_workers / shape.processes) if finite else None
    allowed = min((b.jobs for b in bounds), default=wanted)
    if allowed is None:
        raise LimitExceeded("adapt needs a maximum: no limit is known for this user")
    if wanted is not None and wanted <= allowed:
        return wanted, None
    reasons = _explained(dict.fromkeys(b.reason for b in bounds if b.jobs == allowed),
                         shape.processes)
    not_text = f", not {int(maximum_workers)}" if finite else ""
    return allowed, (f"adapting up to {_per(allowed * shape.processes, 'worker')}{not_text}: "
                     f"{reasons}")


def roll_after(lifetime: timedelta, stagger: timedelta) -> timedelta:
    """How long after its arrival a worker gets a successor and then retires.

    Early enough that the successor is likely running before the worker's own
    ``--lifetime`` (the backstop) ends it, so the retiring worker can hand its results
    to a live worker instead of losing them; late enough not to waste the job.
    """
    lead = min(max(0.1 * lifetime.total_seconds(), 10.0), 300.0)
    after = max(lifetime.total_seconds() - stagger.total_seconds() - lead,
                0.5 * lifetime.total_seconds())
    return timedelta(seconds=int(after))

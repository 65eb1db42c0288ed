"""Neutral job vocabulary shared by dialects, the poller, the spawner and Dask code.

Scheduler spellings (``PD``, ``R``, ``Q``, ``H`` ...) never leave a dialect: every
dialect translates its output into :class:`JobState` and :class:`JobInfo`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta


class JobState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    REQUEUED = "requeued"
    COMPLETING = "completing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    NODE_FAIL = "node_fail"
    PREEMPTED = "preempted"
    OUT_OF_MEMORY = "out_of_memory"
    #: over, but nobody can say how: the job left the queue and the scheduler keeps no
    #: record of it (no accounting, records lost, a controller's cold start). Never
    #: reported as completed: it may have failed, or been killed with its node.
    ENDED_UNKNOWN = "ended_unknown"
    #: the scheduler could not be asked (outage, timeout); never means "gone"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """The job will never run (again) under this id."""
        return self in _TERMINAL

    @property
    def is_active(self) -> bool:
        """The job exists and may still run or is running."""
        return self in _ACTIVE

    @property
    def description(self) -> str:
        """How a person reads the state: ``node fail``, ``ended, reason unknown``."""
        if self is JobState.ENDED_UNKNOWN:
            return "ended, reason unknown"
        return self.value.replace("_", " ")


_TERMINAL = frozenset(
    {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.TIMEOUT,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.OUT_OF_MEMORY,
        JobState.ENDED_UNKNOWN,
    }
)
_ACTIVE = frozenset(
    {
        JobState.PENDING,
        JobState.RUNNING,
        JobState.SUSPENDED,
        JobState.REQUEUED,
        JobState.COMPLETING,
    }
)


@dataclass(frozen=True)
class JobInfo:
    """What the scheduler says about one job at one moment."""

    job_id: str
    state: JobState
    #: pending reason or end reason in the scheduler's words, e.g. "QOSMaxJobsPerUserLimit"
    reason: str | None = None
    user: str | None = None
    name: str | None = None
    partition: str | None = None
    nodes: tuple[str, ...] = ()
    #: estimated start for pending jobs, actual start for running ones
    start_time: datetime | None = None
    time_left: timedelta | None = None
    exit_code: int | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)


#: the start of every Dask worker job's name
DASK_JOB_PREFIX = "hpcb-dask-"


def dask_cluster_name(token: str, parent_job_id: str | None) -> str:
    """The name of a Dask cluster's worker jobs: ``hpcb-dask-j<parent>-<token>`` when it is
    started inside a batch job (a notebook server's), so that stopping that server can
    cancel them (:func:`dask_workers_of`); else ``hpcb-dask-<token>``. Only the parent's
    leading digits are used (PBS ids are ``7.server``): names stay short and plain."""
    digits = ""
    for char in parent_job_id or "":
        if not char.isdigit() or len(digits) == 12:
            break
        digits += char
    return DASK_JOB_PREFIX + (f"j{digits}-" if digits else "") + token


def dask_workers_of(job_id: str) -> str | None:
    """The name prefix of the Dask worker jobs started inside job ``job_id``; None for
    an id that names none."""
    prefix = dask_cluster_name("", job_id)
    return prefix if prefix != DASK_JOB_PREFIX else None

"""The scheduler dialect protocol: one scheduler's commands and output formats.

A dialect is pure. It turns requests into :class:`Command` values (an argv list and
optional stdin bytes) and turns the text a command printed back into neutral data
(:class:`~hpcbridge.jobs.JobInfo`, :class:`PartitionInfo`, :class:`Association`,
:class:`QosLimits`, :class:`Budget`). It never runs anything and knows nothing of
transports; :class:`hpcbridge.client.SchedulerClient` combines a dialect with a
transport and is the one place where failures become hpcbridge errors.

Status is asked in two steps so that one query covers every tracked job:

1. ``status_command(ids)`` asks the live queue about all ids at once;
   ``parse_status`` returns what the queue knows.
2. ids the queue no longer knows are asked once more from the scheduler's history
   (``history_command``, e.g. ``sacct``); what history does not know either gets
   ``absent_info`` -- the job left the queue and left no record.

Step 2 runs only for ids that just disappeared, so a steady state costs one query.
A failed query is never turned into "job gone": ``classify_error`` tells an outage
(:class:`~hpcbridge.errors.SchedulerUnavailable`) apart from an unknown id
(:class:`~hpcbridge.errors.JobNotFound`), a refusal or a permission problem.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from hpcbridge.errors import PermissionDenied, SchedulerError
from hpcbridge.jobs import JobInfo, JobState

if TYPE_CHECKING:
    from hpcbridge.profiles.request import ValidatedRequest


#: the job names the hub gives its own jobs, and the only ones it ever looks for
SAFE_JOB_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def name_chunks(names: Sequence[str], size: int = 100) -> Iterator[list[str]]:
    """``names`` (checked against :data:`SAFE_JOB_NAME`) in groups short enough for one
    command line each."""
    bad = [n for n in names if not SAFE_JOB_NAME.fullmatch(n)]
    if bad:
        raise ValueError(f"not job names of the hub: {bad[:3]!r}")
    for start in range(0, len(names), size):
        yield list(names[start:start + size])


@dataclass(frozen=True)
class Command:
    """An argv to run (never through a shell) and the bytes to feed on stdin."""

    argv: tuple[str, ...]
    stdin: bytes | None = None


class Operation(enum.Enum):
    """What a failed command was doing; ``classify_error`` reads errors in context."""

    SUBMIT = "submit"
    CANCEL = "cancel"
    STATUS = "status"
    HISTORY = "history"
    QUERY = "query"
    CRONTAB = "crontab"


@dataclass(frozen=True)
class PartitionInfo:
    """A partition (Slurm) or queue (PBS) and the limits a job must fit into."""

    name: str
    available: bool = True
    default: bool = False
    max_walltime: timedelta | None = None
    default_walltime: timedelta | None = None
    max_nodes: int | None = None
    total_nodes: int | None = None
    total_cpus: int | None = None
    #: smallest node of the partition: a one-node job of this size fits anywhere
    cores_per_node: int | None = None
    memory_per_node_mb: int | None = None
    gpus_per_node: int | None = None
    #: GPU types of the partition's nodes (Slurm typed GRES, ``gpu:a100:4``)
    gpu_types: tuple[str, ...] = ()
    max_memory_per_node_mb: int | None = None
    default_memory_per_cpu_mb: int | None = None
    allow_accounts: tuple[str, ...] | None = None
    allow_qos: tuple[str, ...] | None = None
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobArray:
    """Several runs of one script as one job: tasks ``0 .. tasks-1``, at most
    ``throttle`` of them running at once (None: as many as the scheduler lets run)."""

    tasks: int
    throttle: int | None = None

    def __post_init__(self) -> None:
        if self.tasks < 1 or (self.throttle is not None and self.throttle < 1):
            raise ValueError(f"not a job array: {self.tasks} tasks, throttle {self.throttle}")

    @property
    def limit(self) -> int | None:
        """The throttle when it holds some tasks back; None when all may run."""
        return self.throttle if self.throttle is not None and self.throttle < self.tasks \
            else None


@dataclass(frozen=True)
class Availability:
    """What a partition has free right now (for the spawn form; a snapshot, not a promise)."""

    partition: str
    idle_cpus: int
    total_cpus: int
    idle_nodes: int
    total_nodes: int
    #: GPU type ("" where the GRES has none) -> (free now, total) on the usable nodes
    gpus: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Estimate:
    """When the scheduler would start a request submitted now (``sbatch --test-only``):
    its own forecast, in the cluster's local time; not a promise."""

    start: datetime
    nodes: tuple[str, ...] = ()
    partition: str | None = None


@dataclass(frozen=True)
class Association:
    """What a user may charge: one (account, partition) association and its limits."""

    account: str
    user: str
    cluster: str | None = None
    partition: str | None = None
    qos: tuple[str, ...] = ()
    default_qos: str | None = None
    max_jobs: int | None = None
    max_submit_jobs: int | None = None
    max_walltime: timedelta | None = None
    #: TRES name -> value, e.g. {"cpu": 16, "mem": 32768, "gres/gpu": 2}
    max_tres_per_job: dict[str, int] = field(default_factory=dict)
    grp_tres: dict[str, int] = field(default_factory=dict)
    grp_tres_minutes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class QosLimits:
    """One QOS and the limits it imposes (per user and per job)."""

    name: str
    priority: int | None = None
    max_walltime: timedelta | None = None
    max_jobs_per_user: int | None = None
    max_submit_jobs_per_user: int | None = None
    max_tres_per_user: dict[str, int] = field(default_factory=dict)
    max_tres_per_job: dict[str, int] = field(default_factory=dict)
    grp_tres_minutes: dict[str, int] = field(default_factory=dict)
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Budget:
    """An account's TRES-minute allocation and what is used of it.

    ``limit_minutes`` and ``used_minutes`` are keyed by TRES name ("cpu", "billing").
    ``remaining`` is None for a TRES without a limit.
    """

    account: str
    limit_minutes: dict[str, int] = field(default_factory=dict)
    used_minutes: dict[str, int] = field(default_factory=dict)

    def remaining(self, tres: str = "cpu") -> int | None:
        if tres not in self.limit_minutes:
            return None
        return max(0, self.limit_minutes[tres] - self.used_minutes.get(tres, 0))


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can tell or do beyond submit / status / cancel.

    ``unknown`` names the limits a user may have that this scheduler does not show
    (key: what, value: why), so that Dask's scaling message can say what it could not
    check instead of implying there is no such limit.
    """

    #: several jobs submitted as one (job arrays: ``array_directives``)
    arrays: bool = False
    #: finished jobs can be asked about (sacct, ``qstat -x``)
    history: bool = False
    #: per-account TRES-minute allocations (``sshare``)
    budgets: bool = False
    #: idle/total CPUs per partition now (for the spawn form)
    availability: bool = False
    #: the start of a request can be forecast before submitting (``estimate_command``)
    estimates: bool = False
    #: which dask-jobqueue cluster family runs workers here ("slurm", "pbs"); None: none
    dask: str | None = None
    #: users keep recurring jobs in a crontab of the scheduler (Slurm's scrontab)
    crontab: bool = False
    unknown: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Accounting:
    """What an ended job consumed, from the scheduler's accounting (``sacct``,
    ``qstat -x -f``): for session records. Unknown values are None."""

    job_id: str
    state: JobState
    #: the scheduler's own word for the end, e.g. ``NODE_FAIL``, ``CANCELLED by 1001``
    state_text: str
    exit_code: int | None = None
    nodes: tuple[str, ...] = ()
    #: cores allocated (what core-hours are charged for)
    cores: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    elapsed_seconds: int | None = None
    #: cores x elapsed, summed over the tasks of an array: what core-hours are made of
    core_seconds: int | None = None
    cpu_seconds: float | None = None
    max_rss_mb: float | None = None
    energy_joules: int | None = None
    #: every step of the job has ended too: its usage (peak memory) is final. A
    #: cancelled job ends at once, its steps only when their processes are gone
    #: (Slurm's KillWait later)
    settled: bool = True


@dataclass(frozen=True)
class UserJob:
    """One queued or running job of a user, with what it holds (for Dask's limits)."""

    job_id: str
    state: JobState
    reason: str | None
    user: str
    cores: int
    memory_mb: int
    #: user-controlled text: used only to recognise names the caller itself gave
    name: str


@runtime_checkable
class SchedulerDialect(Protocol):
    """One scheduler's commands and output formats. Pure: no I/O."""

    #: "slurm", "pbs"
    name: str
    #: True when submission needs the script as a file on the submit host (qsub);
    #: False when it reads the script from stdin (sbatch).
    needs_script_file: bool
    capabilities: Capabilities

    def directives(self, req: ValidatedRequest) -> list[str]:
        """The batch script's directive lines (``#SBATCH ...``) for a validated request.

        Every value in ``req`` has passed the profile's grammars (no newline, quote or
        shell metacharacter), so it may be written as it is.
        """
        ...

    #: environment variables a task of a job array finds its index in, the first set
    #: one counts (``SLURM_ARRAY_TASK_ID``, ``PBS_ARRAY_INDEX``, ``PBS_ARRAYID``)
    array_task_variables: tuple[str, ...]

    def array_directives(self, array: JobArray, directives: list[str]) -> list[str]:
        """The directive lines of a job array of the script whose single-job lines are
        ``directives``: those with the array's added, and any line the tasks must not
        share changed (PBS Pro's one output path); only where ``capabilities.arrays``."""
        ...

    def array_task_id(self, job_id: str, task: int) -> str | None:
        """The id of task ``task`` of the array submitted as ``job_id``, for status and
        cancel; None where the scheduler cannot be asked about one task."""
        ...

    def is_job_id(self, job_id: str) -> bool:
        """Whether ``job_id`` is spelled like one of this scheduler's ids (safe for argv)."""
        ...

    def submit_command(self, script: str, script_path: str | None = None) -> Command:
        """The command submitting ``script``; ``script_path`` when ``needs_script_file``."""
        ...

    def parse_submit(self, stdout: str) -> str:
        """The job id printed by a successful submission."""
        ...

    def cancel_command(self, job_ids: Sequence[str]) -> Command: ...

    def status_command(self, job_ids: Sequence[str]) -> Command:
        """ONE query covering every id."""
        ...

    def parse_status(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """What the live queue says, keyed by the ids asked for; unknown ids are left out."""
        ...

    def history_command(self, job_ids: Sequence[str]) -> Command | None:
        """A query of finished jobs, or None where the scheduler keeps no history."""
        ...

    def parse_history(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobInfo]: ...

    def accounting_command(self, job_ids: Sequence[str]) -> Command | None:
        """What the jobs consumed (elapsed, CPU time, memory, energy), steps included;
        None where the scheduler keeps no record of ended jobs."""
        ...

    def parse_accounting(self, stdout: str, job_ids: Sequence[str]) -> dict[str, Accounting]:
        """Accounting of the ids asked for; ids not in the output are left out."""
        ...

    # Optional (an adapter without them is asked nothing): how often the scheduler
    # samples a job's memory, in seconds (0: never), so that a record can say why it
    # has no peak memory. ``memory_sampling_command`` -> Command | None,
    # ``parse_memory_sampling(stdout)`` -> int | None. Slurm: ``scontrol show config``.

    def absent_info(self, job_id: str) -> JobInfo:
        """The job is in neither queue nor history while the scheduler answered:
        ``JobState.ENDED_UNKNOWN`` with ``extra["absent"]``, never a guessed end."""
        ...

    def classify_error(
        self, operation: Operation, returncode: int, stderr: str
    ) -> SchedulerError | PermissionDenied | None:
        """The error a failed command means, or None when the failure is harmless."""
        ...

    def user_jobs_command(self, user: str) -> Command | None:
        """The queued and running jobs of ``user``, asked as that user; None where the
        scheduler cannot list them (then ``capabilities.unknown`` says why)."""
        ...

    def parse_user_jobs(self, stdout: str, user: str) -> list[UserJob]:
        """Rows of ``user_jobs_command``; rows naming another owner are dropped."""
        ...

    #: True when ``active_jobs_commands`` has the scheduler print only jobs named
    #: exactly one of the names asked for; False when the listing holds every job and
    #: the client confirms each match with a query of that job alone
    filters_job_names: bool

    def active_jobs_commands(self, names: Sequence[str]) -> list[Command]:
        """Queries for every queued or running job (of any user) named exactly one of
        ``names`` (the hub's own names, :data:`SAFE_JOB_NAME`), for orphan sweeps."""
        ...

    def parse_active_jobs(self, stdout: str, names: Collection[str]) -> list[JobInfo]:
        """Jobs with ``job_id``, ``user``, ``state`` and ``name`` set, whose name is one
        of ``names``; anything else in the output is dropped."""
        ...

    def availability_command(self) -> Command | None:
        """Idle and total CPUs and nodes per partition; None where the scheduler can't say."""
        ...

    def parse_availability(self, stdout: str) -> list[Availability]: ...

    def estimate_command(self, script: str) -> Command | None:
        """A dry run of submitting ``script`` that says when it would start, run as the
        user (nothing is queued); None where the scheduler cannot forecast
        (``capabilities.estimates`` is False)."""
        ...

    def parse_estimate(self, stdout: str, stderr: str) -> Estimate | None:
        """The forecast of a successful ``estimate_command``; None if it printed none."""
        ...

    def charge_minutes(self, req: ValidatedRequest) -> dict[str, int]:
        """What ``req`` costs if it runs its whole walltime, in the TRES-minutes a
        :class:`Budget` counts (e.g. {"cpu": cores x nodes x minutes})."""
        ...

    def partitions_commands(self) -> list[Command]: ...

    def parse_partitions(self, outputs: Sequence[str]) -> list[PartitionInfo]: ...

    def associations_command(self, user: str) -> Command | None: ...

    def parse_associations(self, stdout: str) -> list[Association]: ...

    def qos_command(self, names: Sequence[str] = ()) -> Command | None: ...

    def parse_qos(self, stdout: str, user: str | None = None) -> list[QosLimits]:
        """QOS rows; a scheduler whose limits differ per user (PBS queue limits such as
        ``[u:alice=8]``) reads them for ``user``."""
        ...

    def budget_commands(self, account: str) -> list[Command]: ...

    def parse_budget(self, account: str, outputs: Sequence[str]) -> Budget | None: ...

    def crontab_read_command(self) -> Command | None:
        """The calling user's crontab of the scheduler; None where it keeps none."""
        ...

    def parse_crontab(self, returncode: int, stdout: str) -> str:
        """The crontab's text read by ``crontab_read_command`` ("" for none); ValueError
        when the read failed."""
        ...

    def crontab_write_command(self, text: str) -> Command | None:
        """Replace the calling user's crontab with ``text`` (on stdin)."""
        ...

    def crontab_directives(self, req: ValidatedRequest) -> list[str]:
        """The option lines of one crontab entry for a validated request."""
        ...

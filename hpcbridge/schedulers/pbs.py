"""PBS dialect: ``qsub FILE``, ``qstat -f ID...``, ``qdel``; PBS Pro and Slurm's torque wrappers.

One parser reads ``qstat -f`` from both: PBS Pro indents attributes with four spaces
and wraps long values onto lines starting with a tab; Slurm's ``qstat`` wrapper
indents attributes with a tab and never wraps. The first attribute line of a block
fixes its indentation, so a tab line in a PBS Pro block is a continuation.

Facts this dialect is built on (DESIGN.md #11): the torque wrappers' ``qsub`` needs
a script file (no stdin), their ``qstat`` has no ``-x`` (so no history: pass
``history=False``), and a ``qstat -f`` naming no existing job exits 153 silently.
A ``Job_Name`` is printed as-is (the wrappers let it hold newlines) and could fake a
``Job Id:`` line or an attribute line: an id that appears twice, or a block that names
an attribute twice, is reported UNKNOWN rather than trusted, and the orphan listing
(``qstat -f`` of every job, which cannot filter by name) only proposes jobs; the client
confirms each with ``qstat -f`` of that one job, whose text only its owner wrote.
Where Slurm is the scheduler, prefer
:class:`~hpcbridge.schedulers.slurm.SlurmDialect` for status.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar

from hpcbridge.errors import (
    JobNotFound,
    PermissionDenied,
    SchedulerError,
    SchedulerUnavailable,
    SubmitRefused,
)
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.schedulers.base import (
    Accounting,
    Association,
    Availability,
    Budget,
    Capabilities,
    Command,
    Estimate,
    JobArray,
    Operation,
    PartitionInfo,
    QosLimits,
    UserJob,
    name_chunks,
)
from hpcbridge.schedulers.textparse import (
    is_none,
    parse_ctime,
    parse_duration,
    parse_int,
    parse_memory_mb,
)

if TYPE_CHECKING:
    from hpcbridge.profiles.request import ValidatedRequest

_JOB_ID = re.compile(r"^\d+(?:\[\d*\])?(?:\.[A-Za-z0-9_.\-]+)?$")
_ATTR = re.compile(r"^([ \t]+)([A-Za-z_][\w.\-]*) = ?(.*)$")

_ACTIVE = {
    "Q": (JobState.PENDING, None),
    "H": (JobState.PENDING, "held"),
    "W": (JobState.PENDING, "waiting for its execution time"),
    "T": (JobState.PENDING, "being moved"),
    "R": (JobState.RUNNING, None),
    "B": (JobState.RUNNING, "array begun"),
    "S": (JobState.SUSPENDED, None),
    "U": (JobState.SUSPENDED, "suspended: workstation busy"),
    "E": (JobState.COMPLETING, None),
}
_FINISHED = frozenset({"F", "X", "C"})
#: set in a block's attributes when one was named twice (no attribute name has a space)
REPEATED = " repeated"

#: PBS Pro exit statuses of jobs the server killed (JOB_EXEC_KILL_*)
_KILLED_BY_LIMIT = {-29: JobState.TIMEOUT, -24: JobState.OUT_OF_MEMORY,
                    -25: JobState.OUT_OF_MEMORY}

_UNAVAILABLE = ("cannot connect to server", "connection refused", "communication failure",
                "pbs_connect", "timed out", "server is not running", "problem loading jobs",
                "unable to contact slurm controller", "socket timed out")
_NOT_FOUND = ("unknown job id", "job has finished", "invalid job id")
_HARMLESS_CANCEL = ("job has finished", "already completing or completed")
_PERMISSION = ("unauthorized request", "permission denied")


def parse_blocks(text: str, header: str) -> list[tuple[str, dict[str, str]]]:
    """``Job Id: X`` / ``Queue: X`` blocks of ``qstat -f`` as (name, attributes)."""
    blocks: list[tuple[str, dict[str, str]]] = []
    attrs: dict[str, str] = {}
    indent: str | None = None
    last: str | None = None
    for line in text.splitlines():
        if line.startswith(header + ":"):
            attrs, indent, last = {}, None, None
            blocks.append((line[len(header) + 1:].strip(), attrs))
            continue
        if not blocks or not line.strip():
            continue
        m = _ATTR.match(line)
        if m and indent in (None, m.group(1)):
            indent = m.group(1)
            last = m.group(2)
            if last in attrs:
                attrs[REPEATED] = last  # a value with a newline may fake an attribute
            attrs[last] = m.group(3).rstrip()
        elif last is not None:
            # PBS Pro continuation: a tab, then the rest of the value
            attrs[last] += line[1:] if line.startswith("\t") else line.strip()
    return blocks


def _seq(job_id: str) -> str:
    """``1234.pbs01.example.org`` and ``1234.pbs01`` both name sequence ``1234``."""
    return job_id.split(".", 1)[0]


def _finished_state(attrs: dict[str, str]) -> tuple[JobState, str | None]:
    code = parse_int(attrs.get("Exit_status", attrs.get("exit_status")))
    if code is None or code == 0:
        return JobState.COMPLETED, None
    if code in _KILLED_BY_LIMIT:
        return _KILLED_BY_LIMIT[code], f"Exit_status={code}"
    if code > 256:
        return JobState.CANCELLED, f"killed by signal {code - 256}"
    return JobState.FAILED, f"Exit_status={code}"


def _time_left(attrs: dict[str, str]) -> timedelta | None:
    limit = parse_duration(attrs.get("Resource_List.walltime"))
    used = parse_duration(attrs.get("resources_used.walltime"))
    if limit is None or used is None:
        return None
    return max(timedelta(0), limit - used)


def job_info(job_id: str, attrs: dict[str, str]) -> JobInfo:
    if REPEATED in attrs:
        return JobInfo(job_id, JobState.UNKNOWN,
                       reason=f"ambiguous qstat output: {attrs[REPEATED]} listed twice")
    code = attrs.get("job_state", "").strip()
    if code in _FINISHED:
        state, reason = _finished_state(attrs)
    else:
        state, reason = _ACTIVE.get(code, (JobState.UNKNOWN, f"job_state={code}"))
    comment = attrs.get("comment")
    if comment and state in (JobState.PENDING, JobState.UNKNOWN):
        reason = comment
    hosts = tuple(dict.fromkeys(
        h.split("/", 1)[0] for h in attrs.get("exec_host", "").split("+") if h))
    wrapper = "mtime" in attrs and "stime" not in attrs and "estimated.start_time" not in attrs
    start = attrs.get("estimated.start_time") or attrs.get("stime")
    if wrapper:
        start = attrs.get("mtime")  # Slurm's wrapper prints the start time as mtime
    running = state in (JobState.RUNNING, JobState.SUSPENDED, JobState.COMPLETING)
    return JobInfo(
        job_id=job_id,
        state=state,
        reason=reason,
        user=attrs.get("Job_Owner", "").split("@", 1)[0] or None,
        partition=attrs.get("queue") or None,
        nodes=hosts,
        start_time=parse_ctime(start),
        time_left=_time_left(attrs) if running else None,
        exit_code=parse_int(attrs.get("Exit_status", attrs.get("exit_status"))),
        name=attrs.get("Job_Name"),
        extra={"pbs_state": code},
    )


def _usage(job_id: str, attrs: dict[str, str]) -> Accounting:
    """A job's ``resources_used.*`` (PBS Pro writes memory as ``123kb``, energy in kWh)."""
    info = job_info(job_id, attrs)
    elapsed = parse_duration(attrs.get("resources_used.walltime"))
    cpu = parse_duration(attrs.get("resources_used.cput"))
    cores = parse_int(attrs.get("resources_used.ncpus") or attrs.get("Resource_List.ncpus"))
    kwh = attrs.get("resources_used.energy")
    try:
        energy = round(float(kwh) * 3.6e6) if kwh else None
    except ValueError:
        energy = None
    seconds = int(elapsed.total_seconds()) if elapsed is not None else None
    return Accounting(
        job_id=job_id, state=info.state, state_text=info.reason or info.state.name,
        exit_code=info.exit_code, nodes=info.nodes, cores=cores,
        start=parse_ctime(attrs.get("stime")), end=parse_ctime(attrs.get("obittime")),
        elapsed_seconds=seconds,
        core_seconds=seconds * cores if seconds is not None and cores else None,
        cpu_seconds=cpu.total_seconds() if cpu is not None else None,
        max_rss_mb=parse_memory_mb(attrs.get("resources_used.mem")), energy_joules=energy)


def parse_qstat_usage(stdout: str, job_ids: Sequence[str]) -> dict[str, Accounting]:
    wanted = {_seq(j): j for j in job_ids}
    found: dict[str, Accounting] = {}
    for shown, attrs in parse_blocks(stdout, "Job Id"):
        job_id = wanted.get(_seq(shown))
        if job_id is not None and job_id not in found and REPEATED not in attrs:
            found[job_id] = _usage(job_id, attrs)
    return found


def parse_qstat_full(stdout: str, job_ids: Sequence[str]) -> dict[str, JobInfo]:
    wanted = {_seq(j): j for j in job_ids}
    seen: dict[str, JobInfo] = {}
    for shown, attrs in parse_blocks(stdout, "Job Id"):
        job_id = wanted.get(_seq(shown))
        if job_id is None:
            continue
        if job_id in seen:
            seen[job_id] = JobInfo(job_id, JobState.UNKNOWN,
                                   reason="ambiguous qstat output: job listed twice")
            continue
        seen[job_id] = job_info(job_id, attrs)
    return seen


def _pbs_common(req: ValidatedRequest) -> list[str]:
    opts = [f"-N {req.job_name}", f"-q {req.queue}"]
    if req.account:
        opts.append(f"-A {req.account}")
    return opts


def _pbs_tail(req: ValidatedRequest) -> list[str]:
    opts = [
        f"-l walltime={req.walltime}",
        "-j oe",
        f"-o {req.log_folder}/{req.job_name}.log",
        "-r n",
        "-S /bin/bash",
    ]
    if req.export_env:
        opts.append(f"-v {','.join(req.export_env)}")
    return opts


def _pbspro_directives(req: ValidatedRequest) -> list[str]:
    chunk = f"select={req.nodes}:ncpus={req.cores}:mem={req.memory.pbs()}"
    if req.gpus:
        chunk += f":ngpus={req.gpus}"
    opts = [*_pbs_common(req), f"-l {chunk}", *_pbs_tail(req)]
    return [f"#PBS {opt}" for opt in opts]


def _torque_directives(req: ValidatedRequest) -> list[str]:
    # the spelling Slurm's sbatch understands in #PBS lines as well as Torque does;
    # GPUs as naccelerators because sbatch reads ":gpus=" in a nodes spec as a host name
    opts = [*_pbs_common(req), f"-l nodes={req.nodes}:ppn={req.cores}"]
    opts.append(f"-l mem={req.memory.pbs()}")
    if req.gpus:
        opts.append(f"-l naccelerators={req.gpus * req.nodes}")
    opts += _pbs_tail(req)
    return [f"#PBS {opt}" for opt in opts]


FLAVORS = {"pbspro": _pbspro_directives, "torque": _torque_directives}
#: per flavor: the array option and the variable holding a task's index. Slurm's torque
#: wrappers hand the script to sbatch, which reads ``#PBS -t``/``-J`` as ``--array`` and
#: sets only ``SLURM_ARRAY_TASK_ID`` (docs/architecture.md), so it is looked for last
_ARRAYS = {"pbspro": ("-J", "PBS_ARRAY_INDEX"), "torque": ("-t", "PBS_ARRAYID")}
_ARRAY_ID = re.compile(r"^(\d+)\[\](.*)$")

#: limits a PBS user may have that qstat does not show (Dask's scaling message says so)
_UNKNOWN = (
    ("QOS", "PBS has no QOS; per-user limits are read from the queue (max_run, max_queued)"),
    ("association", "PBS has no accounts with limits of their own"),
    ("budget", "PBS keeps no allocation budget that qstat shows"),
    ("server limits", "server-wide max_run/max_queued are not read"),
)

_LIMIT_ENTRY = re.compile(r"\[([ugpo]):([^=\]]+)=(\d+)\]")


def _user_limit(text: str | None, user: str | None) -> int | None:
    """A PBS Pro limit attribute, ``[u:PBS_GENERIC=4] [u:alice=8]``, for ``user``:
    her own entry, else the generic one. A plain number (Torque) applies to all."""
    if is_none(text):
        return None
    entries = {(kind, who): int(n) for kind, who, n in _LIMIT_ENTRY.findall(str(text))}
    if not entries:
        return parse_int(text)
    if user is not None and ("u", user) in entries:
        return entries[("u", user)]
    return entries.get(("u", "PBS_GENERIC"))


def queue_limits(name: str, attrs: dict[str, str], user: str | None) -> QosLimits:
    """The per-user limits of one queue (``qstat -Q -f``) as the neutral QosLimits."""
    per_user = {k: v for k, v in (
        ("cpu", _user_limit(attrs.get("max_run_res.ncpus"), user)),
        ("mem", parse_memory_mb(attrs.get("max_run_res.mem"))),
    ) if v is not None}
    per_job = {k: v for k, v in (
        ("cpu", parse_int(attrs.get("resources_max.ncpus"))),
        ("mem", parse_memory_mb(attrs.get("resources_max.mem"))),
    ) if v is not None}
    return QosLimits(
        name=name,
        max_walltime=parse_duration(attrs.get("resources_max.walltime")),
        max_jobs_per_user=_user_limit(attrs.get("max_run", attrs.get("max_user_run")), user),
        max_submit_jobs_per_user=_user_limit(
            attrs.get("max_queued", attrs.get("max_user_queuable")), user),
        max_tres_per_user=per_user, max_tres_per_job=per_job, flags=("queue",))


def _job_cores(attrs: dict[str, str]) -> int:
    ncpus = parse_int(attrs.get("Resource_List.ncpus"))
    if ncpus is not None:
        return ncpus
    # Torque style nodes=N:ppn=C
    m = re.match(r"(\d+):ppn=(\d+)", attrs.get("Resource_List.nodes", ""))
    return int(m.group(1)) * int(m.group(2)) if m else 0


def classify(operation: Operation, returncode: int, stderr: str
             ) -> SchedulerError | PermissionDenied | None:
    text = stderr.strip() or f"exit status {returncode}"
    low = text.lower()
    if operation is Operation.CANCEL and any(p in low for p in _HARMLESS_CANCEL):
        return None
    if any(p in low for p in _UNAVAILABLE):
        return SchedulerUnavailable(
            f"PBS server is unreachable or slow: {text}",
            user_message="The scheduler is not answering right now; job states are unknown.",
        )
    if any(p in low for p in _NOT_FOUND) or (returncode == 153 and not stderr.strip()):
        # 153 = PBSE_UNKJOBID & 0xff; Slurm's wrapper exits 153 silently when nothing matched
        return JobNotFound(text)
    if operation is Operation.SUBMIT:
        words = re.sub(r"^qsub:\s*", "", text.splitlines()[0])
        return SubmitRefused(f"qsub refused the job: {words}", user_message=words)
    if any(p in low for p in _PERMISSION):
        return PermissionDenied(f"PBS refused the request: {text}")
    return SchedulerError(f"PBS command failed: {text}")


class PbsDialect:
    """PBS Pro / OpenPBS / Torque, and Slurm's torque wrappers (``history=False``)."""

    name = "pbs"
    needs_script_file = True
    OPTIONS: ClassVar[dict[str, tuple[type, str]]] = {
        "flavor": (str, "Directive syntax of scripts: `pbspro` (`-l select=`, the "
                   "default) or `torque` (`-l nodes=N:ppn=C`, also read by Slurm's "
                   "torque wrappers). The profile's `pbs_flavor` sets it too."),
        "history": (bool, "Read jobs that left the queue with `qstat -x -f` (PBS Pro with "
                    "`job_history_enable`); default false (Torque and Slurm's wrappers "
                    "have no `-x`)."),
        "array_throttle": (bool, "Write the running-task limit of a job array "
                           "(`-J 0-9%4`, `-t 0-9%4`); default true. PBS Pro before "
                           "OpenPBS 20.0 / PBS Professional 2020.1 has no `%` in `-J`: "
                           "set false there (then the queue's limits alone hold tasks "
                           "back)."),
    }

    def __init__(self, *, history: bool = False, flavor: str = "pbspro",
                 array_throttle: bool = True) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"no PBS flavor {flavor!r} -- flavors: {', '.join(FLAVORS)}")
        #: PBS Pro with job_history_enable: finished jobs answer ``qstat -x -f``
        self.history = history
        self.flavor = flavor
        self.array_throttle = array_throttle
        option, variable = _ARRAYS[flavor]
        self._array_option = option
        self.array_task_variables = (variable, "SLURM_ARRAY_TASK_ID")
        self.capabilities = Capabilities(arrays=True, history=history, dask="pbs",
                                         unknown=_UNKNOWN)

    def directives(self, req: ValidatedRequest) -> list[str]:
        return FLAVORS[self.flavor](req)

    def array_directives(self, array: JobArray, directives: list[str]) -> list[str]:
        throttle = f"%{array.limit}" if array.limit and self.array_throttle else ""
        lines = [*directives, f"#PBS {self._array_option} 0-{array.tasks - 1}{throttle}"]
        if self.flavor != "pbspro":
            # Torque names each task's output itself; Slurm's wrappers hand -o to sbatch
            return lines
        # PBS Pro copies every subjob's output to the one -o path, the last one winning:
        # ^array_index^ is its placeholder for the subjob's index
        return [re.sub(r"^(#PBS -o .*)\.log$", r"\1.^array_index^.log", line)
                for line in lines]

    def array_task_id(self, job_id: str, task: int) -> str | None:
        """``1234[].server`` -> ``1234[3].server``; an id without ``[]`` (Slurm's torque
        wrappers print the plain number) names no task one can ask ``qstat`` about."""
        m = _ARRAY_ID.match(job_id)
        return f"{m.group(1)}[{task}]{m.group(2)}" if m else None

    def is_job_id(self, job_id: str) -> bool:
        return bool(_JOB_ID.match(job_id))

    def _check(self, job_ids: Sequence[str]) -> list[str]:
        bad = [j for j in job_ids if not self.is_job_id(j)]
        if bad or not job_ids:
            raise ValueError(f"not PBS job ids: {bad!r}" if bad else "no job ids given")
        return list(job_ids)

    def submit_command(self, script: str, script_path: str | None = None) -> Command:
        if not script_path:
            raise ValueError("qsub needs the script as a file on the submit host")
        return Command(("qsub", script_path))

    def parse_submit(self, stdout: str) -> str:
        lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
        job_id = lines[-1] if lines else ""
        if not self.is_job_id(job_id):
            raise ValueError(f"qsub printed no job id: {stdout!r}")
        return job_id

    def cancel_command(self, job_ids: Sequence[str]) -> Command:
        return Command(("qdel", *self._check(job_ids)))

    def status_command(self, job_ids: Sequence[str]) -> Command:
        return Command(("qstat", "-f", *self._check(job_ids)))

    def parse_status(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        return parse_qstat_full(stdout, job_ids)

    def history_command(self, job_ids: Sequence[str]) -> Command | None:
        if not self.history:
            return None
        return Command(("qstat", "-x", "-f", *self._check(job_ids)))

    def parse_history(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        return parse_qstat_full(stdout, job_ids)

    def accounting_command(self, job_ids: Sequence[str]) -> Command | None:
        if not self.history:
            return None
        return Command(("qstat", "-x", "-f", *self._check(job_ids)))

    def parse_accounting(self, stdout: str, job_ids: Sequence[str]) -> dict[str, Accounting]:
        return parse_qstat_usage(stdout, job_ids)

    def absent_info(self, job_id: str) -> JobInfo:
        return JobInfo(job_id, JobState.ENDED_UNKNOWN,
                       reason="left the queue; no record of how it ended",
                       extra={"absent": "true"})

    def classify_error(self, operation: Operation, returncode: int, stderr: str
                       ) -> SchedulerError | PermissionDenied | None:
        return classify(operation, returncode, stderr)

    #: qstat cannot filter by name: the client confirms each job this listing proposes
    filters_job_names = False

    def active_jobs_commands(self, names: Sequence[str]) -> list[Command]:
        list(name_chunks(names))  # the same check of the names as everywhere
        return [Command(("qstat", "-f"))]

    def parse_active_jobs(self, stdout: str, names: Collection[str]) -> list[JobInfo]:
        blocks = parse_blocks(stdout, "Job Id")
        seen: dict[str, int] = {}
        for shown, _ in blocks:
            seen[_seq(shown)] = seen.get(_seq(shown), 0) + 1
        jobs = []
        for shown, attrs in blocks:
            info = job_info(shown, attrs)
            if (seen[_seq(shown)] == 1 and info.state.is_active
                    and attrs.get("Job_Name") in names):
                jobs.append(info)
        return jobs

    def availability_command(self) -> Command | None:
        return None  # qstat has no portable per-queue idle count

    def parse_availability(self, stdout: str) -> list[Availability]:
        return []

    def estimate_command(self, script: str) -> Command | None:
        return None  # PBS has no dry run that forecasts a start

    def parse_estimate(self, stdout: str, stderr: str) -> Estimate | None:
        return None

    def charge_minutes(self, req: ValidatedRequest) -> dict[str, int]:
        # core-minutes for the form's cost; PBS keeps no budget to compare them with
        return {"cpu": req.nodes * req.cores * -(-int(req.walltime) // 60)}

    def partitions_commands(self) -> list[Command]:
        return [Command(("qstat", "-Q", "-f"))]

    def parse_partitions(self, outputs: Sequence[str]) -> list[PartitionInfo]:
        out = []
        for name, attrs in parse_blocks(outputs[0] if outputs else "", "Queue"):
            on = {"true", "yes"}
            out.append(PartitionInfo(
                name=name,
                available=attrs.get("enabled", "").lower() in on
                and attrs.get("started", "").lower() in on,
                max_walltime=parse_duration(attrs.get("resources_max.walltime")),
                default_walltime=parse_duration(attrs.get("resources_default.walltime")),
                max_nodes=None if is_none(attrs.get("resources_max.nodect"))
                else parse_int(attrs.get("resources_max.nodect")),
            ))
        return out

    # PBS keeps no associations or budgets in a form qstat shows (see _UNKNOWN); its
    # per-user limits live on queues, read as one "QOS" per queue.
    def associations_command(self, user: str) -> Command | None:
        return None

    def parse_associations(self, stdout: str) -> list[Association]:
        return []

    def qos_command(self, names: Sequence[str] = ()) -> Command | None:
        return Command(("qstat", "-Q", "-f", *names))

    def parse_qos(self, stdout: str, user: str | None = None) -> list[QosLimits]:
        return [queue_limits(name, attrs, user)
                for name, attrs in parse_blocks(stdout, "Queue")]

    def user_jobs_command(self, user: str) -> Command | None:
        # every job the server shows her; parse_user_jobs keeps those she owns
        return Command(("qstat", "-f"))

    def parse_user_jobs(self, stdout: str, user: str) -> list[UserJob]:
        jobs = []
        for shown, attrs in parse_blocks(stdout, "Job Id"):
            info = job_info(shown, attrs)
            if info.user != user or not info.state.is_active:
                continue
            jobs.append(UserJob(
                shown, info.state, info.reason, user, _job_cores(attrs),
                parse_memory_mb(attrs.get("Resource_List.mem")) or 0,
                attrs.get("Job_Name", "")))
        return jobs

    def budget_commands(self, account: str) -> list[Command]:
        return []

    def parse_budget(self, account: str, outputs: Sequence[str]) -> Budget | None:
        return None

    def crontab_read_command(self) -> Command | None:
        return None  # PBS keeps no crontab of its own

    def parse_crontab(self, returncode: int, stdout: str) -> str:
        return ""

    def crontab_write_command(self, text: str) -> Command | None:
        return None

    def crontab_directives(self, req: ValidatedRequest) -> list[str]:
        raise NotImplementedError("PBS has no crontab of its own")

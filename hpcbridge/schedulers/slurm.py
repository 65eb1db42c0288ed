"""SLURM dialect: sbatch / scancel / squeue + sacct, and the read-only queries.

Status output is read with an explicit ``|``-delimited format that leaves out every
field a user controls (job name, comment, work dir): a job name may contain ``|`` or
a newline, and a name like ``x\\n456|COMPLETED|...`` must not be able to forge the
state of someone else's job. Only ids, enums, user/account/partition names (chosen
by admins) and times are printed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, ClassVar

from hpcbridge.errors import (
    JobNotFound,
    PermissionDenied,
    SchedulerError,
    SchedulerUnavailable,
    SubmitRefused,
)
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.schedulers import slurm_queries
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
from hpcbridge.schedulers.slurm_status import (
    STATES as STATES,  # re-exported: the chaos tests read Slurm's state words here
    LineMemo,
    is_job_id,
    map_state,
    match_ids,
    parse_sacct,
    parse_squeue,
)
from hpcbridge.schedulers.textparse import is_none, parse_int, parse_memory_mb

if TYPE_CHECKING:
    from hpcbridge.profiles.request import ValidatedRequest

#: squeue fields, in order: display id, raw id, array base id, array task id, state,
#: reason, user, account, partition, node list, start (estimated when pending), time left
SQUEUE_FORMAT = "%i|%A|%F|%K|%T|%r|%u|%a|%P|%N|%S|%L"
SACCT_FIELDS = "JobID,JobIDRaw,State,ExitCode,User,Account,Partition,NodeList,Start,End"

_SUBMIT_FAILED = re.compile(r"submission failed:\s*(.+)", re.IGNORECASE)

_UNAVAILABLE = (
    "unable to contact slurm controller",
    "socket timed out on send/recv",
    "backup controller in standby mode",
    "zero bytes were transmitted or received",
    "communication connection failure",
    "connection refused",
    "connection timed out",
    "transport endpoint is not connected",
    "problem talking to the database",
    "slurm_persist_conn_open",
    "resource temporarily unavailable",
    "temporarily unable to accept job",
    "slurmctld is not responding",
)
_NOT_FOUND = ("invalid job id specified", "invalid job id", "job not found")
_HARMLESS_CANCEL = ("already completing or completed",)
_PERMISSION = ("access/permission denied", "permission denied", "invalid user id",
               "user not found")

def _check_ids(job_ids: Sequence[str]) -> str:
    bad = [j for j in job_ids if not is_job_id(j)]
    if bad or not job_ids:
        raise ValueError(f"not Slurm job ids: {bad!r}" if bad else "no job ids given")
    return ",".join(job_ids)


def classify(operation: Operation, returncode: int, stderr: str
             ) -> SchedulerError | PermissionDenied | None:
    """The meaning of a failed Slurm command, from its words."""
    text = stderr.strip() or f"exit status {returncode}"
    low = text.lower()
    if operation is Operation.CANCEL and any(p in low for p in _HARMLESS_CANCEL):
        return None
    if any(p in low for p in _UNAVAILABLE):
        return SchedulerUnavailable(
            f"Slurm is unreachable or slow: {text}",
            user_message="The scheduler is not answering right now; job states are unknown.",
        )
    if operation is Operation.CRONTAB:
        words = slurm_queries.crontab_refusal(returncode, "", text)
        return SubmitRefused(f"scrontab refused the crontab: {words}", user_message=words)
    if any(p in low for p in _NOT_FOUND):
        return JobNotFound(text)
    if any(p in low for p in _PERMISSION) and operation is not Operation.SUBMIT:
        return PermissionDenied(f"Slurm refused the request: {text}")
    if operation is Operation.SUBMIT:
        m = _SUBMIT_FAILED.search(text)
        words = m.group(1).strip() if m else text
        return SubmitRefused(f"sbatch refused the job: {words}", user_message=words)
    return SchedulerError(f"Slurm command failed: {text}")


class SlurmDialect:
    """SLURM through its own commands (sbatch reads the script on stdin)."""

    name = "slurm"
    needs_script_file = False
    OPTIONS: ClassVar[dict[str, tuple[type, str]]] = {
        "history": (bool, "Read jobs that left the queue from `sacct` (default true); "
                    "false for a cluster without accounting storage."),
    }

    def __init__(self, *, history: bool = True) -> None:
        #: sites without accounting storage have no history; jobs that left the queue
        #: then get ``absent_info``
        self.use_sacct = history
        self.capabilities = Capabilities(arrays=True, history=history, budgets=True,
                                         availability=True, estimates=True, dask="slurm",
                                         crontab=True)
        #: the last large queue answer's rows: a poll round parses only lines that changed
        self._queue_memo = LineMemo()

    def is_job_id(self, job_id: str) -> bool:
        return is_job_id(job_id)

    def submit_command(self, script: str, script_path: str | None = None) -> Command:
        # sbatch hands its umask to the job (SLURM_UMASK): job logs and files stay private
        return Command(("env", "SLURM_UMASK=0077", "sbatch", "--parsable"),
                       stdin=script.encode())

    def parse_submit(self, stdout: str) -> str:
        lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
        job_id = lines[-1].split(";", 1)[0] if lines else ""
        if not job_id.isdigit():
            raise ValueError(f"sbatch printed no job id: {stdout!r}")
        return job_id

    def cancel_command(self, job_ids: Sequence[str]) -> Command:
        _check_ids(job_ids)
        return Command(("scancel", "--", *job_ids))

    def status_command(self, job_ids: Sequence[str]) -> Command:
        ids = _check_ids(job_ids)
        return Command(("squeue", "--noheader", "--all", "--array", "--states=all",
                        f"--jobs={ids}", f"--format={SQUEUE_FORMAT}"))

    def parse_status(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        return match_ids(parse_squeue(stdout, self._queue_memo), job_ids)

    def history_command(self, job_ids: Sequence[str]) -> Command | None:
        if not self.use_sacct:
            return None
        ids = _check_ids(job_ids)
        return Command(("sacct", "--noheader", "--parsable2", "--allocations",
                        f"--jobs={ids}", f"--format={SACCT_FIELDS}"))

    def parse_history(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        return match_ids(parse_sacct(stdout), job_ids)

    def accounting_command(self, job_ids: Sequence[str]) -> Command | None:
        if not self.use_sacct:
            return None
        return Command(("sacct", "--noheader", "--parsable2", f"--jobs={_check_ids(job_ids)}",
                        f"--format={slurm_queries.USAGE_FIELDS}"))

    def parse_accounting(self, stdout: str, job_ids: Sequence[str]) -> dict[str, Accounting]:
        return slurm_queries.parse_accounting(stdout, job_ids, map_state)

    def memory_sampling_command(self) -> Command | None:
        return Command(("scontrol", "show", "config"))

    def parse_memory_sampling(self, stdout: str) -> int | None:
        return slurm_queries.parse_memory_sampling(stdout)

    def absent_info(self, job_id: str) -> JobInfo:
        return JobInfo(job_id, JobState.ENDED_UNKNOWN,
                       reason="left the queue; no record of how it ended",
                       extra={"absent": "true"})

    def classify_error(self, operation: Operation, returncode: int, stderr: str
                       ) -> SchedulerError | PermissionDenied | None:
        return classify(operation, returncode, stderr)

    #: squeue filters by exact job name: every name it prints is one the hub asked for
    filters_job_names = True

    def active_jobs_commands(self, names: Sequence[str]) -> list[Command]:
        # the names are the hub's own ([A-Za-z0-9_.-]); squeue prints only jobs named
        # exactly one of them, so no printed name can hold a newline or a "|"
        return [Command(("squeue", "--noheader", "--all", "--array",
                         ("--states=PENDING,RUNNING,SUSPENDED,REQUEUED,REQUEUE_HOLD,"
                          "CONFIGURING,COMPLETING"),
                         f"--name={','.join(chunk)}", "--format=%A|%u|%T|%j"))
                for chunk in name_chunks(names)]

    def parse_active_jobs(self, stdout: str, names: Collection[str]) -> list[JobInfo]:
        jobs = []
        for line in stdout.splitlines():
            fields = line.strip().split("|")
            if len(fields) == 4 and is_job_id(fields[0]) and fields[3] in names:
                jobs.append(JobInfo(job_id=fields[0], state=map_state(fields[2]),
                                    user=fields[1] or None, name=fields[3]))
        return jobs

    def availability_command(self) -> Command | None:
        return Command(("sinfo", "--noheader", "--Node",
                        f"--Format={slurm_queries.AVAILABILITY_FORMAT}"))

    def parse_availability(self, stdout: str) -> list[Availability]:
        return slurm_queries.parse_availability(stdout)

    def estimate_command(self, script: str) -> Command | None:
        # the same submission as submit_command, which sbatch checks and forecasts
        # without queueing anything
        return Command(("sbatch", "--test-only"), stdin=script.encode())

    def parse_estimate(self, stdout: str, stderr: str) -> Estimate | None:
        return slurm_queries.parse_estimate(stdout, stderr)

    def charge_minutes(self, req: ValidatedRequest) -> dict[str, int]:
        # GrpTRESMins counts cpu (and billing, which is cpu unless TRESBillingWeights
        # weigh other TRES) over the walltime the job holds them
        cpu = req.nodes * req.cores * -(-int(req.walltime) // 60)
        return {"cpu": cpu, "billing": cpu}

    def partitions_commands(self) -> list[Command]:
        return [Command(("scontrol", "--oneliner", "show", "partition")),
                Command(("sinfo", "--noheader", f"--format={slurm_queries.SINFO_FORMAT}"))]

    def parse_partitions(self, outputs: Sequence[str]) -> list[PartitionInfo]:
        return slurm_queries.parse_partitions(outputs[0], outputs[1] if len(outputs) > 1 else "")

    def associations_command(self, user: str) -> Command | None:
        return Command(("sacctmgr", "--noheader", "--parsable2", "show", "associations",
                        "where", f"users={user}", f"format={slurm_queries.ASSOC_FIELDS}"))

    def parse_associations(self, stdout: str) -> list[Association]:
        return slurm_queries.parse_associations(stdout)

    def qos_command(self, names: Sequence[str] = ()) -> Command | None:
        where = ("where", "names=" + ",".join(names)) if names else ()
        return Command(("sacctmgr", "--noheader", "--parsable2", "show", "qos", *where,
                        f"format={slurm_queries.QOS_FIELDS}"))

    def parse_qos(self, stdout: str, user: str | None = None) -> list[QosLimits]:
        return slurm_queries.parse_qos(stdout)

    def budget_commands(self, account: str) -> list[Command]:
        return [Command(("sshare", "--noheader", "--parsable2", f"--accounts={account}",
                         f"--format={slurm_queries.SSHARE_FIELDS}"))]

    def parse_budget(self, account: str, outputs: Sequence[str]) -> Budget | None:
        return slurm_queries.parse_budget(account, outputs[0] if outputs else "")

    def directives(self, req: ValidatedRequest) -> list[str]:
        return slurm_queries.directives(req)

    def crontab_read_command(self) -> Command | None:
        return Command(("scrontab", "-l"))

    def parse_crontab(self, returncode: int, stdout: str) -> str:
        return slurm_queries.parse_crontab(returncode, stdout)

    def crontab_write_command(self, text: str) -> Command | None:
        # "-": the crontab on stdin; scrontab installs all of it or nothing
        return Command(("scrontab", "-"), stdin=text.encode())

    def crontab_directives(self, req: ValidatedRequest) -> list[str]:
        return slurm_queries.crontab_directives(req)

    array_task_variables = ("SLURM_ARRAY_TASK_ID",)

    def array_directives(self, array: JobArray, directives: list[str]) -> list[str]:
        # each task writes its own output already: %j is the task's job id
        throttle = f"%{array.limit}" if array.limit else ""
        return [*directives, f"#SBATCH --array=0-{array.tasks - 1}{throttle}"]

    def array_task_id(self, job_id: str, task: int) -> str | None:
        return f"{job_id}_{task}"

    def user_jobs_command(self, user: str) -> Command | None:
        return Command(("squeue", "--noheader", "--array", f"--user={user}",
                        f"--format={USER_JOBS_FORMAT}"))

    def parse_user_jobs(self, stdout: str, user: str) -> list[UserJob]:
        return parse_user_jobs(stdout, user)


#: raw id, shown id, state, reason, user, cpus, min memory, job name (last: free text)
USER_JOBS_FORMAT = "%A|%i|%T|%r|%u|%C|%m|%j"


def parse_user_jobs(stdout: str, user: str) -> list[UserJob]:
    """Rows of :data:`USER_JOBS_FORMAT` of ``user``; other owners' rows and odd shapes
    are dropped. The name is printed last and split off once, so it cannot shift the
    other fields; a name forging a whole line can only name a job of ``user`` herself
    (the query runs as her, every row must name her), which costs only her own limits."""
    jobs = []
    for line in stdout.splitlines():
        fields = line.split("|", 7)
        if len(fields) != 8 or not is_job_id(fields[1]) or fields[4] != user:
            continue
        _raw, shown, state, reason, owner, cpus, mem, name = fields
        jobs.append(UserJob(shown, map_state(state), None if is_none(reason) else reason,
                            owner, parse_int(cpus) or 0, parse_memory_mb(mem) or 0, name))
    return jobs

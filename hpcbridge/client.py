"""A scheduler client: one dialect plus one transport.

This is the one place where failures become hpcbridge errors for callers:

* a dialect's reading of a failed command (``classify_error``) is raised here;
* a transport's :class:`~hpcbridge.errors.Unreachable` (host down, timeout) becomes
  :class:`~hpcbridge.errors.SchedulerUnavailable`, because to a caller both mean
  "the scheduler cannot be asked now: states are unknown";
* :class:`~hpcbridge.errors.HostKeyError` and :class:`~hpcbridge.errors.PermissionDenied`
  pass through unchanged: someone must fix configuration.

Status never turns an outage into "gone": a job is reported terminal only when the
scheduler answered and says so (or answered and no longer knows the job at all).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from hpcbridge.errors import (
    HpcBridgeError,
    JobNotFound,
    PermissionDenied,
    SchedulerError,
    SchedulerUnavailable,
    SubmitRefused,
    TransportError,
    Unreachable,
)
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.schedulers.base import (
    Accounting,
    Association,
    Availability,
    Budget,
    Command,
    Estimate,
    Operation,
    PartitionInfo,
    QosLimits,
    SchedulerDialect,
    UserJob,
)
from hpcbridge.transport.base import Result, Transport

log = logging.getLogger(__name__)


class SchedulerClient:
    """Submit, cancel and query jobs of one cluster; read its partitions and limits."""

    def __init__(self, dialect: SchedulerDialect, transport: Transport, *,
                 timeout: float | None = None) -> None:
        self.dialect = dialect
        self.transport = transport
        self.timeout = timeout

    @classmethod
    def on_this_machine(cls, dialect: SchedulerDialect) -> SchedulerClient:
        """A client running the scheduler's commands here, as the calling user."""
        from hpcbridge.transport.local import LocalTransport

        return cls(dialect, LocalTransport())

    async def _exec(self, argv: list[str], user: str | None, *, stdin: bytes | None = None,
                    timeout: float | None = None) -> Result:
        """A plain command on the login node (files, name lookups), outages mapped."""
        try:
            return await self.transport.run(argv, user=user, stdin=stdin,
                                            timeout=timeout or self.timeout)
        except Unreachable as exc:
            raise SchedulerUnavailable(
                str(exc), user_message="The login node is not answering right now.") from exc

    async def run_tool(self, user: str, argv: list[str], *, stdin: bytes,
                       timeout: float) -> Result:
        """One of hpcbridge's own commands (``python -m hpcbridge.…``) on the login node
        as ``user``, its request on stdin (never in the argv); the result as it is.
        SchedulerUnavailable when nobody answers."""
        return await self._exec(argv, user, stdin=stdin, timeout=timeout)

    async def make_private_folders(self, user: str, folders: Sequence[str]) -> None:
        """Make ``folders`` (0700 each, parents as needed) as ``user``, in one command."""
        made = await self._exec(["mkdir", "-p", "-m", "0700", "--", *folders], user)
        if made.returncode != 0:
            raise TransportError(f"cannot create {', '.join(folders)} as {user}: "
                                 f"{made.stderr.strip()}")

    async def stage_private_file(self, user: str, folder: str, content: bytes,
                                 prefix: str = "env.", also: Sequence[str] = ()) -> str:
        """Create ``folder/PREFIXXXXXXXXXXX`` (0600; the folder 0700, made if missing, and
        the folders ``also`` in the same command) as ``user`` holding ``content``, which
        travels on stdin, never in an argv; its path.

        TransportError with the command's words when the user's side refuses (a full
        home, a quota, a missing home); SchedulerUnavailable when nobody answers.
        """
        await self.make_private_folders(user, [folder, *also])
        tmp = await self._exec(["mktemp", "-p", folder, f"{prefix}XXXXXXXXXX"], user)
        path = tmp.stdout.strip()
        if tmp.returncode != 0 or not path.startswith(folder + "/"):
            raise TransportError(f"cannot create a private file in {folder}: "
                                 f"{tmp.stderr.strip()}")
        wrote = await self._exec(["dd", f"of={path}", "status=none"], user, stdin=content)
        if wrote.returncode != 0:
            await self.remove_file(user, path)
            raise TransportError(f"cannot write {path} as {user}: {wrote.stderr.strip()}")
        return path

    async def remove_file(self, user: str, path: str) -> None:
        """Remove ``path`` as ``user``; a file already gone is not an error."""
        await self._exec(["rm", "-f", "--", path], user)

    async def resolve_host(self, node: str, *, as_user: str | None) -> str:
        """A compute node's address as the login node resolves it (``getent hosts``)."""
        result = await self._exec(["getent", "hosts", node], as_user, timeout=15)
        words = result.stdout.split()
        if result.returncode != 0 or not words:
            raise HpcBridgeError(f"the login node cannot resolve compute node {node!r}")
        return words[0]

    async def passwd_lines(self, users: Sequence[str], *, as_user: str | None) -> str:
        """``getent passwd USER...`` on the login node (asked as ``as_user``): the lines
        of the entries found. SchedulerUnavailable when nobody answers."""
        result = await self._exec(["getent", "passwd", "--", *users], as_user, timeout=30)
        if result.returncode not in (0, 2):  # 2: some name has no entry
            raise SchedulerUnavailable(f"getent passwd failed: {result.stderr.strip()[:200]}")
        return result.stdout

    async def _run(self, command: Command, user: str | None, operation: Operation,
                   *, tolerate: type[SchedulerError] | None = None) -> Result:
        try:
            result = await self.transport.run(command.argv, user=user, stdin=command.stdin,
                                              timeout=self.timeout)
        except Unreachable as exc:
            raise SchedulerUnavailable(
                str(exc),
                user_message="The scheduler is not answering right now; job states are unknown.",
            ) from exc
        if result.returncode == 0:
            return result
        error = self.dialect.classify_error(operation, result.returncode, result.stderr)
        if error is None or (tolerate is not None and isinstance(error, tolerate)):
            return result
        raise error

    async def submit(self, user: str, script: str, log_folder: str | None = None) -> str:
        """Submit ``script`` as ``user``; the new job id. Raises SubmitRefused with the
        scheduler's own words when limits, account or partition forbid it.

        ``log_folder``: made first (0700) when given; the scheduler writes the job's log
        there and does not make a missing folder (a Slurm job then fails at once)."""
        if log_folder is not None:
            await self.make_private_folders(user, [log_folder])
        path = None
        if self.dialect.needs_script_file:
            try:
                path = await self.transport.write_private_file(user, script.encode())
            except Unreachable as exc:
                raise SchedulerUnavailable(str(exc)) from exc
        try:
            command = self.dialect.submit_command(script, path)
            result = await self._run(command, user, Operation.SUBMIT)
            try:
                return self.dialect.parse_submit(result.stdout)
            except ValueError as exc:
                raise SubmitRefused(str(exc)) from exc
        finally:
            if path is not None:
                await self.remove_file(user, path)

    async def cancel(self, user: str, job_ids: Sequence[str]) -> None:
        """Cancel jobs as ``user``; cancelling a job that already ended is not an error."""
        ids = list(dict.fromkeys(job_ids))
        bad = [j for j in ids if not self.dialect.is_job_id(j)]
        if bad:
            raise JobNotFound(f"not {self.dialect.name} job ids: {', '.join(map(repr, bad))}")
        if ids:
            await self._run(self.dialect.cancel_command(ids), user, Operation.CANCEL)

    async def status(self, job_ids: Sequence[str], *, as_user: str | None = None
                     ) -> dict[str, JobInfo]:
        """One query for every id (plus one history query for ids that just left the
        queue). Raises SchedulerUnavailable when the scheduler cannot be asked.

        Past :data:`MAX_IDS_CHARS` characters of ids, one query per that many: one word
        of a command line holds at most 128 KiB on Linux (about 14,000 eight-digit ids
        in Slurm's ``--jobs=``), locally and in the login node's shell alike."""
        ids = list(dict.fromkeys(job_ids))
        valid = self.dialect.is_job_id
        infos = {j: self.dialect.absent_info(j) for j in ids if not valid(j)}
        asked = [j for j in ids if j not in infos]
        for chunk in id_chunks(asked):
            result = await self._run(self.dialect.status_command(chunk), as_user,
                                     Operation.STATUS, tolerate=JobNotFound)
            infos.update(await _parsed(self.dialect.parse_status, result.stdout, chunk))
        missing = [j for j in asked if j not in infos]
        for chunk in id_chunks(missing):
            infos.update(await self._history(chunk, as_user))
        return {j: infos[j] for j in ids}

    async def _history(self, job_ids: list[str], user: str | None) -> dict[str, JobInfo]:
        command = self.dialect.history_command(job_ids)
        found: dict[str, JobInfo] = {}
        if command is not None:
            try:
                result = await self._run(command, user, Operation.HISTORY, tolerate=JobNotFound)
                found = await _parsed(self.dialect.parse_history, result.stdout, job_ids)
            except SchedulerUnavailable as exc:
                # the queue answered but its history cannot be read: how these ended is unknown
                log.warning("job history unavailable: %s", exc)
                return {j: JobInfo(j, JobState.UNKNOWN, reason="left the queue; history "
                                   "unavailable") for j in job_ids}
            except SchedulerError as exc:
                log.warning("job history failed: %s", exc)
        for job_id in job_ids:
            found.setdefault(job_id, self.dialect.absent_info(job_id))
        return found

    async def accounting(self, job_ids: Sequence[str], *, as_user: str | None = None
                         ) -> dict[str, Accounting] | None:
        """What ended jobs consumed; None where the scheduler keeps no such record. An
        id the scheduler does not (yet) know is left out. SchedulerUnavailable when it
        cannot be asked."""
        # an adapter written before accounting existed has none: no record's end then
        build = getattr(self.dialect, "accounting_command", None)
        command = build(list(job_ids)) if build is not None else None
        if command is None:
            return None
        result = await self._run(command, as_user, Operation.HISTORY, tolerate=JobNotFound)
        return self.dialect.parse_accounting(result.stdout, list(job_ids))

    async def memory_sampling(self, *, as_user: str | None = None) -> int | None:
        """Seconds between the scheduler's samples of a job's memory (0: it takes
        none); None where the adapter cannot say. SchedulerUnavailable when it cannot
        be asked."""
        build = getattr(self.dialect, "memory_sampling_command", None)
        command = build() if build is not None else None
        if command is None:
            return None
        result = await self._run(command, as_user, Operation.QUERY)
        return self.dialect.parse_memory_sampling(result.stdout)  # type: ignore[attr-defined]

    async def read_private_file(self, user: str, path: str, max_bytes: int) -> str | None:
        """The first ``max_bytes`` of ``path`` read as ``user``; None when it is missing
        or unreadable. SchedulerUnavailable when nobody answers."""
        result = await self._exec(["head", "-c", str(max_bytes), "--", path], user)
        return result.stdout if result.returncode == 0 else None

    async def read_small_files(self, user: str, folder: str, suffix: str, *,
                               max_bytes: int, max_files: int = 200) -> dict[str, str]:
        """The text of the files ``folder/*SUFFIX`` under ``max_bytes`` each (the newest
        ``max_files`` by name), read as ``user`` in two commands: name -> text.

        ``awk`` prints a line ``F<path>`` before each file and every line of it as
        ``L<line>``, so a file's text cannot add, end or rename an entry."""
        listed = await self._exec(["find", folder, "-maxdepth", "1", "-type", "f", "-name",
                                   f"*{suffix}", "-size", f"-{max_bytes // 1024 + 1}k",
                                   "-printf", "%f\\n"], user)
        names = sorted((n for n in listed.stdout.split("\n")
                        if n.endswith(suffix) and "/" not in n and not n.startswith(".")),
                       reverse=True)[:max_files]
        if not names:
            return {}
        read = await self._exec(["awk", 'FNR==1{print "F" FILENAME} {print "L" $0}',
                                 *(f"{folder}/{n}" for n in names)], user)
        found: dict[str, list[str]] = {}
        lines: list[str] | None = None
        for line in read.stdout.split("\n"):
            if line.startswith("F"):
                name = line[1:].rsplit("/", 1)[-1]
                lines = found.setdefault(name, []) if name in names else None
            elif line.startswith("L") and lines is not None:
                lines.append(line[1:])
        return {name: "\n".join(text) for name, text in found.items()}

    async def replace_private_file(self, user: str, path: str, content: bytes) -> None:
        """Write ``content`` to ``path`` as ``user`` (0600; its folder 0700, made if
        missing), replacing the file at once: a reader never sees half of it."""
        folder = path.rsplit("/", 1)[0]
        tmp = await self.stage_private_file(user, folder, content, prefix=".new.")
        moved = await self._exec(["mv", "-f", "-T", "--", tmp, path], user)
        if moved.returncode != 0:
            await self.remove_file(user, tmp)
            raise TransportError(f"cannot replace {path} as {user}: {moved.stderr.strip()}")

    async def active_jobs(self, names: Sequence[str], *, as_user: str | None = None
                          ) -> list[JobInfo]:
        """Queued and running jobs of every user (as the scheduler shows them to as_user)
        named exactly one of ``names`` (the hub's own job names).

        Where the scheduler cannot filter by name, each job the full listing proposes is
        confirmed by a status query of that job alone, so another job's name (free text,
        newlines included) cannot make up a record.
        """
        wanted = sorted(set(names))
        if not wanted:
            return []
        jobs: list[JobInfo] = []
        for command in self.dialect.active_jobs_commands(wanted):
            result = await self._run(command, as_user, Operation.QUERY)
            jobs += self.dialect.parse_active_jobs(result.stdout, set(wanted))
        if self.dialect.filters_job_names:
            return jobs
        confirmed = []
        for job in jobs:
            info = (await self.status([job.job_id], as_user=as_user))[job.job_id]
            if info.state.is_active and (info.user, info.name) == (job.user, job.name):
                confirmed.append(info)
        return confirmed

    async def query(self, command: Command, *, as_user: str | None = None) -> str:
        """Run a read-only query built outside the dialect (e.g. a Slurm-only report);
        errors are mapped here like every other command's."""
        return (await self._run(command, as_user, Operation.QUERY)).stdout

    async def _query_all(self, commands: Sequence[Command], user: str | None) -> list[str]:
        return [(await self._run(c, user, Operation.QUERY)).stdout for c in commands]

    async def partitions(self, *, as_user: str | None = None) -> list[PartitionInfo]:
        outputs = await self._query_all(self.dialect.partitions_commands(), as_user)
        return self.dialect.parse_partitions(outputs)

    async def availability(self, *, as_user: str | None = None) -> list[Availability]:
        command = self.dialect.availability_command()
        if command is None:
            return []
        result = await self._run(command, as_user, Operation.QUERY)
        return self.dialect.parse_availability(result.stdout)

    async def estimate(self, user: str, script: str) -> Estimate | None:
        """When ``script`` would start if ``user`` submitted it now (nothing is queued);
        None where the scheduler cannot say. SubmitRefused with the scheduler's words
        when it would refuse the job."""
        command = self.dialect.estimate_command(script)
        if command is None:
            return None
        result = await self._run(command, user, Operation.SUBMIT)
        return self.dialect.parse_estimate(result.stdout, result.stderr)

    async def associations(self, user: str) -> list[Association]:
        """The accounts (and limits) ``user`` may charge; [] where the scheduler has none."""
        command = self.dialect.associations_command(user)
        if command is None:
            return []
        return self.dialect.parse_associations((await self._run(command, user,
                                                                 Operation.QUERY)).stdout)

    async def qos(self, names: Sequence[str] = (), *, as_user: str | None = None
                  ) -> list[QosLimits]:
        """QOS limits (Slurm), or each queue's per-user limits for ``as_user`` (PBS)."""
        command = self.dialect.qos_command(names)
        if command is None:
            return []
        return self.dialect.parse_qos((await self._run(command, as_user,
                                                        Operation.QUERY)).stdout, as_user)

    async def user_jobs(self, user: str) -> list[UserJob] | None:
        """``user``'s queued and running jobs, asked as her; None where the scheduler
        cannot list them (``dialect.capabilities.unknown`` says why)."""
        command = self.dialect.user_jobs_command(user)
        if command is None:
            return None
        result = await self._run(command, user, Operation.QUERY, tolerate=JobNotFound)
        return self.dialect.parse_user_jobs(result.stdout, user)

    async def read_crontab(self, user: str) -> str:
        """``user``'s crontab of the scheduler, read as her ("" when she has none)."""
        command = self.dialect.crontab_read_command()
        if command is None:
            raise SchedulerError(f"{self.dialect.name} keeps no crontab")
        result = await self._crontab(command, user)
        try:
            return self.dialect.parse_crontab(result.returncode, result.stdout)
        except ValueError as exc:  # e.g. scrontab is disabled on this cluster
            raise self.dialect.classify_error(Operation.CRONTAB, result.returncode,
                                              f"{result.stderr}\n{result.stdout}") or \
                SubmitRefused(f"the crontab cannot be read: {exc}") from exc

    async def write_crontab(self, user: str, text: str) -> None:
        """Replace ``user``'s crontab with ``text``, as her. SubmitRefused with the
        scheduler's words when it installs none of it (a line it refuses, a limit)."""
        command = self.dialect.crontab_write_command(text)
        if command is None:
            raise SchedulerError(f"{self.dialect.name} keeps no crontab")
        result = await self._crontab(command, user)
        if result.returncode != 0:
            raise self.dialect.classify_error(Operation.CRONTAB, result.returncode,
                                              f"{result.stderr}\n{result.stdout}") or \
                SubmitRefused(f"the crontab was not installed: {result.stdout.strip()}")

    async def _crontab(self, command: Command, user: str) -> Result:
        """The command's result, failed or not, unless the scheduler is not answering."""
        try:
            result = await self.transport.run(command.argv, user=user, stdin=command.stdin,
                                              timeout=self.timeout)
        except Unreachable as exc:
            raise SchedulerUnavailable(str(exc)) from exc
        except TransportError as exc:
            if isinstance(exc, PermissionDenied) or "command not found" not in str(exc):
                raise
            # a site's packages may leave it out (Debian's Slurm 22.05 client has none)
            raise SubmitRefused(f"this machine has no {command.argv[0]} command, which "
                                f"recurring jobs need; ask the site to install it") from exc
        if result.returncode != 0:
            error = self.dialect.classify_error(Operation.STATUS, result.returncode,
                                                result.stderr)
            if isinstance(error, SchedulerUnavailable | PermissionDenied):
                raise error
        return result

    async def budget(self, account: str, *, as_user: str | None = None) -> Budget | None:
        """The account's TRES-minute allocation and usage; None where none is kept."""
        commands = self.dialect.budget_commands(account)
        if not commands:
            return None
        return self.dialect.parse_budget(account, await self._query_all(commands, as_user))


#: answers longer than this are parsed in a worker thread (thousands of jobs: a hundred
#: milliseconds and more), so the hub's event loop keeps serving meanwhile
PARSE_IN_THREAD = 64 * 1024


async def _parsed(parse: Callable[[str, Sequence[str]], dict[str, JobInfo]], stdout: str,
                  job_ids: Sequence[str]) -> dict[str, JobInfo]:
    if len(stdout) < PARSE_IN_THREAD:
        return parse(stdout, job_ids)
    return await asyncio.to_thread(parse, stdout, list(job_ids))


#: characters of job ids (with their separators) in one status or history query
MAX_IDS_CHARS = 100_000


def id_chunks(job_ids: list[str], max_chars: int = MAX_IDS_CHARS) -> list[list[str]]:
    """``job_ids`` in order, cut where the next id would pass ``max_chars``."""
    if sum(map(len, job_ids)) + len(job_ids) <= max_chars:  # all in one: the common case
        return [list(job_ids)] if job_ids else []
    chunks: list[list[str]] = []
    size = max_chars + 1
    for job_id in job_ids:
        if size + len(job_id) + 1 > max_chars:
            chunks.append([])
            size = 0
        chunks[-1].append(job_id)
        size += len(job_id) + 1
    return chunks

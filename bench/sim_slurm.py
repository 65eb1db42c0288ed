"""A simulated Slurm for ``bench.track_sim``: ``squeue`` and ``sacct`` answers in the
formats the Slurm adapter asks for (as the recorded fixtures of both generations show,
tests/fixtures/slurm/recorded), for thousands of generated jobs, behind the Transport
interface. Bench-only; no cluster needed."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hpcbridge.transport.base import Result

USERS = tuple(f"user{i:03d}" for i in range(200))
NODES = tuple(f"nid{i:05d}" for i in range(1, 2001))
#: the first job id: a center's ids have seven or eight digits
FIRST_ID = 41_000_000
#: simulated seconds between two rounds (the poller's default interval)
INTERVAL = 30
#: every job's time limit
LIMIT = 2 * 3600
#: the simulated cluster's clock at the first round
EPOCH = datetime(2026, 11, 30, 8, 0, 0)


@dataclass
class Job:
    job_id: str
    user: str
    state: str = "PENDING"
    reason: str = "Priority"
    node: str = ""
    start: str = "N/A"
    started: float = 0.0
    end: str = ""
    exit_code: str = "0:0"


def _slurm_duration(seconds: float) -> str:
    """squeue's %L: ``[D-]H:MM:SS``, or ``M:SS`` under an hour."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class SimulatedSlurm:
    """A Transport answering ``squeue``/``sacct`` as Slurm would for ``jobs``."""

    def __init__(self, n: int, rng: random.Random) -> None:
        self.rng = rng
        self.jobs = {str(FIRST_ID + i): Job(str(FIRST_ID + i), rng.choice(USERS))
                     for i in range(n)}
        self.queries: list[str] = []
        self.now = 0.0  # seconds since EPOCH
        self.render()

    def advance(self, share: float) -> int:
        """One poll interval passes and a ``share`` of the jobs change: queued ones start,
        running ones end (leave the queue; ``sacct`` has them). Returns how many changed."""
        changed = 0
        self.now += INTERVAL
        stamp = (EPOCH + timedelta(seconds=self.now)).strftime("%Y-%m-%dT%H:%M:%S")
        for job in self.rng.sample(list(self.jobs.values()), int(len(self.jobs) * share)):
            if job.state == "PENDING":
                job.state, job.reason = "RUNNING", "None"
                job.node, job.start, job.started = self.rng.choice(NODES), stamp, self.now
            elif job.state == "RUNNING":
                job.state, job.end = self.rng.choice(("COMPLETED", "FAILED", "TIMEOUT")), stamp
                job.exit_code = "0:0" if job.state == "COMPLETED" else "1:0"
            changed += 1
        self.render()
        return changed

    def render(self) -> None:
        # squeue's --format of the Slurm adapter: %i|%A|%F|%K|%T|%r|%u|%a|%P|%N|%S|%L;
        # %L is the time limit of a queued job, the time left of a running one
        self._queue = "".join(
            f"{j.job_id}|{j.job_id}|{j.job_id}|N/A|{j.state}|{j.reason}|{j.user}|proj|"
            f"regular|{j.node}|{j.start}|{_slurm_duration(self._left(j))}\n"
            for j in self.jobs.values() if j.state in ("PENDING", "RUNNING"))
        # sacct's fields: JobID,JobIDRaw,State,ExitCode,User,Account,Partition,NodeList,
        # Start,End
        self._history = {
            j.job_id: f"{j.job_id}|{j.job_id}|{j.state}|{j.exit_code}|{j.user}|proj|regular|"
                      f"{j.node}|{j.start}|{j.end}\n"
            for j in self.jobs.values() if j.end}

    def _left(self, job: Job) -> float:
        return LIMIT - (self.now - job.started) if job.state == "RUNNING" else LIMIT

    async def run(self, argv: Sequence[str], *, user: str | None = None,
                  stdin: bytes | None = None, timeout: float | None = None) -> Result:
        self.queries.append(argv[0])
        if argv[0] == "squeue":
            return Result(0, self._queue, "")
        if argv[0] == "sacct":
            ids = next(a for a in argv if a.startswith("--jobs=")).split("=", 1)[1]
            return Result(0, "".join(self._history.get(j, "") for j in ids.split(",")), "")
        return Result(1, "", f"{argv[0]}: not simulated")

    async def write_private_file(self, user: str | None, content: bytes) -> str:
        raise NotImplementedError

    async def remove_file(self, user: str | None, path: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass

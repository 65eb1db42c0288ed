"""The invariants of the shared design, as the chaos suite checks them (pure: a model of
what the test did, and a snapshot of what it sees; no I/O).

Two kinds of checks:

- **eventual** ones must hold at some moment within ``settle`` seconds after a step (a
  job being submitted is not yet saved, a cancelled job is still completing, an outage's
  backlog is still draining); the checker re-reads until they hold or time is up;
- **permanent** ones are about things that happened (a job ended CANCELLED, a request was
  answered): once seen, no waiting can undo them.

docs/architecture.md ("Invariants under faults") explains each check and its timing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hpcbridge.schedulers.slurm import STATES
from tests.chaos.observe import Ended, Snapshot

Slot = tuple[str, str]  # (user, server name); "" is the default server

#: clock slack between the host (times the test records) and the cluster (submit times)
SLACK = 2.0


@dataclass(frozen=True)
class Violation:
    invariant: str  # "orphan-job", "env-file", "dropped-server", "victim-cancelled",
    # "refused", "end-reason", "unopenable", "end-untold"
    message: str
    permanent: bool = False

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.message}"


@dataclass(frozen=True)
class TestJob:
    """A job the test itself submitted (victims, forged names, impostors)."""

    __test__ = False  # not a pytest class

    user: str
    kind: str  # "victim" | "forged" | "impostor"
    name: str
    #: the hub may cancel it (an impostor named with the hub's own reserved prefix)
    sweepable: bool = False


@dataclass
class Model:
    """What the test did, with host times (``time.time()``)."""

    prefix: str
    #: job name -> slot, for every server slot the run uses
    slot_names: dict[str, Slot]
    #: when the run began; jobs submitted before are not the run's
    started: float = 0.0
    #: env files that existed before the run (other hubs' servers')
    foreign_env_files: set[str] = field(default_factory=set)
    refused_slots: set[Slot] = field(default_factory=set)
    spawns: dict[Slot, list[float]] = field(default_factory=dict)
    #: slots whose latest spawn asked for a walltime that ends within the run
    short_walltime: set[Slot] = field(default_factory=set)
    stops: dict[Slot, list[float]] = field(default_factory=dict)
    hub_kills: list[float] = field(default_factory=list)
    test_jobs: dict[str, TestJob] = field(default_factory=dict)
    test_cancelled: set[str] = field(default_factory=set)
    #: hub job id -> first time a snapshot showed it
    first_seen: dict[str, float] = field(default_factory=dict)
    #: job id -> name, for hub jobs seen or looked up
    names: dict[str, str] = field(default_factory=dict)
    #: problems found while a step ran (an answer, a server dropped mid-outage)
    events: list[Violation] = field(default_factory=list)

    def slot_of(self, name: str) -> Slot | None:
        return self.slot_names.get(name)

    def hub_job(self, job_id: str, name: str) -> bool:
        return name.startswith(self.prefix) and job_id not in self.test_jobs

    def origin(self, slot: Slot, submitted: float) -> float:
        """When the start that produced a job submitted at ``submitted`` began: the last
        spawn request of its slot before then (a re-attach after a hub restart counts as
        a hub kill, see ``excused``)."""
        before = [t for t in self.spawns.get(slot, []) if t <= submitted + SLACK]
        return max(before, default=0.0)

    def stopped_since(self, slot: Slot, since: float) -> bool:
        return any(t >= since - SLACK for t in self.stops.get(slot, []))

    def excused(self, slot: Slot, since: float) -> bool:
        """May the job of ``slot`` started at ``since`` end cancelled? Only when the test
        stopped that server or killed the hub (which forgets spawns under way) since."""
        return self.stopped_since(slot, since) or any(t >= since - SLACK for t in self.hub_kills)


def orphan_jobs(model: Model, snap: Snapshot) -> list[Violation]:
    """Invariant 1: every waiting or running job of the hub is referred to by a server
    (running, starting, or stopped with its job kept for re-attach)."""
    if snap.jobs is None or snap.servers is None:
        return []
    referenced = {s.job_id for s in snap.servers.values() if s.job_id}
    return [Violation("orphan-job", f"job {j.job_id} ({j.name}, {j.state}) of {j.user}: no "
                      "server of the hub refers to it")
            for j in snap.jobs.values()
            if model.hub_job(j.job_id, j.name) and j.job_id not in referenced]


def stray_env_files(model: Model, snap: Snapshot) -> list[Violation]:
    """Invariant 2: an env file exists only for a server whose job waits to read it."""
    if snap.jobs is None or snap.servers is None:
        return []
    waiting = {}
    for server in snap.servers.values():
        job = snap.jobs.get(server.job_id or "")
        if job is not None and server.state.get("env_file") and \
                server.state.get("reported_port") is None:
            waiting[server.state["env_file"]] = job
    found = []
    for user, paths in sorted(snap.env_files.items()):
        for path in sorted(paths):
            job = waiting.get(path)
            if path in model.foreign_env_files:
                continue
            if job is None or job.state not in ("PENDING", "CONFIGURING", "RUNNING"):
                found.append(Violation("env-file", f"{path} of {user}: no server's waiting "
                                       "job will read it"))
    return found


def dropped_servers(model: Model, snap: Snapshot) -> list[Violation]:
    """Invariant 3 (state): a running job of the hub belongs to a server that is ready or
    starting, unless the test stopped that server (then invariant 1 wants the job gone)."""
    if snap.jobs is None or snap.servers is None:
        return []
    serving = {s.job_id for s in snap.servers.values() if s.active and s.job_id}
    found = []
    for job in snap.jobs.values():
        slot = model.slot_of(job.name)
        if job.state != "RUNNING" or slot is None or not model.hub_job(job.job_id, job.name):
            continue
        since = model.origin(slot, model.first_seen.get(job.job_id, snap.taken))
        if job.job_id not in serving and not model.stopped_since(slot, since):
            found.append(Violation("dropped-server", f"server {_slot(slot)} is neither ready "
                                   f"nor starting while its job {job.job_id} runs"))
    return found


def hub_cancelled(model: Model, snap: Snapshot) -> list[Violation]:
    """Invariant 3 (history): the hub cancels a server's job only when the server was
    stopped (or the hub was killed while starting it). An outage is not an end."""
    found = []
    for job_id, ended in sorted(snap.ended.items()):
        name = model.names.get(job_id, "")
        slot = model.slot_of(name)
        if slot is None or not model.hub_job(job_id, name) \
                or not ended.state.startswith("CANCELLED") \
                or ended.submit < model.started - SLACK:
            continue
        if not model.excused(slot, model.origin(slot, ended.submit)):
            found.append(Violation("dropped-server", f"job {job_id} of server {_slot(slot)} "
                                   f"ended {ended.state} but the test never stopped that "
                                   "server", permanent=True))
    return found


def victims_cancelled(model: Model, snap: Snapshot) -> list[Violation]:
    """Invariant 4: the hub never cancels a job it does not own (the test's own jobs,
    whatever their names claim), except an impostor under the hub's reserved prefix."""
    found = []
    for job_id, job in sorted(model.test_jobs.items()):
        ended = snap.ended.get(job_id)
        if ended is None or job.sweepable or job_id in model.test_cancelled:
            continue
        if ended.state.startswith("CANCELLED"):
            found.append(Violation("victim-cancelled", f"{job.kind} job {job_id} of "
                                   f"{job.user} ({job.name!r}) ended {ended.state}; the test "
                                   "did not cancel it", permanent=True))
    return found


def refused_left_over(model: Model, snap: Snapshot) -> list[Violation]:
    """Invariant 6: a slot that only ever got refused requests has no job and no stored
    options; a named one has no database row."""
    found = []
    for slot in sorted(model.refused_slots):
        jobs = [] if snap.jobs is None else [
            j.job_id for j in snap.jobs.values() if model.slot_of(j.name) == slot]
        jobs += [j for j, e in snap.ended.items() if e.submit >= model.started - SLACK
                 and model.slot_of(model.names.get(j, "")) == slot]
        if jobs:
            found.append(Violation("refused", f"refused server {_slot(slot)} has jobs "
                                   f"{sorted(jobs)}", permanent=True))
        server = (snap.servers or {}).get(slot)
        if server is not None and server.user_options:
            found.append(Violation("refused", f"refused server {_slot(slot)} keeps the "
                                   f"refused options {sorted(server.user_options)}"))
        if server is not None and slot[1]:
            found.append(Violation("refused", f"refused named server {_slot(slot)} left a "
                                   "row in the hub database"))
    return found


def own_ends(model: Model, snap: Snapshot) -> dict[Slot, tuple[Ended, str]]:
    """Servers at rest whose last job ended on its own (not cancelled, not stopped by
    the test): slot -> (the job's accounting, how the hub must describe that end)."""
    if snap.jobs is None or snap.servers is None:
        return {}
    busy = {model.slot_of(j.name) for j in snap.jobs.values() if model.hub_job(j.job_id, j.name)}
    last: dict[Slot, Ended] = {}
    for job_id, ended in snap.ended.items():
        name = model.names.get(job_id, "")
        slot = model.slot_of(name)
        if slot is None or not model.hub_job(job_id, name) \
                or ended.submit < model.started - SLACK:
            continue
        if slot not in last or (ended.submit, int(job_id)) > (last[slot].submit,
                                                             int(last[slot].job_id)):
            last[slot] = ended
    ends = {}
    for slot, ended in last.items():
        server = snap.servers.get(slot)
        state = STATES.get(ended.state.split()[0]) if ended.state else None
        if slot in busy or server is None or server.active or server.job_id \
                or state is None or ended.state.startswith("CANCELLED") \
                or model.stopped_since(slot, model.origin(slot, ended.submit)):
            continue
        ends[slot] = (ended, state.description)
    return ends


def end_reasons(model: Model, snap: Snapshot) -> list[Violation]:
    """Issue 12, item 9: a server whose job ended on its own keeps the scheduler's reason
    (``last_end`` in its state, shown on the spawn page), never "completed" for another
    end; "ended, reason unknown" only when accounting has no record (never here: the
    suite reads the end from accounting)."""
    found = []
    for slot, (ended, expected) in sorted(own_ends(model, snap).items()):
        told = str(snap.servers[slot].state.get("last_end") or "")  # type: ignore[index]
        if not told.startswith(expected):
            found.append(Violation("end-reason", f"job {ended.job_id} of server "
                                   f"{_slot(slot)} ended {ended.state}; the hub says "
                                   f"{told or 'nothing'!r}, not {expected!r}"))
    return found


def check(model: Model, snap: Snapshot) -> list[Violation]:
    return [*model.events, *orphan_jobs(model, snap), *stray_env_files(model, snap),
            *dropped_servers(model, snap), *hub_cancelled(model, snap),
            *victims_cancelled(model, snap), *refused_left_over(model, snap),
            *end_reasons(model, snap)]


def _slot(slot: Slot) -> str:
    return f"{slot[0]}/{slot[1]}" if slot[1] else slot[0]

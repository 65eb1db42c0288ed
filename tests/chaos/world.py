"""The live world of a chaos run: the testbed, one JupyterHub with its own job tag, and
the model of what the test did. Each action is one step; :meth:`World.check` reads the
world and evaluates the invariants (tests/chaos/invariants.py).

Requests to the hub that start or stop servers are sent in the background, so that the
next steps race them (a stop while the submit command still runs, a hub kill while a
spawn waits in the queue); faults are bounded (5–20 s outages) and always restore the
cluster before the step returns.
"""

from __future__ import annotations

import html
import json
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from hpcbridge.spawner import jobenv
from slurm_testbed import faults
from slurm_testbed.hub import up_hub
from tests.chaos import invariants
from tests.chaos.invariants import Model, Slot, TestJob, Violation
from tests.chaos.observe import Observer, Snapshot, UserSession, open_in_chromium

TAG = "chaos"
USERS = ("alice", "bob")  # hub users, and owners of the victims' jobs
ATTACKER = "carol"
SERVERS = ("", "x")
#: slots that only ever get refused requests (invariant 6)
REFUSED_SLOTS = (("alice", "r"), ("bob", "r"), (ATTACKER, ""))
SPAWN_OPTIONS = {
    "debug": {"preset": "debug"},
    # ends at its walltime within the run (plus Slurm's OverTimeLimit)
    "walltime": {"partition": "debug", "walltime": "00:01:00"},
}
REFUSED_OPTIONS = {
    "cores": {"preset": "debug", "cores": 64},
    "walltime": {"partition": "debug", "walltime": "05:00:00"},
    "gpus": {"partition": "gpu", "gpus": 3},
    "memory-grammar": {"memory": "4G$(id)"},
    "newline": {"partition": "debug\n#SBATCH --uid=0"},
    "unknown-key": {"cmd": "id"},
}
#: Seconds an eventual invariant may take to hold again after a step. The slowest honest
#: path: a stop during an outage is retried by the hub every 30 s (Site.cancel_later);
#: the hub's poller backs off during an outage (3 s doubling: after a 20 s outage its
#: next round is at most 24 s away); JupyterHub polls each server every 10 s; after a
#: restart the re-attach service starts, re-attaches and sweeps (10–20 s on two busy
#: cores). 30 + 24 + 10 + 20 = 84 s, and margin for a loaded machine.
SETTLE = 120.0
#: steps between two openings of a server in Chromium (one costs 5-20 s)
BROWSER_EVERY = 20


class InvariantBroken(BaseException):
    """Raised out of a run (a BaseException: hypothesis must not catch, replay and shrink
    it against a live cluster)."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(map(str, violations)))
        self.violations = violations


class World:
    def __init__(self, tb, hub_dir: Path, *, port_offset: int = 0, settle: float = SETTLE,
                 log=print, browser_every: int = 0) -> None:
        from hpcbridge.hubrun import Hub

        self.tb = tb
        self.settle = settle
        self.log = log
        self.hub = Hub(hub_dir, public_port=8400 + port_offset, hub_port=8481 + port_offset,
                       job_tag=TAG)
        prefix = jobenv.job_prefix(TAG)
        slots = [(u, s) for u in USERS for s in SERVERS] + list(REFUSED_SLOTS)
        self.model = Model(prefix, {jobenv.job_name(u, s, TAG): (u, s) for u, s in slots},
                           refused_slots=set(REFUSED_SLOTS))
        self.steps: list[dict] = []
        self.answers: list[tuple[int, str, str, str]] = []  # (step, method, path, answer)
        self.pool = ThreadPoolExecutor(8, thread_name_prefix="chaos-request")
        self.victims: dict[str, str] = {}
        self.observer: Observer | None = None
        self.token = ""
        #: each hub user's own logged-in session (invariant 7, end reasons she sees)
        self.sessions: dict[str, UserSession] = {}
        #: (slot, job id) of servers opened as their user since the hub last started
        self.opened: set[tuple[Slot, str]] = set()
        #: job ids whose end the user's spawn page told
        self.told: set[str] = set()
        #: what the checks as a user did: opened servers, end notices seen
        self.user_checks = {"opened": 0, "in_chromium": 0, "ends_told": 0}
        #: open a ready server in Chromium when this many steps passed since the last
        #: time (0: never)
        self.browser_every = browser_every
        self.browser_step = 0

    # -- set-up and tear-down ---------------------------------------------------------
    def up(self) -> None:
        observer = Observer(self.tb, "", "", [*USERS, ATTACKER], since=time.time())
        # jobs of an earlier run under the same tag would be this hub's orphans at once
        leftovers = [j.job_id for j in (observer.active_jobs() or {}).values()
                     if j.name.startswith(self.model.prefix)]
        faults.cancel_jobs(self.tb, leftovers)
        faults.wait_until("earlier runs' jobs to leave", lambda: not any(
            j.job_id in leftovers for j in (observer.active_jobs() or {}).values()), 120)
        # env files of other hubs' servers are theirs to account for
        self.model.foreign_env_files = set().union(*observer.env_files().values())
        self.model.started = time.time()
        # a fresh hub: an earlier run's database would carry its servers, and its proxy
        # (left when that run was killed) would hold the ports
        if self.hub.dir.exists():
            self.hub.down()
            shutil.rmtree(self.hub.dir)
        status = up_hub(self.hub, self.tb, users=[*USERS, ATTACKER], interval=3.0)
        self.token = status["admin_token"]
        self.sessions = {u: UserSession(status["hub_url"], u, status["users"][u])
                         for u in USERS}
        self.observer = Observer(self.tb, status["hub_url"], self.token,
                                 [*USERS, ATTACKER], since=self.model.started)
        self.ensure_victims()

    def down(self, *, check: bool = True) -> list[Violation]:
        """Stop every server, check once more (a clean end is quiet too), cancel the
        test's jobs and stop the hub."""
        try:
            for user, server in [(u, s) for u in USERS for s in SERVERS]:
                self._stop_now(user, server)
            self.pool.shutdown(wait=True)
            return self.check() if check else []
        finally:
            self.cancel_test_jobs(list(self.model.test_jobs))
            self.hub.down()

    def _stop_now(self, user: str, server: str) -> None:
        self.model.stops.setdefault((user, server), []).append(time.time())
        if self._answer("DELETE", _path(user, server)).startswith("error"):
            return  # no hub to ask
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            servers = self.observer.servers()
            if servers is not None and not getattr(servers.get((user, server)), "active",
                                                   False):
                return
            time.sleep(1)

    # -- requests ---------------------------------------------------------------------
    def _answer(self, method: str, path: str, body: dict | None = None) -> str:
        try:
            r = requests.request(method, f"{self.hub.public_url}/hub/api{path}", json=body,
                                 headers={"Authorization": f"token {self.token}"},
                                 timeout=300)
            answer = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as exc:
            answer = f"error {type(exc).__name__}"
        self.answers.append((len(self.steps), method, path, answer))
        return answer

    def _background(self, method: str, path: str, body: dict | None = None) -> None:
        self.pool.submit(self._answer, method, path, body)

    # -- test jobs --------------------------------------------------------------------
    def submit_test_job(self, user: str, kind: str, name: str, *, hold: bool,
                        sweepable: bool = False) -> str:
        argv = ["sbatch", "--parsable", "-J", name, "-p", "regular", "-t", "240", "-c", "1",
                "--mem=100M", "-o", "/dev/null", "--no-requeue", *(["--hold"] if hold else []),
                "--wrap", "sleep 86400"]
        proc = self.tb.login_exec(user, argv, timeout=120, check=True)
        job_id = proc.stdout.decode().strip().split(";")[0]
        self.model.test_jobs[job_id] = TestJob(user, kind, name, sweepable)
        return job_id

    def cancel_test_jobs(self, job_ids: list[str]) -> None:
        if job_ids:
            self.model.test_cancelled.update(job_ids)
            faults.cancel_jobs(self.tb, job_ids)

    def ensure_victims(self) -> None:
        """Each hub user keeps one plain running job of her own: the forged records'
        target, which the hub must never cancel."""
        ended = self.observer.ended_ids(list(self.victims.values())) if self.victims else {}
        for user in USERS:
            if user not in self.victims or self.victims[user] in ended:
                self.victims[user] = self.submit_test_job(user, "victim", "chaos-victim",
                                                          hold=False)

    def _alive(self, kind: str, user: str, name: str | None = None) -> list[str]:
        return [j for j, t in self.model.test_jobs.items()
                if t.kind == kind and t.user == user and (name is None or t.name == name)
                and j not in self.model.test_cancelled]

    # -- actions ----------------------------------------------------------------------
    def spawn(self, user: str, server: str, kind: str = "debug") -> None:
        slot = (user, server)
        self.model.spawns.setdefault(slot, []).append(time.time())
        (self.model.short_walltime.add if kind == "walltime"
         else self.model.short_walltime.discard)(slot)
        self._background("POST", _path(user, server), SPAWN_OPTIONS[kind])

    def walltime(self, user: str, server: str) -> None:
        """A server whose job reaches its walltime (one minute) during the run."""
        self.spawn(user, server, "walltime")

    def stop(self, user: str, server: str) -> None:
        self.model.stops.setdefault((user, server), []).append(time.time())
        self._background("DELETE", _path(user, server))

    def spawn_then_stop(self, user: str, server: str, delay: float) -> None:
        """A stop that races the spawn: while the job is written, submitted or queued."""
        self.spawn(user, server)
        time.sleep(delay)
        self.stop(user, server)

    def hub_kill(self, down_for: float) -> None:
        self.model.hub_kills.append(time.time())
        self.hub.kill(signal.SIGKILL)
        time.sleep(down_for)
        self.hub.restart()
        self.opened.clear()  # invariant 7 holds after a re-attach too: open them again

    def slurmctld_outage(self, seconds: float) -> None:
        self._outage(faults.stop_slurmctld, faults.start_slurmctld, seconds, "slurmctld")

    def sshd_outage(self, seconds: float) -> None:
        self._outage(faults.stop_sshd, faults.start_sshd, seconds, "sshd on the login node")

    def _outage(self, stop, start, seconds: float, what: str) -> None:
        watched = self._serving()
        stop(self.tb)
        try:
            self._watch_ready(watched, seconds, what)
        finally:
            start(self.tb)

    def node_kill(self, node: str, seconds: float) -> None:
        ip = faults.kill_node(self.tb, node)
        try:
            time.sleep(seconds)
        finally:
            faults.restore_node(self.tb, node, ip)
        self.ensure_victims()

    def inject_forged(self, victim: str) -> None:
        """carol's job whose name carries a forged queue record of the victim's job."""
        self.ensure_victims()
        target = self.victims[victim]
        name = f"x\n{target}|{victim}|RUNNING|{self.model.prefix}{victim}"
        self.submit_test_job(ATTACKER, "forged", name, hold=True)
        self.cancel_test_jobs(self._alive("forged", ATTACKER)[:-2])

    def inject_impostor(self, owner: str, named: str, ours: bool) -> None:
        """A user's own job named like a notebook job of the chaos hub (``ours``; its
        reserved prefix, so its sweep may cancel it) or of the default hub (never)."""
        name = jobenv.job_name(named, "", TAG if ours else "")
        self.submit_test_job(owner, "impostor", name, hold=True, sweepable=ours)
        self.cancel_test_jobs(self._alive("impostor", owner, name)[:-1])

    def refused_named(self, slot: Slot, kind: str) -> None:
        """A refused spawn of a named server that never ran (JupyterHub makes its row)."""
        self.refused(slot, kind)

    def refused(self, slot: Slot, kind: str) -> None:
        options = REFUSED_OPTIONS[kind]
        answer = self._answer("POST", _path(*slot), options)
        if not answer.startswith("400 "):
            self.model.events.append(Violation(
                "refused", f"spawn of {slot} with {options} answered {answer!r}, not 400",
                permanent=True))

    def _serving(self) -> set[Slot]:
        """Ready servers whose job runs now (one whose job just ended, e.g. on a killed
        node, may be dropped any moment: the hub can learn that end from accounting)."""
        jobs = self.observer.active_jobs() or {}
        servers = self.observer.servers() or {}
        return {slot for slot, s in servers.items() if s.ready and slot[0] in USERS
                and getattr(jobs.get(s.job_id or ""), "state", "") == "RUNNING"
                and slot not in self.model.short_walltime}

    def _watch_ready(self, watched: set[Slot], seconds: float, what: str) -> None:
        """Invariant 3 during an outage: a server that was serving stays ready unless the
        test stops it (servers with a one-minute walltime are not watched: their end is
        real)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
            now = self.observer.servers()
            if now is None:
                continue
            for slot in sorted(watched):
                # a stop since the spawn, even one sent before the outage, may land now
                if self.model.stopped_since(slot, self.model.origin(slot, time.time())):
                    continue
                if not (now.get(slot) and now[slot].ready):
                    watched.discard(slot)
                    self.model.events.append(Violation(
                        "dropped-server", f"server {slot} was dropped while {what} was "
                        "down", permanent=True))

    # -- steps and checks -------------------------------------------------------------
    def do(self, rule: str, **args) -> None:
        self.steps.append({"step": len(self.steps) + 1, "rule": rule, "args": args,
                           "time": round(time.time(), 1)})
        self.log(f"step {len(self.steps)}: {rule} {json.dumps(args)}")
        getattr(self, rule)(**args)

    def observe(self):
        extra = [j for j in self.model.test_jobs if j not in self.model.test_cancelled]
        snap = self.observer.snapshot(extra)
        for job in (snap.jobs or {}).values():
            if job.name.startswith(self.model.prefix):
                self.model.first_seen.setdefault(job.job_id, snap.taken)
                self.model.names.setdefault(job.job_id, job.name)
        unnamed = [j for j in snap.ended if j not in self.model.names
                   and j not in self.model.test_jobs]
        self.model.names.update(self.observer.names(unnamed))
        return snap

    def check(self, settle: float | None = None) -> list[Violation]:
        """The invariants; eventual ones get ``settle`` seconds to hold again."""
        deadline = time.monotonic() + (self.settle if settle is None else settle)
        while True:
            snap = self.observe()
            found = invariants.check(self.model, snap) or self.as_users(snap)
            if not found or any(v.permanent for v in found) or time.monotonic() > deadline:
                return found
            time.sleep(2)

    def _in_chromium(self, snap: Snapshot) -> list[Violation]:
        """Every ``browser_every`` steps, one server that opened over HTTP is opened in
        Chromium too, its user logged in through the login page (JupyterLab's launcher
        must show)."""
        if not self.browser_every or len(self.steps) - self.browser_step < self.browser_every:
            return []
        for slot, server in sorted((snap.servers or {}).items()):
            job = (snap.jobs or {}).get(server.job_id or "")
            if server.ready and job is not None and (slot, job.job_id) in self.opened:
                user = self.sessions[slot[0]]
                problem = open_in_chromium(self.hub.public_url, user.user, user.password,
                                           slot[1])
                if problem is not None:
                    return [Violation("unopenable", f"server {slot} is ready and its job "
                                      f"{job.job_id} runs, but it does not open: {problem}")]
                self.browser_step = len(self.steps)
                self.user_checks["in_chromium"] += 1
                return []
        return []

    def as_users(self, snap: Snapshot) -> list[Violation]:
        """What the users see, once per server job and end: a server the hub calls ready
        whose job runs opens for its user (invariant 7; again after each hub restart),
        and her spawn page tells how her last server ended (issue 12, item 9)."""
        found = []
        # After a restart JupyterHub routes the servers it re-checked only when every
        # check has ended (one whose job lost its processes takes its http_timeout):
        # until then a ready server may have no route yet.
        checking = any(s.pending == "check" for s in (snap.servers or {}).values())
        for slot, server in sorted((snap.servers or {}).items()):
            job = (snap.jobs or {}).get(server.job_id or "")
            if slot[0] not in self.sessions or slot in self.model.refused_slots \
                    or not server.ready or job is None or job.state != "RUNNING" \
                    or (slot, job.job_id) in self.opened or checking:
                continue
            problem = self.sessions[slot[0]].open_server(slot[1])
            if problem is None:
                self.opened.add((slot, job.job_id))
                self.user_checks["opened"] += 1
            else:
                found.append(Violation("unopenable", f"server {slot} is ready and its job "
                                       f"{job.job_id} runs, but it does not open for "
                                       f"{slot[0]}: {problem}"))
        if not found and not checking:
            found += self._in_chromium(snap)
        for slot, (ended, _) in sorted(invariants.own_ends(self.model, snap).items()):
            if ended.job_id in self.told or slot[0] not in self.sessions:
                continue
            told = str(snap.servers[slot].state.get("last_end"))  # type: ignore[index]
            seen = self.sessions[slot[0]].end_notice(slot[1])
            if seen is None:
                continue  # not the form now: a spawn is under way
            if seen == html.escape(told, quote=False) or seen == html.escape(told):
                self.told.add(ended.job_id)
                self.user_checks["ends_told"] += 1
            else:
                found.append(Violation("end-untold", f"{slot[0]}'s spawn page for server "
                                       f"{slot} shows {seen!r} as the last end, not "
                                       f"{told!r} (job {ended.job_id}, {ended.state})"))
        return found


def _path(user: str, server: str) -> str:
    return f"/users/{user}/server" + (f"s/{server}" if server else "")

"""The chaos suite's pure parts: readings, invariant checks, seeded step sequences."""

from __future__ import annotations

import json

import pytest

from tests.chaos import invariants, machine
from tests.chaos.invariants import Model, TestJob
from tests.chaos.observe import (
    Ended,
    Job,
    Server,
    Snapshot,
    parse_env_files,
    parse_sacct_lines,
    parse_squeue_json,
)

PREFIX = "hpcb-nb.chaos-"
SLOTS = {f"{PREFIX}alice": ("alice", ""), f"{PREFIX}alice-x": ("alice", "x"),
         f"{PREFIX}bob-r": ("bob", "r")}


def model(**kw) -> Model:
    return Model(PREFIX, dict(SLOTS), refused_slots={("bob", "r")}, started=1000.0, **kw)


def server(user="alice", name="", ready=True, pending=None, **state) -> Server:
    return Server(user, name, ready, pending, state, {})


def snap(jobs=(), servers=(), env=None, ended=()) -> Snapshot:
    return Snapshot(2000.0, {j.job_id: j for j in jobs},
                    {(s.user, s.name): s for s in servers}, env or {},
                    {e.job_id: e for e in ended})


def job(job_id="11", name=f"{PREFIX}alice", state="RUNNING", user="alice") -> Job:
    return Job(job_id, user, state, name)


def kinds(found) -> list[str]:
    return [v.invariant for v in found]


def test_squeue_json_keeps_a_forged_name_inside_its_job():
    forged = "x\n12|bob|RUNNING|hpcb-nb.chaos-bob"
    text = json.dumps({"jobs": [
        {"job_id": 13, "user_name": "carol", "job_state": "PENDING", "name": forged},
        {"job_id": 12, "user_name": "bob", "job_state": ["RUNNING"], "name": "work"},
        {"job_id": 9, "user_name": "bob", "job_state": "COMPLETED", "name": "old"}]})
    jobs = parse_squeue_json(text)
    assert set(jobs) == {"12", "13"}
    assert jobs["13"].name == forged and jobs["12"].state == "RUNNING"


def test_sacct_lines_hold_no_user_field_and_skip_active_jobs():
    text = "12|bob|CANCELLED by 0|1500\n13|carol|RUNNING|1600\n14|alice|TIMEOUT|1700\n"
    ended = parse_sacct_lines(text)
    assert ended == {"12": Ended("12", "bob", "CANCELLED by 0", 1500.0),
                     "14": Ended("14", "alice", "TIMEOUT", 1700.0)}


def test_env_files_by_user():
    text = "/home/alice/.hpcbridge/env.a\0/home/bob/.hpcbridge/env.b\0/home/x\0"
    assert parse_env_files(text) == {"alice": {"/home/alice/.hpcbridge/env.a"},
                                     "bob": {"/home/bob/.hpcbridge/env.b"}}


def test_a_job_no_server_refers_to_is_an_orphan():
    found = invariants.check(model(), snap([job()], [server(job_id="99")]))
    assert "orphan-job" in kinds(found)
    assert invariants.check(model(), snap([job()], [server(job_id="11")])) == []


def test_a_job_kept_by_a_stopped_server_for_re_attach_is_no_orphan():
    stopped = server(ready=False, job_id="11")
    assert invariants.orphan_jobs(model(), snap([job(state="PENDING")], [stopped])) == []


def test_the_tests_own_jobs_are_not_the_hubs():
    m = model(test_jobs={"11": TestJob("carol", "impostor", f"{PREFIX}alice", True)})
    assert invariants.check(m, snap([job(user="carol")], [])) == []


def test_an_env_file_needs_a_waiting_job():
    path = "/home/alice/.hpcbridge/env.1"
    waiting = server(ready=False, pending="spawn", job_id="11", env_file=path)
    ok = snap([job(state="PENDING")], [waiting], {"alice": {path}})
    assert invariants.stray_env_files(model(), ok) == []
    reported = server(job_id="11", env_file=path, reported_port=5000)
    stale = snap([job()], [reported], {"alice": {path}})
    assert kinds(invariants.stray_env_files(model(), stale)) == ["env-file"]
    assert kinds(invariants.stray_env_files(model(), snap([], [], {"alice": {path}}))) == \
        ["env-file"]
    assert invariants.stray_env_files(model(foreign_env_files={path}),
                                      snap([], [], {"alice": {path}})) == []


def test_a_running_job_whose_server_is_gone_is_a_dropped_server():
    m = model(spawns={("alice", ""): [1100.0]})
    found = invariants.dropped_servers(m, snap([job()], [server(ready=False, job_id="11")]))
    assert kinds(found) == ["dropped-server"]
    m.stops[("alice", "")] = [1200.0]  # stopped by the test: the orphan check's business
    assert invariants.dropped_servers(m, snap([job()], [])) == []


def test_a_cancel_the_test_did_not_ask_for_is_a_dropped_server():
    ended = Ended("11", "alice", "CANCELLED by 2001", 1150.0)
    m = model(spawns={("alice", ""): [1100.0]}, names={"11": f"{PREFIX}alice"})
    assert [v.permanent for v in invariants.hub_cancelled(m, snap(ended=[ended]))] == [True]
    m.stops[("alice", "")] = [1120.0]  # a stop while the job was being submitted
    assert invariants.hub_cancelled(m, snap(ended=[ended])) == []
    m2 = model(spawns={("alice", ""): [1100.0]}, names={"11": f"{PREFIX}alice"},
               hub_kills=[1300.0])  # the hub was killed while the spawn ran
    assert invariants.hub_cancelled(m2, snap(ended=[ended])) == []
    old = Ended("11", "alice", "CANCELLED by 2001", 500.0)  # before the run
    assert invariants.hub_cancelled(model(names={"11": f"{PREFIX}alice"}),
                                    snap(ended=[old])) == []


def test_a_stop_before_the_spawn_does_not_excuse_its_cancel():
    m = model(spawns={("alice", ""): [1100.0]}, stops={("alice", ""): [1000.0]},
              names={"11": f"{PREFIX}alice"})
    ended = Ended("11", "alice", "CANCELLED by 2001", 1150.0)
    assert kinds(invariants.hub_cancelled(m, snap(ended=[ended]))) == ["dropped-server"]


@pytest.mark.parametrize("sweepable, cancelled_by_test, broken", [
    (False, False, True), (False, True, False), (True, False, False)])
def test_victims_must_not_be_cancelled_by_the_hub(sweepable, cancelled_by_test, broken):
    m = model(test_jobs={"12": TestJob("bob", "victim", "work", sweepable)},
              test_cancelled={"12"} if cancelled_by_test else set())
    found = invariants.victims_cancelled(m, snap(ended=[Ended("12", "bob", "CANCELLED by 0",
                                                              1500.0)]))
    assert bool(found) is broken


def test_a_refused_slot_keeps_no_job_no_options_no_row():
    m = model(names={"21": f"{PREFIX}bob-r"})
    clean = snap([], [])
    assert invariants.refused_left_over(m, clean) == []
    row = Server("bob", "r", False, None, {}, {"cmd": "id"})
    found = invariants.refused_left_over(m, snap([], [row]))
    assert len(found) == 2  # the options, and the named server's row
    ended = snap(ended=[Ended("21", "bob", "FAILED", 1500.0)])
    assert kinds(invariants.refused_left_over(m, ended)) == ["refused"]


class FakeWorld:
    """Records the steps a seed chooses; nothing breaks."""

    def __init__(self) -> None:
        self.steps: list[dict] = []

    def do(self, rule: str, **args) -> None:
        self.steps.append({"step": len(self.steps) + 1, "rule": rule, "args": args})

    def check(self) -> list:
        return []


def steps_of(seed: int, count: int, actions=machine.ACTIONS) -> list[tuple]:
    world = FakeWorld()
    machine.run_seeded(world, seed, count, actions)
    return [(s["rule"], json.dumps(s["args"], sort_keys=True)) for s in world.steps]


def test_a_seed_chooses_the_same_steps_every_time_and_a_shorter_run_is_a_prefix():
    first = steps_of(7, 60)
    assert len(first) == 60 and first == steps_of(7, 60)
    assert steps_of(7, 25) == first[:25]
    assert steps_of(8, 60) != first


def test_costly_actions_wait_their_cooldown_and_only_enabled_actions_run():
    steps = steps_of(3, 250)
    assert len(steps) == 250  # longer than a segment
    last: dict[str, int] = {}
    for i, (rule, _) in enumerate(steps):
        if rule in last:
            assert i - last[rule] >= machine.COOLDOWN.get(rule, 0), rule
        last[rule] = i
    assert {rule for rule, _ in steps_of(4, 40, ("spawn", "stop"))} <= {"spawn", "stop"}


def test_the_ci_seed_runs_every_ci_action():
    from tests.testbed import test_chaos

    steps = steps_of(test_chaos.SEED, test_chaos.STEPS, test_chaos.CI_ACTIONS)
    assert {rule for rule, _ in steps} == set(test_chaos.CI_ACTIONS)


def test_a_break_prints_the_seed_the_violations_the_steps_and_how_to_replay(tmp_path):
    from types import SimpleNamespace

    from tests.chaos.invariants import Violation
    from tests.chaos.world import InvariantBroken

    world = FakeWorld()
    for _ in range(30):
        world.do("spawn", user="alice", server="")
    world.hub = SimpleNamespace(dir=tmp_path / "hub")
    world.answers = []
    broken = InvariantBroken([Violation("orphan-job", "job 7 (hpcb-nb.chaos-alice) ...")])
    log = tmp_path / "steps.json"
    machine.write_log(world, log, seed=42, actions=["stop", "spawn"], started=0.0,
                      broken=broken)
    text = machine.reproduction(world, log, 42, ["stop", "spawn"], broken)
    assert "seed 42" in text and "[orphan-job] job 7" in text
    assert f"--replay {log}" in text
    assert "--seed 42 --steps 30 --actions spawn,stop" in text
    recorded = json.loads(log.read_text())
    assert recorded["seed"] == 42 and len(recorded["steps"]) == 30
    assert recorded["violations"] == ["[orphan-job] job 7 (hpcb-nb.chaos-alice) ..."]


def test_a_step_that_fails_ends_the_run_once_without_hypothesis_running_it_again():
    from tests.chaos.world import InvariantBroken

    class Failing(FakeWorld):
        def do(self, rule: str, **args) -> None:
            super().do(rule, **args)
            if len(self.steps) == 5:
                raise TimeoutError("slurmctld did not answer")

    world = Failing()
    with pytest.raises(InvariantBroken) as caught:
        machine.run_seeded(world, 7, 40)
    assert len(world.steps) == 5  # not replayed by hypothesis
    (violation,) = caught.value.violations
    assert violation.invariant == "step-failed" and "slurmctld did not answer" in str(violation)


def _ended_server(last_end=None, **kw) -> Server:
    state = {"last_end": last_end} if last_end else {}
    return Server("alice", "x", False, None, state, {}, **kw)


def test_a_server_whose_job_ended_on_its_own_keeps_the_schedulers_reason():
    m = model(spawns={("alice", "x"): [1100.0]}, names={"11": f"{PREFIX}alice-x"})
    timeout = Ended("11", "alice", "TIMEOUT", 1150.0)
    told = snap(servers=[_ended_server("timeout (TimeLimit)")], ended=[timeout])
    assert invariants.end_reasons(m, told) == []
    assert invariants.own_ends(m, told)[("alice", "x")] == (timeout, "timeout")
    wrong = snap(servers=[_ended_server("completed (left the queue)")], ended=[timeout])
    assert kinds(invariants.end_reasons(m, wrong)) == ["end-reason"]
    assert kinds(invariants.end_reasons(m, snap(servers=[_ended_server()],
                                                ended=[timeout]))) == ["end-reason"]
    node = Ended("11", "alice", "NODE_FAIL", 1150.0)
    assert kinds(invariants.end_reasons(m, snap(servers=[_ended_server("timeout")],
                                                ended=[node]))) == ["end-reason"]


def test_an_end_the_test_caused_or_a_newer_job_needs_no_reason():
    m = model(spawns={("alice", "x"): [1100.0]}, names={"11": f"{PREFIX}alice-x"})
    quiet = _ended_server()
    cancelled = Ended("11", "alice", "CANCELLED by 0", 1150.0)
    assert invariants.end_reasons(m, snap(servers=[quiet], ended=[cancelled])) == []
    timeout = Ended("11", "alice", "TIMEOUT", 1150.0)
    newer = job("12", f"{PREFIX}alice-x", "PENDING")
    assert invariants.end_reasons(m, snap([newer], [quiet], ended=[timeout])) == []
    running = Server("alice", "x", True, None, {"job_id": "12"}, {})
    assert invariants.end_reasons(m, snap(servers=[running], ended=[timeout])) == []
    m.stops[("alice", "x")] = [1120.0]  # the test stopped it: its end is the stop's
    assert invariants.end_reasons(m, snap(servers=[quiet], ended=[timeout])) == []


def test_a_seeds_steps_do_not_depend_on_the_modules_loaded(tmp_path, monkeypatch):
    import importlib
    import sys

    before = steps_of(20261302, 40)
    # a local module full of constants, as a unit test of another file would load
    (tmp_path / "chaos_constants_probe.py").write_text(
        "\n".join(f"C{i} = {i}" for i in range(1, 300)) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("chaos_constants_probe")
    try:
        assert steps_of(20261302, 40) == before
    finally:
        sys.modules.pop("chaos_constants_probe", None)

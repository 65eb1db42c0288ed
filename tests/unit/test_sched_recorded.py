"""Parsers over outputs recorded on the testbed (Slurm 22.05), not written by hand.

tests/fixtures/slurm/recorded/capture.py made every file with the dialects' own argv;
job_ids.txt says which job was meant to be in which state. The odd cases here are real:
the last task of an array reuses the array's raw id, ``sacct`` lags behind ``squeue``
(a running job is still PENDING there, a held one missing), ``CANCELLED by UID``,
``None assigned`` nodes, the torque wrapper's ``qstat -Q -f`` without any limits.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from hpcbridge.errors import JobNotFound
from hpcbridge.jobs import JobState
from hpcbridge.schedulers import Operation, PbsDialect, SlurmDialect

REC = Path(__file__).parent.parent / "fixtures" / "slurm" / "recorded"
SLURM = SlurmDialect()
PBS = PbsDialect()


def rec(name: str) -> str:
    return (REC / name).read_text()


def job_ids() -> dict[str, str]:
    return dict(line.split() for line in rec("job_ids.txt").splitlines())


IDS = job_ids()
ORDER = list(IDS.values())


def test_recorded_with_the_dialects_own_argv() -> None:
    capture = rec("capture.py")
    for call in ("SLURM.status_command", "SLURM.history_command", "SLURM.partitions_commands",
                 "SLURM.associations_command", "SLURM.qos_command", "SLURM.budget_commands",
                 "PBS.partitions_commands", "PBS.status_command"):
        assert call in capture


def test_squeue_while_jobs_run() -> None:
    infos = SLURM.parse_status(rec("squeue_jobs.txt"), ORDER)
    assert set(infos) == set(ORDER)
    held, running = infos[IDS["held"]], infos[IDS["running"]]
    assert held.state is JobState.PENDING and held.reason == "JobHeldUser"
    assert held.nodes == () and held.start_time is None and held.time_left is None
    assert running.state is JobState.RUNNING and running.reason is None
    assert running.user == "bob" and running.partition == "debug" and running.nodes == ("c1",)
    assert running.start_time is not None
    assert running.time_left is not None and timedelta(0) < running.time_left <= timedelta(
        minutes=5)
    assert running.extra["account"] == "proj_a"
    assert infos[IDS["completed"]].state is JobState.COMPLETED
    assert infos[IDS["failed"]].state is JobState.FAILED
    assert infos[IDS["failed"]].reason == "NonZeroExitCode"
    assert infos[IDS["cancelled"]].state is JobState.CANCELLED


def test_squeue_array_tasks_and_the_reused_raw_id() -> None:
    base = IDS["array"]
    text = rec("squeue_jobs.txt")
    whole = SLURM.parse_status(text, [base])[base]
    assert whole.state is JobState.RUNNING and whole.extra["array_tasks"] == "3"
    # the last task runs under the array's own raw id; asking for the array must still
    # mean all three tasks, not that one
    last = next(line for line in text.splitlines() if line.startswith(f"{base}_3|"))
    assert last.split("|")[1] == base
    tasks = SLURM.parse_status(text, [f"{base}_1", f"{base}_3"])
    assert all(t.state is JobState.RUNNING for t in tasks.values())
    raw_first = next(line.split("|")[1] for line in text.splitlines()
                     if line.startswith(f"{base}_1|"))
    assert SLURM.parse_status(text, [raw_first])[raw_first].state is JobState.RUNNING


def test_squeue_after_the_end_keeps_terminal_states() -> None:
    infos = SLURM.parse_status(rec("squeue_ended.txt"), ORDER)
    assert {i.state for i in infos.values()} <= {JobState.CANCELLED, JobState.COMPLETED,
                                                 JobState.FAILED}
    assert infos[IDS["held"]].state is JobState.CANCELLED
    assert infos[IDS["array"]].state is JobState.CANCELLED
    assert all(i.time_left is None for i in infos.values())


def test_sacct_lags_behind_the_queue() -> None:
    # recorded a moment after squeue_jobs.txt: the running job is still PENDING in the
    # accounting database and the held one is not there at all. History is only asked
    # for ids the queue no longer knows, so this lag never overrides a live state.
    infos = SLURM.parse_history(rec("sacct_jobs.txt"), ORDER)
    assert IDS["held"] not in infos
    assert infos[IDS["running"]].state is JobState.PENDING
    assert not infos[IDS["running"]].state.is_terminal
    assert infos[IDS["completed"]].state is JobState.COMPLETED


def test_sacct_after_the_end() -> None:
    infos = SLURM.parse_history(rec("sacct_ended.txt"), ORDER)
    assert set(infos) == set(ORDER)
    held = infos[IDS["held"]]
    assert held.state is JobState.CANCELLED and held.reason.startswith("CANCELLED by ")
    assert held.nodes == ()  # "None assigned"
    failed = infos[IDS["failed"]]
    assert failed.state is JobState.FAILED and failed.exit_code == 3
    assert infos[IDS["completed"]].exit_code == 0
    array = infos[IDS["array"]]
    assert array.state is JobState.CANCELLED and array.extra["array_tasks"] == "3"


def test_unknown_id_is_not_found_not_an_outage() -> None:
    status, _, stderr = rec("squeue_unknown_id.err").partition("\n")
    error = SLURM.classify_error(Operation.STATUS, int(status.split()[1]), stderr)
    assert isinstance(error, JobNotFound)


def test_partitions_and_node_shapes() -> None:
    parts = {p.name: p for p in SLURM.parse_partitions(
        [rec("scontrol_partitions.txt"), rec("sinfo_shapes.txt")])}
    assert list(parts) == ["debug", "regular", "gpu"]
    debug, regular, gpu = parts["debug"], parts["regular"], parts["gpu"]
    assert debug.default and not regular.default and all(p.available for p in parts.values())
    assert debug.max_walltime == timedelta(minutes=30)
    assert debug.default_walltime == timedelta(minutes=10)
    assert regular.max_walltime == timedelta(hours=4)
    assert gpu.max_walltime == timedelta(hours=2)
    assert debug.max_nodes is None and debug.total_nodes == 3  # MaxNodes=UNLIMITED
    assert debug.nodes == ("c1", "c2", "c3") and gpu.nodes == ("c3",)
    assert debug.cores_per_node == 8 and debug.memory_per_node_mb == 16000
    assert debug.max_memory_per_node_mb is None and debug.allow_accounts is None
    assert gpu.gpus_per_node == 2 and gpu.total_cpus == 8


def test_associations_and_qos() -> None:
    (alice,) = SLURM.parse_associations(rec("sacctmgr_assoc_alice.txt"))
    assert (alice.cluster, alice.account, alice.user) == ("tb", "proj_a", "alice")
    assert alice.qos == ("normal",) and alice.partition is None and alice.max_jobs is None
    (carol,) = SLURM.parse_associations(rec("sacctmgr_assoc_carol.txt"))
    assert carol.account == "proj_b"
    (normal,) = SLURM.parse_qos(rec("sacctmgr_qos.txt"))
    assert normal.name == "normal"
    assert (normal.max_jobs_per_user, normal.max_submit_jobs_per_user) == (4, 8)
    assert normal.max_walltime is None


def test_budgets_from_sshare() -> None:
    proj_b = SLURM.parse_budget("proj_b", [rec("sshare_proj_b.txt")])
    assert proj_b is not None and proj_b.limit_minutes == {"cpu": 60}
    assert proj_b.remaining("cpu") == 60 - proj_b.used_minutes.get("cpu", 0)
    assert SLURM.parse_budget("proj_a", [rec("sshare_proj_a.txt")]) is None  # no limit


@pytest.mark.parametrize("name", ["debug", "regular", "gpu"])
def test_torque_wrapper_queues_carry_no_limits(name: str) -> None:
    queues = {q.name: q for q in PBS.parse_partitions([rec("torque_qstat_Qf.txt")])}
    assert queues[name].available
    assert queues[name].max_walltime is None and queues[name].max_nodes is None


def test_torque_wrapper_qstat_of_a_running_job() -> None:
    job = IDS["running"]
    info = PBS.parse_status(rec("torque_qstat_f_running.txt"), [job])[job]
    assert info.state is JobState.RUNNING and info.user == "bob"

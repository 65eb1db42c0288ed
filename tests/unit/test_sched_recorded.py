"""Parsers over outputs recorded on the testbed (Slurm 22.05 and 24.11), not written by hand.

tests/fixtures/slurm/recorded/capture.py made every file with the dialects' own argv, one
folder per Slurm generation; job_ids.txt says which job was meant to be in which state.
Every test runs on both generations; where their outputs differ the test says how. The
odd cases here are real: the last task of an array reuses the array's raw id, ``sacct``
lags behind ``squeue`` on 22.05 (a running job is still PENDING there, a held one
missing), ``CANCELLED by UID``, ``None assigned`` nodes, the torque wrapper's
``qstat -Q -f`` without any limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from hpcbridge.errors import JobNotFound
from hpcbridge.jobs import JobState
from hpcbridge.schedulers import Operation, PbsDialect, SlurmDialect
from slurm_testbed.faults import parse_sdiag

RECORDED = Path(__file__).parent.parent / "fixtures" / "slurm" / "recorded"
SLURM = SlurmDialect()
PBS = PbsDialect()
GENERATIONS = ["22.05", "24.11"]


@dataclass(frozen=True)
class Recording:
    """The files recorded on one generation."""

    slurm: str

    def text(self, name: str) -> str:
        return (RECORDED / self.slurm / name).read_text()

    @property
    def ids(self) -> dict[str, str]:
        return dict(line.split() for line in self.text("job_ids.txt").splitlines())

    @property
    def order(self) -> list[str]:
        return list(self.ids.values())


@pytest.fixture(params=GENERATIONS, ids=[f"slurm-{g}" for g in GENERATIONS])
def rec(request) -> Recording:  # type: ignore[no-untyped-def]
    return Recording(request.param)


def test_recorded_with_the_dialects_own_argv() -> None:
    capture = (RECORDED / "capture.py").read_text()
    for call in ("SLURM.status_command", "SLURM.history_command", "SLURM.partitions_commands",
                 "SLURM.associations_command", "SLURM.qos_command", "SLURM.budget_commands",
                 "PBS.partitions_commands", "PBS.status_command",
                 "SLURM.availability_command", "SLURM.estimate_command"):
        assert call in capture


def test_squeue_while_jobs_run(rec: Recording) -> None:
    ids = rec.ids
    infos = SLURM.parse_status(rec.text("squeue_jobs.txt"), rec.order)
    assert set(infos) == set(rec.order)
    held, running = infos[ids["held"]], infos[ids["running"]]
    assert held.state is JobState.PENDING and held.reason == "JobHeldUser"
    assert held.nodes == () and held.start_time is None and held.time_left is None
    assert running.state is JobState.RUNNING and running.reason is None
    assert running.user == "bob" and running.partition == "debug" and running.nodes == ("c1",)
    assert running.start_time is not None
    assert running.time_left is not None and timedelta(0) < running.time_left <= timedelta(
        minutes=5)
    assert running.extra["account"] == "proj_a"
    assert infos[ids["completed"]].state is JobState.COMPLETED
    assert infos[ids["failed"]].state is JobState.FAILED
    assert infos[ids["failed"]].reason == "NonZeroExitCode"
    assert infos[ids["cancelled"]].state is JobState.CANCELLED


def test_squeue_array_tasks_and_the_reused_raw_id(rec: Recording) -> None:
    base = rec.ids["array"]
    text = rec.text("squeue_jobs.txt")
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


def test_squeue_after_the_end_keeps_terminal_states(rec: Recording) -> None:
    infos = SLURM.parse_status(rec.text("squeue_ended.txt"), rec.order)
    assert {i.state for i in infos.values()} <= {JobState.CANCELLED, JobState.COMPLETED,
                                                 JobState.FAILED}
    assert infos[rec.ids["held"]].state is JobState.CANCELLED
    assert infos[rec.ids["array"]].state is JobState.CANCELLED
    assert all(i.time_left is None for i in infos.values())


def test_sacct_while_jobs_run(rec: Recording) -> None:
    # recorded a moment after squeue_jobs.txt. History is only asked for ids the queue no
    # longer knows, so what sacct says of a live job never overrides the queue's word.
    ids = rec.ids
    infos = SLURM.parse_history(rec.text("sacct_jobs.txt"), rec.order)
    assert infos[ids["completed"]].state is JobState.COMPLETED
    assert infos[ids["failed"]].exit_code == 3
    if rec.slurm == "22.05":
        # 22.05 lags: the running job is still PENDING, the held one not there at all
        assert ids["held"] not in infos
        assert infos[ids["running"]].state is JobState.PENDING
    else:
        # 24.11 has both at once: the held job PENDING (start "Unknown"), the running
        # one RUNNING with its node and partition
        held = infos[ids["held"]]
        assert held.state is JobState.PENDING and held.start_time is None
        assert held.nodes == ()  # "None assigned"
        running = infos[ids["running"]]
        assert running.state is JobState.RUNNING and running.nodes == ("c1",)
        assert running.partition == "debug"
    assert not infos[ids["running"]].state.is_terminal


def test_sacct_after_the_end(rec: Recording) -> None:
    ids = rec.ids
    infos = SLURM.parse_history(rec.text("sacct_ended.txt"), rec.order)
    assert set(infos) == set(rec.order)
    held = infos[ids["held"]]
    assert held.state is JobState.CANCELLED and held.reason.startswith("CANCELLED by ")
    assert held.nodes == ()  # "None assigned"
    # a job cancelled before it started: 22.05 gives the cancel time as its start,
    # 24.11 "None"
    assert (held.start_time is None) is (rec.slurm != "22.05")
    failed = infos[ids["failed"]]
    assert failed.state is JobState.FAILED and failed.exit_code == 3
    assert infos[ids["completed"]].exit_code == 0
    array = infos[ids["array"]]
    assert array.state is JobState.CANCELLED and array.extra["array_tasks"] == "3"


def test_unknown_id_is_not_found_not_an_outage(rec: Recording) -> None:
    status, _, stderr = rec.text("squeue_unknown_id.err").partition("\n")
    error = SLURM.classify_error(Operation.STATUS, int(status.split()[1]), stderr)
    assert isinstance(error, JobNotFound)


def test_partitions_and_node_shapes(rec: Recording) -> None:
    parts = {p.name: p for p in SLURM.parse_partitions(
        [rec.text("scontrol_partitions.txt"), rec.text("sinfo_shapes.txt")])}
    assert list(parts) == ["debug", "regular", "gpu"]
    debug, regular, gpu = parts["debug"], parts["regular"], parts["gpu"]
    assert debug.default and not regular.default and all(p.available for p in parts.values())
    assert debug.max_walltime == timedelta(minutes=30)
    assert debug.default_walltime == timedelta(minutes=10)
    assert regular.max_walltime == timedelta(hours=4)
    assert gpu.max_walltime == timedelta(hours=2)
    assert debug.max_nodes is None and debug.total_nodes == 3  # MaxNodes=UNLIMITED
    assert debug.nodes == ("c1", "c2", "c3") and gpu.nodes == ("c3",)
    # 22.05's recording predates the nodes' RealMemory=16384 (it had 16000); 24.11's
    # scontrol also prints the partition's memory as "48G" where 22.05 said "48000M"
    memory = 16000 if rec.slurm == "22.05" else 16384
    assert debug.cores_per_node == 8 and debug.memory_per_node_mb == memory
    assert debug.max_memory_per_node_mb is None and debug.allow_accounts is None
    assert gpu.gpus_per_node == 2 and gpu.total_cpus == 8


def test_24_11_scontrol_adds_fields_the_parser_passes_over() -> None:
    text = Recording("24.11").text("scontrol_partitions.txt")
    assert "ExclusiveTopo=NO" in text and "MaxCPUsPerSocket=UNLIMITED" in text
    assert "mem=48G" in text
    assert "ExclusiveTopo" not in Recording("22.05").text("scontrol_partitions.txt")


def test_associations_and_qos(rec: Recording) -> None:
    (alice,) = SLURM.parse_associations(rec.text("sacctmgr_assoc_alice.txt"))
    assert (alice.cluster, alice.account, alice.user) == ("tb", "proj_a", "alice")
    assert alice.qos == ("normal",) and alice.partition is None and alice.max_jobs is None
    (carol,) = SLURM.parse_associations(rec.text("sacctmgr_assoc_carol.txt"))
    assert carol.account == "proj_b"
    (normal,) = SLURM.parse_qos(rec.text("sacctmgr_qos.txt"))
    assert normal.name == "normal"
    assert (normal.max_jobs_per_user, normal.max_submit_jobs_per_user) == (4, 8)
    assert normal.max_walltime is None


def test_budgets_from_sshare(rec: Recording) -> None:
    proj_b = SLURM.parse_budget("proj_b", [rec.text("sshare_proj_b.txt")])
    assert proj_b is not None and proj_b.limit_minutes == {"cpu": 60}
    assert proj_b.remaining("cpu") == 60 - proj_b.used_minutes.get("cpu", 0)
    # 24.11 counts two more TRES (gres/gpumem, gres/gpuutil): read, not needed
    assert ("gres/gpumem" in proj_b.used_minutes) is (rec.slurm != "22.05")
    assert SLURM.parse_budget("proj_a", [rec.text("sshare_proj_a.txt")]) is None  # no limit


@pytest.mark.parametrize("name", ["debug", "regular", "gpu"])
def test_torque_wrapper_queues_carry_no_limits(rec: Recording, name: str) -> None:
    queues = {q.name: q for q in PBS.parse_partitions([rec.text("torque_qstat_Qf.txt")])}
    assert queues[name].available
    assert queues[name].max_walltime is None and queues[name].max_nodes is None


def test_torque_wrapper_qstat_of_a_running_job(rec: Recording) -> None:
    job = rec.ids["running"]
    text = rec.text("torque_qstat_f_running.txt")
    info = PBS.parse_status(text, [job])[job]
    assert info.state is JobState.RUNNING and info.user == "bob" and info.nodes == ("c1",)
    # 22.05's wrapper gives the node's cpu count, the testbed's patched 24.11 wrapper the
    # node's position (containers/slurm/Containerfile)
    assert ("exec_host = c1/1" if rec.slurm == "22.05" else "exec_host = c1/0") in text


def test_sdiag_rpc_tables(rec: Recording) -> None:
    stats = parse_sdiag(rec.text("sdiag.txt"))
    assert stats.total > 0 and stats.by_type and stats.by_user
    assert "REQUEST_JOB_INFO" in stats.by_type
    assert stats.user("bob", 2002) > 0  # the capture's jobs were bob's


def test_availability_with_a_gpu_job_running(rec: Recording) -> None:
    found = {a.partition: a for a in SLURM.parse_availability(rec.text("sinfo_availability.txt"))}
    assert set(found) == {"debug", "regular", "gpu"}
    gpu = found["gpu"]  # c3 runs a job of 2 cores and one of its two typed GPUs
    assert (gpu.idle_cpus, gpu.total_cpus, gpu.idle_nodes, gpu.total_nodes) == (6, 8, 0, 1)
    assert gpu.gpus == {"fake": (1, 2)}
    debug = found["debug"]
    assert (debug.idle_cpus, debug.total_cpus, debug.idle_nodes, debug.total_nodes) == (
        22, 24, 2, 3)
    # 22.05 prints GresUsed "gpu:0" for nodes without GPUs: no GPU type of its own
    assert debug.gpus == {"fake": (1, 2)}


def test_sbatch_test_only_forecasts(rec: Recording) -> None:
    def streams(name: str) -> tuple[int, str, str]:
        head, rest = rec.text(name).split("\n", 1)
        out, err = rest.removeprefix("--- stdout\n").split("--- stderr\n", 1)
        return int(head.split()[1]), out, err

    rc, out, err = streams("sbatch_test_only_now.txt")
    now = SLURM.parse_estimate(out, err)
    assert rc == 0 and now is not None and now.nodes == ("c3",) and now.partition == "gpu"
    rc, out, err = streams("sbatch_test_only_later.txt")
    later = SLURM.parse_estimate(out, err)
    # c3's cores are all taken: the forecast is the end of a running job, minutes away
    assert rc == 0 and later is not None and later.start - now.start > timedelta(minutes=1)
    rc, _out, err = streams("sbatch_test_only_refused.txt")
    refused = SLURM.classify_error(Operation.SUBMIT, rc, err)
    assert rc == 1 and refused is not None
    assert "Requested node configuration is not available" in str(refused)

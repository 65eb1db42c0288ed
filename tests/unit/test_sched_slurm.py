"""SlurmDialect: argv built, Slurm 22.05 output parsed, errors classified."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hpcbridge.errors import (
    JobNotFound,
    PermissionDenied,
    SchedulerError,
    SchedulerUnavailable,
    SubmitRefused,
)
from hpcbridge.jobs import JobState
from hpcbridge.schedulers import Operation, SlurmDialect, dialect_for

FIX = Path(__file__).parent.parent / "fixtures" / "slurm"
D = SlurmDialect()


def fx(name: str) -> str:
    return (FIX / name).read_text()


def test_submit_reads_the_script_on_stdin() -> None:
    cmd = D.submit_command("#!/bin/bash\necho hi\n")
    assert cmd.argv == ("env", "SLURM_UMASK=0077", "sbatch", "--parsable")
    assert cmd.stdin == b"#!/bin/bash\necho hi\n"
    assert not D.needs_script_file


@pytest.mark.parametrize("out, job_id", [("1234\n", "1234"), ("1235;tb\n", "1235"),
                                         ("sbatch: warning: x\n77\n", "77")])
def test_parse_submit(out: str, job_id: str) -> None:
    assert D.parse_submit(out) == job_id


def test_parse_submit_without_id_is_an_error() -> None:
    with pytest.raises(ValueError):
        D.parse_submit("Submitted batch job\n")


def test_one_status_query_for_many_ids() -> None:
    ids = [str(i) for i in range(1000, 1100)]
    argv = D.status_command(ids).argv
    assert argv[0] == "squeue"
    assert f"--jobs={','.join(ids)}" in argv
    assert "--states=all" in argv and "--noheader" in argv and "--array" in argv
    fmt = next(a for a in argv if a.startswith("--format="))
    assert "%j" not in fmt and "%k" not in fmt  # no user-controlled text in status output


@pytest.mark.parametrize("bad", ["1;rm -rf /", "--help", "12,13", "", "$(id)", "1 2"])
def test_malformed_ids_never_reach_argv(bad: str) -> None:
    with pytest.raises(ValueError):
        D.status_command(["1", bad])
    with pytest.raises(ValueError):
        D.cancel_command([bad])


def test_cancel_argv() -> None:
    assert D.cancel_command(["1", "2_3"]).argv == ("scancel", "--", "1", "2_3")


STATES = {
    "101": JobState.RUNNING, "102": JobState.PENDING, "103": JobState.PENDING,
    "104": JobState.SUSPENDED, "105": JobState.REQUEUED, "106": JobState.REQUEUED,
    "107": JobState.COMPLETING, "108": JobState.COMPLETED, "109": JobState.FAILED,
    "110": JobState.TIMEOUT, "111": JobState.NODE_FAIL, "112": JobState.OUT_OF_MEMORY,
    "113": JobState.CANCELLED, "114": JobState.PREEMPTED, "115": JobState.PENDING,
    "116": JobState.RUNNING,
}


def test_squeue_states_map_to_the_neutral_vocabulary() -> None:
    infos = D.parse_status(fx("squeue_mixed.txt"), list(STATES))
    assert {k: v.state for k, v in infos.items()} == STATES


def test_squeue_details() -> None:
    infos = D.parse_status(fx("squeue_mixed.txt"), ["101", "102", "103", "104", "116"])
    running = infos["101"]
    assert running.nodes == ("c1",) and running.user == "alice"
    assert running.time_left == timedelta(minutes=25, seconds=41)
    assert running.start_time == datetime(2026, 11, 23, 10, 0, 5)
    pending = infos["102"]
    assert pending.reason == "QOSMaxJobsPerUserLimit"
    assert pending.start_time == datetime(2026, 11, 23, 10, 30)  # estimated start
    assert pending.time_left is None
    assert infos["103"].start_time is None
    assert infos["104"].time_left == timedelta(minutes=18, seconds=12)
    assert infos["116"].nodes == ("c1", "c2", "c3")
    assert infos["116"].time_left == timedelta(days=1, hours=2, minutes=3, seconds=4)
    assert infos["101"].extra["account"] == "proj_a"


def test_array_ids_match_task_base_and_raw_id() -> None:
    infos = D.parse_status(fx("squeue_mixed.txt"), ["200", "200_1", "200_4", "202"])
    assert infos["200"].state is JobState.RUNNING  # most alive task speaks for the array
    assert infos["200"].nodes == ("c2", "c3")
    assert infos["200"].extra["array_tasks"] == "4"
    assert infos["200_1"].state is JobState.RUNNING
    assert infos["200_4"].state is JobState.PENDING
    assert infos["202"].state is JobState.RUNNING and infos["202"].nodes == ("c3",)


def test_ids_not_in_the_queue_are_left_out() -> None:
    assert D.parse_status(fx("squeue_mixed.txt"), ["999"]) == {}


def test_lines_that_are_not_records_are_ignored() -> None:
    text = "garbage|RUNNING\n\n" + "x|1|1|N/A|RUNNING|None|a|b|c|d|N/A|1:00\n"
    assert D.parse_status(text, ["1", "x"]) == {}


def test_sacct_final_states() -> None:
    ids = ["108", "109", "110", "111", "112", "113", "117", "200"]
    infos = D.parse_history(fx("sacct_final.txt"), ids)
    assert {k: v.state for k, v in infos.items()} == {
        "108": JobState.COMPLETED, "109": JobState.FAILED, "110": JobState.TIMEOUT,
        "111": JobState.NODE_FAIL, "112": JobState.OUT_OF_MEMORY,
        "113": JobState.CANCELLED, "117": JobState.CANCELLED, "200": JobState.FAILED,
    }
    assert infos["109"].exit_code == 1
    assert infos["113"].reason == "CANCELLED by 1001"
    assert infos["117"].nodes == ()
    assert infos["111"].nodes == ("c3",)


def test_history_argv() -> None:
    argv = D.history_command(["108", "109"]).argv
    assert argv[0] == "sacct" and "--jobs=108,109" in argv and "--parsable2" in argv
    assert SlurmDialect(history=False).history_command(["1"]) is None


def test_absent_job_is_terminal_and_says_why() -> None:
    info = D.absent_info("5")
    assert info.state.is_terminal and info.extra["absent"] == "true"


@pytest.mark.parametrize("name, op, kind", [
    ("squeue_controller_down.err", Operation.STATUS, SchedulerUnavailable),
    ("squeue_timeout.err", Operation.STATUS, SchedulerUnavailable),
    ("squeue_invalid_id.err", Operation.STATUS, JobNotFound),
    ("sbatch_controller_down.err", Operation.SUBMIT, SchedulerUnavailable),
    ("sbatch_qos_refused.err", Operation.SUBMIT, SubmitRefused),
    ("sbatch_bad_account.err", Operation.SUBMIT, SubmitRefused),
    ("scancel_permission.err", Operation.CANCEL, PermissionDenied),
    ("scancel_invalid.err", Operation.CANCEL, JobNotFound),
    ("sacct_dbd_down.err", Operation.HISTORY, SchedulerUnavailable),
])
def test_classify_errors(name: str, op: Operation, kind: type) -> None:
    err = D.classify_error(op, 1, fx(name))
    assert type(err) is kind


def test_submit_refusal_keeps_slurms_words() -> None:
    err = D.classify_error(Operation.SUBMIT, 1, fx("sbatch_qos_refused.err"))
    assert err is not None
    assert err.user_message == ("Job violates accounting/QOS policy (job submit limit, "
                                "user's size and/or time limits)")


def test_cancelling_a_finished_job_is_harmless() -> None:
    assert D.classify_error(Operation.CANCEL, 1, fx("scancel_done.err")) is None


def test_accounting_disabled_is_a_plain_scheduler_error() -> None:
    err = D.classify_error(Operation.HISTORY, 1, fx("sacct_disabled.err"))
    assert type(err) is SchedulerError


def test_partitions() -> None:
    parts = {p.name: p for p in D.parse_partitions(
        [fx("scontrol_partitions.txt"), fx("sinfo_shapes.txt")])}
    debug, gpu, long = parts["debug"], parts["gpu"], parts["long"]
    assert debug.default and debug.available
    assert debug.max_walltime == timedelta(minutes=30)
    assert debug.default_walltime == timedelta(minutes=10)
    assert debug.max_nodes == 1 and debug.total_cpus == 24
    assert debug.nodes == ("c1", "c2", "c3")
    assert debug.cores_per_node == 8 and debug.memory_per_node_mb == 16000
    assert debug.default_memory_per_cpu_mb == 1024 and debug.max_memory_per_node_mb is None
    assert debug.allow_accounts is None
    assert gpu.gpus_per_node == 2 and gpu.allow_accounts == ("proj_a", "proj_b")
    assert gpu.max_memory_per_node_mb == 16000 and gpu.max_nodes is None
    assert long.max_walltime is None and not long.available
    argvs = [c.argv[0] for c in D.partitions_commands()]
    assert argvs == ["scontrol", "sinfo"]


def test_associations() -> None:
    argv = D.associations_command("alice").argv
    assert argv[:2] == ("sacctmgr", "--noheader") and "users=alice" in argv
    assocs = D.parse_associations(fx("sacctmgr_assoc_alice.txt"))
    assert [(a.account, a.partition) for a in assocs] == [("proj_a", None), ("proj_a", "gpu")]
    gpu = assocs[1]
    assert gpu.qos == ("normal", "gpu") and gpu.default_qos == "normal"
    assert gpu.max_jobs == 2 and gpu.max_submit_jobs == 4
    assert gpu.max_walltime == timedelta(hours=2)
    assert gpu.max_tres_per_job == {"cpu": 8, "gres/gpu": 2}
    assert gpu.grp_tres_minutes == {"cpu": 60000}
    assert assocs[0].max_jobs is None


def test_qos() -> None:
    assert "names=normal,gpu" in D.qos_command(["normal", "gpu"]).argv
    qos = {q.name: q for q in D.parse_qos(fx("sacctmgr_qos.txt"))}
    assert qos["normal"].max_jobs_per_user == 4
    assert qos["normal"].max_submit_jobs_per_user == 8
    assert qos["normal"].max_tres_per_user == {"cpu": 16}
    assert qos["gpu"].max_walltime == timedelta(hours=2)
    assert qos["gpu"].flags == ("DenyOnLimit", "OverPartQOS")


def test_budget() -> None:
    argv = D.budget_commands("proj_b")[0].argv
    assert argv[0] == "sshare" and "--accounts=proj_b" in argv
    budget = D.parse_budget("proj_b", [fx("sshare_proj_b.txt")])
    assert budget is not None
    assert budget.limit_minutes == {"cpu": 1000}
    assert budget.used_minutes["cpu"] == 502
    assert budget.remaining("cpu") == 498
    assert budget.remaining("gres/gpu") is None
    assert D.parse_budget("proj_a", [fx("sshare_proj_a.txt")]) is None  # no limit set


def test_dialect_for() -> None:
    assert dialect_for("slurm").name == "slurm"
    assert dialect_for("pbs", history=True).name == "pbs"
    with pytest.raises(ValueError, match="slurm, pbs"):
        dialect_for("lsf")

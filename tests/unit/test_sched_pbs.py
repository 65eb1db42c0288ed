"""PbsDialect on PBS Pro's documented output and Slurm's torque wrapper output."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hpcbridge.errors import JobNotFound, PermissionDenied, SchedulerUnavailable, SubmitRefused
from hpcbridge.jobs import JobState
from hpcbridge.schedulers import Operation, PbsDialect
from hpcbridge.schedulers.pbs import parse_blocks

FIX = Path(__file__).parent.parent / "fixtures" / "pbs"
D = PbsDialect()


def fx(name: str) -> str:
    return (FIX / name).read_text()


def test_qsub_needs_a_file() -> None:
    assert D.needs_script_file
    assert D.submit_command("#!/bin/sh\n", "/tmp/x.sh").argv == ("qsub", "/tmp/x.sh")
    assert D.submit_command("#!/bin/sh\n", "/tmp/x.sh").stdin is None
    with pytest.raises(ValueError):
        D.submit_command("#!/bin/sh\n")


def test_parse_submit() -> None:
    assert D.parse_submit(fx("pbspro_qsub.out")) == "1245.pbs01.example.org"
    assert D.parse_submit("301\n") == "301"  # torque wrapper prints Slurm's id
    with pytest.raises(ValueError):
        D.parse_submit("qsub: submit error\n")


def test_argv() -> None:
    assert D.status_command(["1.s", "2"]).argv == ("qstat", "-f", "1.s", "2")
    assert D.cancel_command(["1.s"]).argv == ("qdel", "1.s")
    assert D.history_command(["1"]) is None  # torque wrappers have no -x
    assert PbsDialect(history=True).history_command(["1"]).argv == ("qstat", "-x", "-f", "1")
    with pytest.raises(ValueError):
        D.status_command(["1;id"])


def test_continuation_lines_are_joined() -> None:
    (_, attrs), *_ = parse_blocks(fx("pbspro_qstat_f.txt"), "Job Id")
    assert attrs["Variable_List"].endswith("PBS_O_QUEUE=workq,PBS_O_HOST=login01.example.org")
    assert "PBS_O_LOGNAME=alice," in attrs["Variable_List"]
    assert attrs["comment"].endswith("(cn02:ncpus=4:mem=8gb)")


def test_pbspro_states_and_details() -> None:
    ids = ["1234.pbs01", "1235.pbs01", "1236.pbs01", "1237.pbs01", "1238[].pbs01", "1239.pbs01"]
    infos = D.parse_status(fx("pbspro_qstat_f.txt"), ids)
    assert {k: v.state for k, v in infos.items()} == {
        "1234.pbs01": JobState.RUNNING, "1235.pbs01": JobState.PENDING,
        "1236.pbs01": JobState.PENDING, "1237.pbs01": JobState.SUSPENDED,
        "1238[].pbs01": JobState.RUNNING, "1239.pbs01": JobState.COMPLETING,
    }
    run = infos["1234.pbs01"]
    assert run.nodes == ("cn01", "cn02") and run.user == "alice" and run.partition == "workq"
    assert run.time_left == timedelta(minutes=49, seconds=55)
    assert run.start_time == datetime(2026, 11, 23, 10, 0, 2)
    queued = infos["1235.pbs01"]
    assert queued.reason.startswith("Not Running: Insufficient amount of resource: ncpus")
    assert queued.start_time == datetime(2026, 11, 23, 12, 30)
    assert infos["1236.pbs01"].reason == "held"
    assert infos["1237.pbs01"].time_left == timedelta(minutes=25)


def test_pbspro_history_exit_statuses() -> None:
    ids = [f"{n}.pbs01" for n in range(1240, 1245)]
    infos = PbsDialect(history=True).parse_history(fx("pbspro_qstat_xf.txt"), ids)
    assert [infos[i].state for i in ids] == [
        JobState.COMPLETED, JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED,
        JobState.OUT_OF_MEMORY]
    assert infos["1241.pbs01"].exit_code == 1


def test_torque_wrapper_output() -> None:
    infos = D.parse_status(fx("torque_wrapper_qstat_f.txt"), ["301", "302", "303"])
    assert infos["301"].state is JobState.RUNNING
    assert infos["301"].nodes == ("c1", "c2")
    assert infos["301"].start_time == datetime(2026, 11, 23, 10, 0, 2)  # printed as mtime
    assert infos["302"].state is JobState.PENDING and infos["302"].user == "bob"
    assert infos["303"].state is JobState.COMPLETED


def test_forged_block_from_a_job_name_is_not_trusted() -> None:
    text = fx("torque_wrapper_forged_name.txt")
    # alone, the forged block names job_state twice (the name's and the job's own)
    alone = D.parse_status(text, ["301"])["301"]
    assert alone.state is JobState.UNKNOWN and "job_state listed twice" in alone.reason
    # next to the genuine block, the id is ambiguous
    both = fx("torque_wrapper_qstat_f.txt") + text
    assert D.parse_status(both, ["301"])["301"].state is JobState.UNKNOWN


def test_partitions_from_queues() -> None:
    queues = {q.name: q for q in D.parse_partitions([fx("pbspro_qstat_Qf.txt")])}
    assert queues["workq"].max_walltime == timedelta(hours=24)
    assert queues["workq"].default_walltime == timedelta(hours=1) and queues["workq"].available
    assert not queues["long"].available and queues["long"].max_nodes == 4
    wrapper = D.parse_partitions([fx("torque_wrapper_qstat_Qf.txt")])
    assert [(q.name, q.available) for q in wrapper] == [("debug", True)]
    assert D.partitions_commands()[0].argv == ("qstat", "-Q", "-f")


def test_no_associations_or_budget_and_queue_limits_as_qos() -> None:
    assert D.associations_command("alice") is None and D.budget_commands("a") == []
    assert D.qos_command().argv == ("qstat", "-Q", "-f")
    unknown = dict(D.capabilities.unknown)
    assert "budget" in unknown and "association" in unknown


@pytest.mark.parametrize("name, rc, op, kind", [
    ("pbspro_unknown.err", 153, Operation.STATUS, JobNotFound),
    ("pbspro_finished.err", 35, Operation.STATUS, JobNotFound),
    ("pbspro_down.err", 1, Operation.STATUS, SchedulerUnavailable),
    ("torque_wrapper_down.err", 255, Operation.STATUS, SchedulerUnavailable),
    ("pbspro_qsub_limits.err", 1, Operation.SUBMIT, SubmitRefused),
    ("pbspro_qdel_unauthorized.err", 1, Operation.CANCEL, PermissionDenied),
])
def test_classify(name: str, rc: int, op: Operation, kind: type) -> None:
    assert type(D.classify_error(op, rc, fx(name))) is kind


def test_wrapper_silent_153_means_not_found() -> None:
    assert type(D.classify_error(Operation.STATUS, 153, "")) is JobNotFound


def test_qsub_refusal_words() -> None:
    err = D.classify_error(Operation.SUBMIT, 1, fx("pbspro_qsub_limits.err"))
    assert err.user_message == "Job violates queue and/or server resource limits"


def test_an_attribute_faked_by_a_name_makes_the_block_ambiguous() -> None:
    text = ("Job Id:\t7\n\tJob_Name = x\n\tJob_Owner = bob@login\n"
            "\tJob_Owner = alice@login\n\tjob_state = R\n")
    info = D.parse_status(text, ["7"])["7"]
    assert info.state is JobState.UNKNOWN and info.user is None


def test_orphan_listing_proposes_only_hub_names_seen_once() -> None:
    listing = ("Job Id:\t5\n\tJob_Name = hpcb-nb-bob\n\tJob_Owner = bob@login\n"
               "\tjob_state = R\n"
               "Job Id:\t6\n\tJob_Name = x\n"  # alice's job whose name fakes a block of 5
               "Job Id:\t5\n\tJob_Name = hpcb-nb-bob\n\tJob_Owner = bob@login\n"
               "\tjob_state = R\n"
               "Job Id:\t8\n\tJob_Name = hpcb-nb-carol\n\tJob_Owner = carol@login\n"
               "\tjob_state = Q\n"
               "Job Id:\t9\n\tJob_Name = analysis\n\tJob_Owner = carol@login\n"
               "\tjob_state = Q\n")
    names = {"hpcb-nb-bob", "hpcb-nb-carol"}
    jobs = D.parse_active_jobs(listing, names)
    assert [(j.job_id, j.user, j.name) for j in jobs] == [("8", "carol", "hpcb-nb-carol")]
    assert not D.filters_job_names  # the client confirms each with a query of that job
    assert [c.argv for c in D.active_jobs_commands(sorted(names))] == [("qstat", "-f")]
    with pytest.raises(ValueError):
        D.active_jobs_commands(["x\ny"])

"""What PBS tells Dask and the hub: queue limits per user, the user's jobs, job history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from hpcbridge.client import SchedulerClient
from hpcbridge.dask.facts import pick_qos
from hpcbridge.dask.limits import Limits, WorkerShape, plan_scale
from hpcbridge.jobs import JobState
from hpcbridge.schedulers import PbsDialect
from hpcbridge.transport.base import FileOpsMixin, Result

FIX = Path(__file__).parent.parent / "fixtures" / "pbs"


def fx(name: str) -> str:
    return (FIX / name).read_text()


class QstatNode(FileOpsMixin):
    """``qstat -f`` answers 153 (no such job: it left the queue), ``qstat -x -f`` the
    recorded history."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def run(self, argv: Sequence[str], *, user: str | None = None,
                  stdin: bytes | None = None, timeout: float | None = None) -> Result:
        self.calls.append(tuple(argv))
        if tuple(argv[:3]) == ("qstat", "-x", "-f"):
            return Result(0, fx("pbspro_qstat_xf.txt"), "")
        return Result(153, "", "qstat: Unknown Job Id 1246.pbs01.example.org\n")

    async def close(self) -> None:
        pass


async def test_a_pbspro_job_that_exited_3_is_failed_with_exit_code_3() -> None:
    node = QstatNode()
    client = SchedulerClient(PbsDialect(history=True), node)
    info = (await client.status(["1246.pbs01.example.org"]))["1246.pbs01.example.org"]
    assert (info.state, info.exit_code) == (JobState.FAILED, 3)
    assert info.nodes == ("cn02",)
    assert node.calls[-1][:3] == ("qstat", "-x", "-f")


async def test_without_history_a_job_that_left_is_not_called_failed() -> None:
    client = SchedulerClient(PbsDialect(history=False), QstatNode())
    info = (await client.status(["1246.pbs01.example.org"]))["1246.pbs01.example.org"]
    assert info.state is not JobState.FAILED and info.exit_code is None


def test_queue_limits_per_user() -> None:
    d = PbsDialect()
    alice = {q.name: q for q in d.parse_qos(fx("pbspro_qstat_Qf.txt"), "alice")}
    bob = {q.name: q for q in d.parse_qos(fx("pbspro_qstat_Qf.txt"), "bob")}
    assert alice["workq"].max_jobs_per_user == 6  # her own entry beats the generic one
    assert bob["workq"].max_jobs_per_user == 4
    assert bob["workq"].max_submit_jobs_per_user == 8
    assert bob["workq"].max_tres_per_user == {"cpu": 32}
    assert bob["workq"].max_tres_per_job == {"cpu": 64, "mem": 256 * 1024}
    assert bob["workq"].max_walltime == timedelta(hours=24)
    assert bob["long"].max_jobs_per_user is None
    torque = {q.name: q for q in d.parse_qos(fx("torque_wrapper_qstat_Qf.txt"), "bob")}
    assert torque["debug"].max_jobs_per_user is None


def test_dask_on_pbs_is_clamped_by_the_queue_and_says_what_is_unknown() -> None:
    d = PbsDialect()
    queues = d.parse_qos(fx("pbspro_qstat_Qf.txt"), "bob")
    qos = pick_qos(queues, None, None, "workq")
    assert qos is not None and qos.name == "workq"
    shape = WorkerShape(cores=4, memory_mb=4096, processes=1, walltime=timedelta(hours=1),
                        partition="workq")
    plan = plan_scale(20, shape, Limits(qos=qos, unknown=d.capabilities.unknown))
    assert plan.jobs == 4
    assert plan.message is not None
    assert "queue workq allows 4 jobs per user" in plan.message
    assert "not known on this scheduler" in plan.message and "budget" in plan.message


def test_user_jobs_are_hers_and_active_with_their_size() -> None:
    d = PbsDialect()
    jobs = d.parse_user_jobs(fx("pbspro_qstat_f.txt"), "alice")
    assert jobs and all(j.user == "alice" and j.state.is_active for j in jobs)
    assert (jobs[0].job_id, jobs[0].cores, jobs[0].memory_mb) == ("1234.pbs01.example.org",
                                                                    8, 16384)
    assert d.parse_user_jobs(fx("pbspro_qstat_f.txt"), "nobody-here") == []
    wrapper = d.parse_user_jobs(fx("torque_wrapper_qstat_f.txt"), "alice")
    assert all(j.user == "alice" for j in wrapper)

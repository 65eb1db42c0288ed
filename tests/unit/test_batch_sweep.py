"""Sweeps from the Create Job dialog (hpcbridge/batch/sweep.py, scheduler.py), job arrays in
the scheduler adapters, and refusals answered with 400 (hpcbridge/batch/app.py). The
testbed tests (tests/testbed/test_batch_live.py, test_batch_browser.py) run the same on
Slurm and through its torque wrappers."""
# ruff: noqa: F811 -- the batch backend's fixtures (make, home) are test_batch_scheduler's

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jupyter_scheduler.exceptions import InputUriError, SchedulerError
from tornado.web import HTTPError

from hpcbridge.batch.app import Refused, RefusalsAre400, refusal_in
from hpcbridge.batch.spec import RESULT_FILE, BatchSpec
from hpcbridge.batch.status import Shown, summary
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.profiles import JobRequest, render_script
from hpcbridge.schedulers import JobArray, PbsDialect, QosLimits, SlurmDialect, UserJob
from slurm_testbed.profiles import load_bundled_profile
from tests.unit.test_batch_scheduler import FakeSlurm, create, home, make, rows  # noqa: F401
from tests.unit.virtual_time import VirtualClock, let_tasks_run

# -- the adapters' job arrays ---------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "array", "line"), [
    (SlurmDialect(), JobArray(4, 2), "#SBATCH --array=0-3%2"),
    (SlurmDialect(), JobArray(4, 4), "#SBATCH --array=0-3"),  # the throttle holds nothing
    (SlurmDialect(), JobArray(4), "#SBATCH --array=0-3"),
    (PbsDialect(flavor="pbspro"), JobArray(10, 4), "#PBS -J 0-9%4"),
    (PbsDialect(flavor="pbspro", array_throttle=False), JobArray(10, 4), "#PBS -J 0-9"),
    (PbsDialect(flavor="torque"), JobArray(10, 4), "#PBS -t 0-9%4"),
])
def test_each_adapter_writes_its_array_directive(dialect, array, line) -> None:  # type: ignore[no-untyped-def]
    assert dialect.array_directives(array, []) == [line]
    assert dialect.capabilities.arrays


@pytest.mark.parametrize(("flavor", "output"), [
    # PBS Pro copies each subjob's output to -o: one path per task, its own placeholder
    ("pbspro", "#PBS -o /home/bob/jobs/sweep.^array_index^.log"),
    # Torque suffixes each task's output itself
    ("torque", "#PBS -o /home/bob/jobs/sweep.log"),
])
def test_pbs_array_tasks_do_not_share_one_output_path(flavor, output) -> None:  # type: ignore[no-untyped-def]
    single = ["#PBS -N sweep", "#PBS -j oe", "#PBS -o /home/bob/jobs/sweep.log", "#PBS -r n"]
    lines = PbsDialect(flavor=flavor).array_directives(JobArray(3), single)
    assert lines[:2] == single[:2] and lines[3] == "#PBS -r n"
    assert lines[2] == output
    assert lines[-1].startswith(("#PBS -J 0-2", "#PBS -t 0-2"))
    assert single[2] == "#PBS -o /home/bob/jobs/sweep.log"  # the single job's lines stay


def test_task_ids_and_index_variables_per_scheduler() -> None:
    assert SlurmDialect().array_task_id("42", 3) == "42_3"
    assert SlurmDialect().array_task_variables == ("SLURM_ARRAY_TASK_ID",)
    pro, torque = PbsDialect(flavor="pbspro"), PbsDialect(flavor="torque")
    assert pro.array_task_id("1234[].pbs01", 3) == "1234[3].pbs01"
    assert torque.array_task_id("1234[]", 0) == "1234[0]"
    assert pro.is_job_id("1234[3].pbs01")
    # Slurm's torque wrappers print a plain id: a task cannot be asked about alone
    assert torque.array_task_id("1234", 0) is None
    assert pro.array_task_variables[0] == "PBS_ARRAY_INDEX"
    assert torque.array_task_variables == ("PBS_ARRAYID", "SLURM_ARRAY_TASK_ID")


def test_arrays_of_no_tasks_are_refused() -> None:
    with pytest.raises(ValueError, match="not a job array"):
        JobArray(0)
    with pytest.raises(ValueError, match="not a job array"):
        JobArray(3, 0)


@pytest.mark.parametrize(("profile", "line"), [
    ("testbed", "#SBATCH --array=0-4%2"), ("testbed-pbs", "#PBS -t 0-4%2")])
def test_rendered_scripts_carry_the_array_among_the_directives(profile, line) -> None:  # type: ignore[no-untyped-def]
    script = render_script(load_bundled_profile(profile, {}),
                           JobRequest(user="alice", job_name="j", command=("python",)),
                           array=JobArray(5, 2))
    lines = script.splitlines()
    assert [ln for ln in lines if ln == line] == [line]
    assert lines.index(line) < lines.index("set -e")  # before the first command


# -- what a sweep's entry says --------------------------------------------------------------

def _info(state: JobState, **kw) -> JobInfo:  # type: ignore[no-untyped-def]
    return JobInfo("x", state, **kw)


def test_the_entry_of_a_sweep_counts_its_tasks() -> None:
    running = _info(JobState.RUNNING, nodes=("c2",))
    tasks = [(_info(JobState.COMPLETED), {"ok": True})] * 3 + [(running, None)]
    views = [Shown("COMPLETED", "")] * 3 + [Shown("IN_PROGRESS", "", running=True)]
    entry = summary("12", tasks, views)
    assert (entry.status, entry.message) == ("IN_PROGRESS",
                                             "job 12: 3 of 4 completed, 1 running on c2")
    queued = [(_info(JobState.PENDING, reason="QOSMaxJobsPerUserLimit"), None)] * 2
    entry = summary("12", [*queued, (None, None)],
                    [Shown("QUEUED", "")] * 3)
    assert (entry.status, entry.message) == (
        "QUEUED", "job 12: 0 of 3 completed, 3 queued (QOSMaxJobsPerUserLimit)")
    stopped = summary("12", [(_info(JobState.CANCELLED), None)] * 2,
                      [Shown("STOPPED", "", ended=True)] * 2)
    assert (stopped.status, stopped.message, stopped.ended) == (
        "STOPPED", "job 12: 0 of 2 completed, 2 cancelled", True)
    outage = summary("12", [(_info(JobState.UNKNOWN), None)], [Shown("QUEUED", "")],
                     previous="IN_PROGRESS")
    assert outage.status == "IN_PROGRESS" and "not answering" in outage.message


# -- sweeps from the dialog -----------------------------------------------------------------

SWEEP = "- {n: 1}\n- {n: 2}\n- {n: 3}\n- {n: 4}\n"


async def test_a_sweep_file_in_the_dialog_is_one_throttled_array(make, home: Path) -> None:
    (home / "work" / "sweep.yaml").write_text(SWEEP)
    slurm, clock = FakeSlurm(), VirtualClock()
    slurm.qos_limits = [QosLimits("normal", max_jobs_per_user=3, max_submit_jobs_per_user=8)]
    sched = make(slurm, clock)
    job_id = await sched.create_job(create(parameters={"sweep": "work/sweep.yaml"}))
    folder = home / "jobs" / f"nb-{job_id}"
    spec = BatchSpec.read(folder)
    assert spec.sweep == [{"n": i} for i in (1, 2, 3, 4)] and spec.parameters == {}
    assert spec.task_variables == ["SLURM_ARRAY_TASK_ID"]
    (_user, script), = slurm.scripts  # ONE submission
    assert [ln for ln in script.splitlines() if "--array" in ln] == ["#SBATCH --array=0-3%3"]

    await let_tasks_run()
    assert slurm.queries == [["101_0", "101_1", "101_2", "101_3"]]  # one query, every task
    for i in range(3):
        slurm.set(f"101_{i}", JobState.RUNNING, nodes=(f"c{i + 1}",))
    slurm.set("101_3", JobState.PENDING, reason="JobArrayTaskLimit")
    await clock.advance(10)
    job = await sched.get_job(job_id)
    assert (job.status.value, job.status_message) == (
        "IN_PROGRESS", "job 101: 0 of 4 completed, 3 running on c1, c2, c3, 1 queued "
                       "(JobArrayTaskLimit)")
    for i in range(4):
        (folder / f"task-{i}").mkdir()
        (folder / f"task-{i}" / spec.outputs["ipynb"]).write_text("{}")
        (folder / f"task-{i}" / RESULT_FILE).write_text(json.dumps({"ok": True, "node": "c1"}))
        slurm.set(f"101_{i}", JobState.COMPLETED, exit_code=0)
    await clock.advance(10)
    job = await sched.get_job(job_id)
    assert (job.status.value, job.status_message) == ("COMPLETED",
                                                      "job 101: 4 of 4 completed")
    assert len(slurm.queries) == 3  # one per interval, whatever the number of tasks
    links = {f.file_format: (f.display_name, f.file_path) for f in job.job_files}
    assert links["task-2-ipynb"] == ("Task 2 (n=3): Notebook",
                                     f"jobs/nb-{job_id}/task-2/{spec.outputs['ipynb']}")
    assert links["task-2-html"][1] is None  # the fake runner wrote no HTML
    assert links["input"][1] == f"jobs/nb-{job_id}/nb.ipynb"
    await clock.advance(30)
    assert len(slurm.queries) == 3  # an ended sweep is no longer asked about


async def test_a_stopped_sweep_cancels_its_array(make, home: Path) -> None:
    (home / "work" / "sweep.yaml").write_text(SWEEP)
    slurm, clock = FakeSlurm(), VirtualClock()
    sched = make(slurm, clock)
    job_id = await sched.create_job(create(parameters={"sweep": "work/sweep.yaml"}))
    await let_tasks_run()
    await sched.stop_job(job_id)
    assert slurm.cancelled == [("alice", ["101"])]  # the array, every task
    for i in range(4):
        slurm.set(f"101_{i}", JobState.CANCELLED)
    await clock.advance(10)
    job = await sched.get_job(job_id)
    assert (job.status.value, job.status_message) == ("STOPPED",
                                                      "job 101: 0 of 4 completed, 4 cancelled")


@pytest.mark.parametrize(("sweep", "others", "message"), [
    ("- {n: 1}\n- {m: 2}\n", 0,
     "parameter 'm' is not set in the notebook's parameters cell"),
    ("".join(f"- {{n: {i}}}\n" for i in range(9)), 0,
     "a sweep of 9 runs does not fit: your QOS normal lets you queue 8 jobs at once and you "
     "have 0 queued or running, so at most 8 runs fit now"),
    (SWEEP, 5, "a sweep of 4 runs does not fit: your QOS normal lets you queue 8 jobs at "
               "once and you have 5 queued or running, so at most 3 runs fit now"),
    ("n: 1\n", 0, "the sweep file 'work/sweep.yaml' is not a list of parameter sets"),
    (None, 0, "there is no sweep file 'work/sweep.yaml'"),
])
async def test_a_sweep_that_cannot_run_is_refused_and_leaves_nothing(
        make, home: Path, sweep, others, message) -> None:  # type: ignore[no-untyped-def]
    if sweep is not None:
        (home / "work" / "sweep.yaml").write_text(sweep)
    slurm = FakeSlurm()
    slurm.user_job_list = [UserJob(str(i), JobState.RUNNING, None, "alice", 1, 100, "x")
                           for i in range(others)]
    sched = make(slurm, VirtualClock())
    with pytest.raises(Refused) as refused:
        await sched.create_job(create(parameters={"sweep": "work/sweep.yaml"}))
    assert message in str(refused.value)
    assert not (home / "jobs").exists() and rows(sched) == [] and slurm.scripts == []


async def test_a_sweep_file_outside_the_home_is_refused(make, home: Path, tmp_path: Path
                                                        ) -> None:
    (tmp_path / "elsewhere.yaml").write_text(SWEEP)
    sched = make(FakeSlurm(), VirtualClock())
    with pytest.raises(Refused, match=r"the sweep file '\.\./elsewhere\.yaml' is outside "
                                      r"your home folder"):
        await sched.create_job(create(parameters={"sweep": "../elsewhere.yaml"}))
    assert rows(sched) == []


# -- refusals are 400 -----------------------------------------------------------------------

def test_refusals_behind_jupyter_schedulers_500_are_found() -> None:
    def wrapped(exc: Exception) -> HTTPError:
        try:
            try:
                raise exc
            except Exception as inner:
                raise HTTPError(500, str(inner)) from inner
        except HTTPError as outer:
            return outer

    assert isinstance(refusal_in(wrapped(Refused("over the limit"))), Refused)
    assert isinstance(refusal_in(wrapped(InputUriError("x.ipynb"))), InputUriError)
    assert refusal_in(wrapped(SchedulerError("database locked"))) is None
    assert refusal_in(wrapped(RuntimeError("bug"))) is None

    sent = []

    class Base:
        def send_error(self, status_code: int = 500, **kwargs) -> None:  # type: ignore[no-untyped-def]
            sent.append(status_code)

    class Handler(RefusalsAre400, Base):
        pass

    err = wrapped(Refused("over the limit"))
    Handler().send_error(500, exc_info=(HTTPError, err, None))
    Handler().send_error(500, exc_info=(HTTPError, wrapped(RuntimeError("bug")), None))
    Handler().send_error(409, exc_info=(HTTPError, err, None))
    assert sent == [400, 500, 409]


def test_the_extensions_handlers_are_jupyter_schedulers_answering_refusals_400() -> None:
    from jupyter_scheduler.extension import SchedulerApp
    from jupyter_scheduler.handlers import JobHandler

    from hpcbridge.batch.app import HpcSchedulerApp

    theirs, ours = dict(SchedulerApp.handlers), dict(HpcSchedulerApp.handlers)
    assert ours.keys() == theirs.keys() and "scheduler/jobs" in ours
    for route, handler in ours.items():
        assert issubclass(handler, theirs[route]) and issubclass(handler, RefusalsAre400)
    assert issubclass(ours["scheduler/jobs"], JobHandler)
    assert HpcSchedulerApp.name == SchedulerApp.name  # its settings and config keep their name

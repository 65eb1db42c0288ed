"""HpcScheduler (hpcbridge/batch/scheduler.py) over jupyter-scheduler's own database, with a
fake scheduler behind the client's methods and the poller in virtual time. The testbed
test (tests/testbed/test_batch_live.py) runs the same through a real server and Slurm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jupyter_scheduler.exceptions import InputUriError, SchedulerError
from jupyter_scheduler.models import CreateJob, ListJobsQuery
from jupyter_scheduler.orm import Job, create_tables
from traitlets.utils.importstring import import_item

from hpcbridge.batch.environments import ProfileEnvironments
from hpcbridge.batch.scheduler import BatchFeatures, HpcScheduler
from hpcbridge.batch.spec import RESULT_FILE, BatchSpec
from hpcbridge.errors import SubmitRefused
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.poller import StatusPoller
from hpcbridge.profiles.jobcopy import JOB_PROFILE_ENV, job_copy_json
from hpcbridge.schedulers import Association, QosLimits, SlurmDialect, UserJob
from hpcbridge.spawner import launch
from slurm_testbed.profiles import load_bundled_profile
from tests.unit.virtual_time import VirtualClock, let_tasks_run


class FakeSlurm:
    """submit / cancel / status as the scheduler client offers them."""

    dialect = SlurmDialect()

    def __init__(self) -> None:
        #: the user's QOS and her other jobs, as the scheduler would tell them
        self.qos_limits = [QosLimits("normal", max_jobs_per_user=4,
                                     max_submit_jobs_per_user=8)]
        self.user_job_list: list[UserJob] = []
        self.scripts: list[tuple[str, str]] = []
        self.log_folders: list[str | None] = []
        self.cancelled: list[tuple[str, list[str]]] = []
        self.queries: list[list[str]] = []
        self.states: dict[str, JobInfo] = {}
        self.refuse: Exception | None = None

    async def submit(self, user: str, script: str, log_folder: str | None = None) -> str:
        self.log_folders.append(log_folder)
        if self.refuse:
            raise self.refuse
        job_id = str(101 + len(self.scripts))
        self.scripts.append((user, script))
        self.states[job_id] = JobInfo(job_id, JobState.PENDING, reason="Priority", user=user)
        return job_id

    async def cancel(self, user: str, ids: list[str]) -> None:
        self.cancelled.append((user, list(ids)))

    async def status(self, ids, *, as_user=None) -> dict[str, JobInfo]:  # type: ignore[no-untyped-def]
        self.queries.append(list(ids))
        return {i: self.states[i] for i in ids}

    async def qos(self, names=(), *, as_user=None) -> list[QosLimits]:  # type: ignore[no-untyped-def]
        return self.qos_limits

    async def associations(self, user: str) -> list[Association]:
        return [Association("proj_a", user, default_qos="normal")]

    async def user_jobs(self, user: str) -> list[UserJob]:
        return self.user_job_list

    def set(self, job_id: str, state: JobState, **kw) -> None:  # type: ignore[no-untyped-def]
        self.states[job_id] = JobInfo(job_id, state, user="alice", **kw)


PARAMETERIZED = {
    "cells": [
        {"cell_type": "code", "source": "n = 1", "metadata": {"tags": ["parameters"]},
         "outputs": [], "execution_count": None},
        {"cell_type": "code", "source": "print(n * 2)", "metadata": {}, "outputs": [],
         "execution_count": None},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def in_server(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The environment of a server the spawner started: the job copy of its profile."""
    monkeypatch.delenv("HPCBRIDGE_SITE_PROFILE", raising=False)
    monkeypatch.delenv("HPCBRIDGE_CLUSTER", raising=False)
    monkeypatch.setenv(JOB_PROFILE_ENV, job_copy_json(load_bundled_profile("testbed")))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "alice"
    (home / "work").mkdir(parents=True)
    (home / "work" / "nb.ipynb").write_text(json.dumps(PARAMETERIZED))
    return home


@pytest.fixture
def make(tmp_path: Path, home: Path, monkeypatch):  # type: ignore[no-untyped-def]
    in_server(monkeypatch)
    db = f"sqlite:///{tmp_path}/scheduler.sqlite"
    create_tables(db)
    made = []

    def make(slurm: FakeSlurm, clock: VirtualClock) -> HpcScheduler:
        poller = StatusPoller(slurm, interval=10.0, jitter=0.0, clock=clock)
        sched = HpcScheduler(root_dir=str(home), environments_manager=ProfileEnvironments(),
                             db_url=db, client=slurm, poller=poller, user="alice")
        made.append(sched)
        return sched

    yield make
    for sched in made:
        if sched.poller is not None:
            sched.poller._task and sched.poller._task.cancel()


def create(**kw) -> CreateJob:  # type: ignore[no-untyped-def]
    fields = {"input_uri": "work/nb.ipynb", "runtime_environment_name": "default",
              "compute_type": "debug", "name": "run", "output_formats": ["ipynb", "html"],
              "parameters": {"n": "7"}}
    return CreateJob(**{**fields, **kw})


def rows(sched: HpcScheduler) -> list[Job]:
    with sched.db_session() as session:
        return session.query(Job).all()


async def test_create_job_stages_submits_as_the_user_and_records(make, home: Path) -> None:
    slurm, clock = FakeSlurm(), VirtualClock()
    sched = make(slurm, clock)
    job_id = await sched.create_job(create())
    folder = home / "jobs" / f"nb-{job_id}"
    spec = BatchSpec.read(folder)
    assert spec.parameters == {"n": 7} and spec.scheduler_job_id == "101"
    assert (folder / "nb.ipynb").read_text() == json.dumps(PARAMETERIZED)
    assert folder.stat().st_mode & 0o777 == 0o700
    (user, script), = slurm.scripts
    assert user == "alice"
    (logs,) = slurm.log_folders  # made before submitting: the scheduler does not make it
    assert logs and logs.endswith("/.hpcbridge/logs") and f"--output={logs}/%x-%j.log" in script
    assert "#SBATCH --partition=debug" in script and "#SBATCH --time=00:30:00" in script
    assert "#SBATCH --job-name=hpcb-batch" in script
    assert script.rstrip().endswith(
        f"exec /opt/hpcbridge/venv/bin/python -m hpcbridge.batch.runner {folder}")
    job = await sched.get_job(job_id)
    assert (job.status.value, job.status_message) == ("QUEUED", "job 101: submitted")
    assert sorted(spec.outputs) == ["html", "ipynb"]

    await let_tasks_run()  # the poller's first round follows the submission
    job = await sched.get_job(job_id)
    assert (job.status.value, job.status_message) == ("QUEUED", "job 101: queued (Priority)")

    slurm.set("101", JobState.RUNNING, nodes=("c1",))
    await clock.advance(10)
    job = await sched.get_job(job_id)
    assert (job.status.value, job.status_message) == ("IN_PROGRESS", "job 101: running on c1")
    assert job.start_time and not job.end_time

    for name in spec.outputs.values():
        (folder / name).write_text("{}")
    (folder / RESULT_FILE).write_text(json.dumps({"ok": True, "node": "c1"}))
    slurm.set("101", JobState.COMPLETED, exit_code=0)
    await clock.advance(10)
    job = await sched.get_job(job_id)
    assert job.status.value == "COMPLETED" and job.end_time
    assert job.status_message == "job 101: completed on c1 (exit code 0)"
    links = {f.file_format: f.file_path for f in job.job_files}
    assert links["ipynb"] == f"jobs/nb-{job_id}/{spec.outputs['ipynb']}"
    assert links["html"] and links["input"] == f"jobs/nb-{job_id}/nb.ipynb"
    assert job.downloaded  # the outputs are already where the list links to
    await clock.advance(30)
    assert len(slurm.queries) == 3  # a finished job is no longer asked about


@pytest.mark.parametrize(("change", "message"), [
    ({"runtime_environment_parameters": {"partition": "debug", "walltime": "01:00:00"}},
     "walltime 01:00:00 is over partition debug's max_walltime 00:30:00"),
    ({"runtime_environment_parameters": {"cores": 64}}, "cores_per_node 8"),
    ({"parameters": {"m": "1"}}, "parameter 'm' is not set in the notebook's parameters cell"),
    ({"input_uri": "../bob/nb.ipynb"}, "outside your home folder"),
    ({"input_uri": "work/link.ipynb"}, "outside your home folder"),
    ({"input_uri": "work/missing.ipynb"}, "does not exist"),
    ({"output_formats": ["pdf"]}, "output format 'pdf' is not offered"),
    ({"runtime_environment_name": "nope"}, "no such environment 'nope'"),
    ({"compute_type": "huge"}, "no such preset 'huge'"),
])
async def test_a_refused_request_leaves_nothing(make, home: Path, tmp_path: Path, change,
                                                message) -> None:
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "nb.ipynb").write_text(json.dumps(PARAMETERIZED))
    (home / "work" / "link.ipynb").symlink_to(tmp_path / "bob" / "nb.ipynb")
    slurm = FakeSlurm()
    sched = make(slurm, VirtualClock())
    with pytest.raises((SchedulerError, InputUriError), match=message):
        await sched.create_job(create(**change))
    assert not (home / "jobs").exists() and rows(sched) == [] and slurm.scripts == []


async def test_a_submission_the_scheduler_refuses_leaves_nothing(make, home: Path) -> None:
    slurm = FakeSlurm()
    slurm.refuse = SubmitRefused("Job violates accounting/QOS policy")
    sched = make(slurm, VirtualClock())
    with pytest.raises(SchedulerError, match="the scheduler refused the job: Job violates"):
        await sched.create_job(create())
    assert list((home / "jobs").iterdir()) == [] and rows(sched) == []


async def test_twenty_jobs_cost_one_status_query_per_interval(make) -> None:
    slurm, clock = FakeSlurm(), VirtualClock()
    sched = make(slurm, clock)
    for _ in range(20):
        await sched.create_job(create())
    await let_tasks_run()
    await clock.advance(10)
    await clock.advance(10)
    assert [len(q) for q in slurm.queries] == [20, 20, 20]
    assert sched.status_queries == 3


async def test_a_failed_run_shows_the_failing_cell(make, home: Path) -> None:
    slurm, clock = FakeSlurm(), VirtualClock()
    sched = make(slurm, clock)
    job_id = await sched.create_job(create())
    folder = home / "jobs" / f"nb-{job_id}"
    (folder / RESULT_FILE).write_text(json.dumps({"ok": False, "failing_cell": {
        "cell": 2, "execution_count": 2, "ename": "ValueError", "evalue": "n must be odd",
        "source": "check(n)"}}))
    slurm.set("101", JobState.FAILED, exit_code=1)
    await let_tasks_run()
    job = await sched.get_job(job_id)
    assert job.status.value == "FAILED"
    assert job.status_message == ("job 101: failed (exit code 1): cell 2 (In [2]: check(n)): "
                                  "ValueError: n must be odd")


async def test_stop_cancels_the_job_in_the_scheduler(make) -> None:
    slurm, clock = FakeSlurm(), VirtualClock()
    sched = make(slurm, clock)
    job_id = await sched.create_job(create())
    await let_tasks_run()
    await sched.stop_job(job_id)
    assert slurm.cancelled == [("alice", ["101"])]
    assert (await sched.get_job(job_id)).status.value == "STOPPING"
    await clock.advance(10)  # still pending: the cancel is on its way
    assert (await sched.get_job(job_id)).status.value == "STOPPING"
    slurm.set("101", JobState.CANCELLED)
    await clock.advance(10)
    job = await sched.get_job(job_id)
    assert (job.status.value, job.status_message) == ("STOPPED", "job 101: cancelled")
    await sched.stop_job(job_id)  # a stopped job is not cancelled again
    assert len(slurm.cancelled) == 1


async def test_delete_cancels_a_running_job_and_keeps_its_folder(make, home: Path) -> None:
    slurm = FakeSlurm()
    sched = make(slurm, VirtualClock())
    job_id = await sched.create_job(create())
    await sched.delete_job(job_id)
    assert slurm.cancelled == [("alice", ["101"])] and rows(sched) == []
    assert (home / "jobs" / f"nb-{job_id}" / "nb.ipynb").exists()


async def test_a_restarted_server_tracks_its_jobs_again(make) -> None:
    slurm, clock = FakeSlurm(), VirtualClock()
    first = make(slurm, clock)
    done = await first.create_job(create())
    running = await first.create_job(create())
    slurm.set("101", JobState.COMPLETED, exit_code=0)
    await let_tasks_run()
    assert (await first.get_job(done)).status.value == "FAILED"  # no result file: failed
    first.poller._task.cancel()

    slurm.queries.clear()
    slurm.set("102", JobState.RUNNING, nodes=("c3",))
    second = make(slurm, clock)
    listed = await second.list_jobs(ListJobsQuery())
    assert {j.job_id for j in listed.jobs} == {done, running}
    await let_tasks_run()
    assert slurm.queries == [["102"]]
    assert (await second.get_job(running)).status_message == "job 102: running on c3"


async def test_an_outage_keeps_the_jobs_status(make) -> None:
    slurm, clock = FakeSlurm(), VirtualClock()
    sched = make(slurm, clock)
    job_id = await sched.create_job(create())
    slurm.set("101", JobState.RUNNING, nodes=("c1",))
    await let_tasks_run()

    async def down(ids, *, as_user=None):  # type: ignore[no-untyped-def]
        raise OSError("slurmctld not responding")

    slurm.status = down  # type: ignore[method-assign]
    await clock.advance(10)
    job = await sched.get_job(job_id)
    assert job.status.value == "IN_PROGRESS" and "state unknown" in job.status_message


def test_the_dialog_offers_the_profiles_environments_and_presets(monkeypatch) -> None:
    in_server(monkeypatch)
    envs = ProfileEnvironments().list_environments()
    assert [e.name for e in envs] == ["default", "modules-demo"]
    assert envs[0].compute_types == ["small", "debug", "gpu"]
    assert envs[0].output_formats == ["ipynb", "html"]
    features = BatchFeatures.supported_features(BatchFeatures)
    assert features["parameters"] and features["stop_job"] and features["job_definition"]


def test_servers_the_spawner_starts_use_the_batch_backend() -> None:
    argv = launch.server_argv()
    assert argv[0] == "jupyterhub-singleuser" and argv[1:] == list(launch.BATCH_ARGS)
    # jupyter-scheduler's extension with handlers that answer refusals with 400
    assert argv[1:3] == ["--ServerApp.jpserver_extensions=jupyter_scheduler=False",
                         "--ServerApp.jpserver_extensions=hpcbridge.batch.app=True"]
    (point,) = import_item("hpcbridge.batch.app._jupyter_server_extension_points")()
    assert issubclass(point["app"], import_item("jupyter_scheduler.extension.SchedulerApp"))
    classes = dict(a.removeprefix("--SchedulerApp.").split("=") for a in argv[3:])
    assert import_item(classes["scheduler_class"]) is HpcScheduler
    assert import_item(classes["environment_manager_class"]) is ProfileEnvironments


async def test_run_job_with_input_folder(make, home: Path, tmp_path: Path,
                                         monkeypatch) -> None:
    """JupyterLab's "Run job with input folder": what the notebook's folder holds is
    copied into the job's folder, checked as `hpcbridge run --input` checks its paths
    (hidden entries stay behind); refused with nothing stored outside the home, over
    2 GiB, or for a notebook in the home folder itself (its folder holds ~/jobs)."""
    work = home / "work"
    (work / "data").mkdir()
    (work / "data" / "t.csv").write_text("1,2\n")
    (work / "config.yaml").write_text("k: 1\n")
    (work / ".ipynb_checkpoints").mkdir()
    slurm = FakeSlurm()
    sched = make(slurm, VirtualClock())
    job_id = await sched.create_job(create(package_input_folder=True))
    folder = home / "jobs" / f"nb-{job_id}"
    assert BatchSpec.read(folder).inputs == ["config.yaml", "data"]
    assert (folder / "data" / "t.csv").read_text() == "1,2\n"
    assert not (folder / ".ipynb_checkpoints").exists()
    assert len(slurm.scripts) == 1 and len(rows(sched)) == 1

    async def attempt(**change) -> None:  # type: ignore[no-untyped-def]
        await sched.create_job(create(package_input_folder=True, **change))

    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "elsewhere").symlink_to(outside)
    with pytest.raises(SchedulerError, match="outside your home folder"):
        await attempt()
    (work / "elsewhere").unlink()
    monkeypatch.setattr("hpcbridge.batch.inputs.MAX_INPUT_BYTES", 3)
    with pytest.raises(SchedulerError, match="inputs are larger than"):
        await attempt()
    monkeypatch.setattr("hpcbridge.batch.inputs.MAX_INPUT_BYTES", 2 * 2**30)
    (home / "nb.ipynb").write_text(json.dumps(PARAMETERIZED))
    with pytest.raises(SchedulerError, match="holds the jobs' folder"):
        await attempt(input_uri="nb.ipynb")
    assert len(list((home / "jobs").iterdir())) == 1 and len(slurm.scripts) == 1
    assert len(rows(sched)) == 1

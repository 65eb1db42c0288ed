"""The walltime left to a notebook server's job, as its JupyterLab shows it."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from hpcbridge.errors import SchedulerUnavailable
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.lab import walltime
from hpcbridge.lab.walltime import JobClock, job_id_of
from hpcbridge.schedulers.registry import dialect_for
from hpcbridge.spawner.launch import lab_settings


class Scheduler:
    """A client whose status answers come from a list (an exception is raised)."""

    def __init__(self, *answers) -> None:
        self.dialect = dialect_for("slurm")
        self.answers = list(answers)
        self.asked = 0

    async def status(self, job_ids):
        self.asked += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return {job_ids[0]: answer}


def running(left_s: int | None) -> JobInfo:
    return JobInfo("42", JobState.RUNNING,
                   time_left=None if left_s is None else timedelta(seconds=left_s))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_job_id_is_the_schedulers_variable_when_the_dialect_takes_it() -> None:
    client = Scheduler()
    assert job_id_of(client, {"SLURM_JOB_ID": "42"}) == "42"  # type: ignore[arg-type]
    assert job_id_of(client, {"SLURM_JOB_ID": "42;x"}) is None  # type: ignore[arg-type]
    assert job_id_of(client, {}) is None  # type: ignore[arg-type]


async def test_the_clock_counts_down_between_questions_and_asks_again_later() -> None:
    clock = Clock()
    client = Scheduler(running(900), running(2000))
    job = JobClock("42", client, refresh=300, clock=clock)  # type: ignore[arg-type]
    assert await job.answer() == {"job_id": "42", "left": 900, "warn_before": 600}
    clock.now += 299
    assert await job.left() == 601 and client.asked == 1
    clock.now += 1  # the limit was raised meanwhile: the next question shows it
    assert await job.left() == 2000 and client.asked == 2


async def test_a_scheduler_that_cannot_answer_leaves_the_last_count_running() -> None:
    clock = Clock()
    client = Scheduler(running(900), SchedulerUnavailable("down"), running(None))
    job = JobClock("42", client, refresh=10, clock=clock)  # type: ignore[arg-type]
    assert await job.left() == 900
    clock.now += 20
    assert await job.left() == 880
    clock.now += 1000
    assert await job.left() is None  # asked again: no time left known (not running)


async def test_a_job_past_its_walltime_has_zero_left() -> None:
    clock = Clock()
    job = JobClock("42", Scheduler(running(5)), clock=clock)  # type: ignore[arg-type]
    await job.left()
    clock.now += 60
    assert await job.left() == 0


def test_the_launcher_enables_the_server_extension_and_the_prebuilt_lab_extension() -> None:
    args = lab_settings({})
    assert "--ServerApp.jpserver_extensions=hpcbridge.lab.walltime=True" in args
    assert f"--LabApp.extra_labextensions_path={walltime.LABEXTENSIONS}" in args


def test_the_lab_extension_loads_a_file_named_by_its_content() -> None:
    # JupyterLab serves an extension's static files as immutable: a changed file needs a
    # new name, or browsers keep running the old one
    folder = walltime.LABEXTENSIONS / "@hpcbridge" / "walltime"
    package = json.loads((folder / "package.json").read_text())
    load = folder / package["jupyterlab"]["_build"]["load"]
    source = load.read_bytes()
    assert hashlib.sha256(source).hexdigest()[:12] in load.name
    assert package["name"].encode() in source
    assert walltime.ROUTE.encode() in source
    assert [p.name for p in (folder / "static").iterdir()] == [load.name]

"""jupyter-scheduler's backend for notebooks as batch jobs (``SchedulerApp.scheduler_class``).

"Create Job" in JupyterLab runs :meth:`HpcScheduler.create_job` in the user's notebook
server, which is itself a job on a compute node, as the user. It checks the request
through the site profile's gate and the notebook's parameters cell *before* anything is
stored: a refusal leaves no folder, no database row and no job. Then it makes the job's
folder in the server's root (``jobs/<notebook>-<id>/``), copies the notebook there,
renders a batch script through the profile and the scheduler adapter that runs
``python -m hpcbridge.batch.runner FOLDER`` (papermill), and submits it as the user
through a scheduler client. The job is a batch job of its own: it runs on when the
server stops, and the folder (``hpcbridge-job.json``) keeps its scheduler id for the
server's next start.

Status comes from one :class:`~hpcbridge.poller.StatusPoller` per server: one query per
interval for every job of the list that may still be queued or running; each change is
written into jupyter-scheduler's database, which its job list reads. Persistence, the
list, the file links and the REST API stay jupyter-scheduler's (this subclasses its
``Scheduler``; the methods it relies on are named in docs/architecture.md).
"""

from __future__ import annotations

import getpass
import os
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from jupyter_scheduler.exceptions import IdempotencyTokenError, InputUriError, SchedulerError
from jupyter_scheduler.executors import ExecutionManager
from jupyter_scheduler.models import (
    CreateJob,
    DescribeJob,
    DescribeJobDefinition,
    JobFeature,
    JobFile,
    ListJobsQuery,
    ListJobsResponse,
)
from jupyter_scheduler.orm import Job
from jupyter_scheduler.scheduler import Scheduler
from jupyter_scheduler.utils import get_utc_timestamp
from traitlets import Any as AnyTrait
from traitlets import Float, Unicode, default
from traitlets import Type as TypeTrait

from hpcbridge.batch.app import Refused
from hpcbridge.batch.environments import CLUSTER_ENV
from hpcbridge.batch.inputs import folder_inputs
from hpcbridge.batch.jobdefs import RecurringJobs
from hpcbridge.batch.request import notebook_parameters
from hpcbridge.sessions.complete import complete_in_background
from hpcbridge.batch.spec import FORMATS, BatchSpec, folder_name, read_result
from hpcbridge.batch.status import ACTIVE, shown
from hpcbridge.batch.submit import Prepared, fit_sweep, prepare, read_notebook, submit, unstage
from hpcbridge.batch.sweep import Run, split_sweep, task_ids
from hpcbridge.client import SchedulerClient
from hpcbridge.errors import HpcBridgeError, SubmitRefused
from hpcbridge.jobs import JobInfo
from hpcbridge.poller import StateChange, StatusPoller
from hpcbridge.profiles import SiteProfile
from hpcbridge.profiles.jobcopy import profile_in_job
from hpcbridge.schedulers import dialect_of

class BatchFeatures(ExecutionManager):
    """What the Create Job dialog offers (jupyter-scheduler asks the execution manager
    class); notebooks never run inside the server, so :meth:`execute` is never called."""

    def execute(self) -> None:
        raise SchedulerError("hpcbridge runs notebooks as batch jobs, not in the server")

    def supported_features(cls) -> dict[JobFeature, bool]:
        # an instance method that jupyter-scheduler calls with the class as ``cls``
        on = {JobFeature.job_name, JobFeature.parameters, JobFeature.output_formats,
              JobFeature.stop_job, JobFeature.delete_job, JobFeature.job_definition}
        return {feature: feature in on for feature in JobFeature}


class HpcScheduler(RecurringJobs, Scheduler):
    """Runs each job as a batch job of the cluster this server runs on; job definitions
    with a schedule as entries of the user's crontab (``hpcbridge/batch/jobdefs.py``)."""

    task_runner_class = TypeTrait(
        None, allow_none=True, klass="jupyter_scheduler.task_runner.BaseTaskRunner",
        config=True, help="Not used: the cluster's crontab runs recurring jobs, also "
                          "while no notebook server runs.")
    launcher_python = Unicode(
        sys.executable, config=True,
        help="The Python (with hpcbridge) that runs a recurring job's cron job on a "
             "compute node; default: this server's.")
    execution_manager_class = TypeTrait(
        default_value="hpcbridge.batch.scheduler.BatchFeatures",
        klass="jupyter_scheduler.executors.ExecutionManager", config=True,
        help="Declares the dialog's features; batch jobs run through the scheduler.")
    site_profile = Unicode(
        "", config=True,
        help="Site profile file; empty: $HPCBRIDGE_SITE_PROFILE, else the job copy of the "
             "hub's profile the spawner passes ($HPCBRIDGE_SITE_PROFILE_JSON).")
    cluster = Unicode(
        "", config=True,
        help="The profile's cluster this server runs on (its scheduler commands are used "
             "here); empty: the profile's default cluster.")
    status_interval = Float(
        10.0, config=True, help="Seconds between status queries (one for all jobs).")
    client = AnyTrait(
        None, allow_none=True,
        help="The scheduler client jobs go through; default: this machine's scheduler "
             "commands, as the server's user.")
    poller = AnyTrait(
        None, allow_none=True,
        help="The status poller; default: one over the client, every status_interval.")
    user = Unicode(help="The account jobs run as: the server's own.")

    @default("user")
    def _default_user(self) -> str:
        return getpass.getuser()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.profile: SiteProfile = profile_in_job(self.site_profile or None)
        self.cluster = self.profile.cluster_name(
            self.cluster or os.environ.get(CLUSTER_ENV) or None)
        if self.client is None:
            self.client = SchedulerClient.on_this_machine(
                dialect_of(self.profile.clusters[self.cluster]))
        self._tracking = False
        #: scheduler job id (a sweep's: each task's) -> jupyter-scheduler job id, for the
        #: jobs being tracked
        self._tracked: dict[str, str] = {}
        #: jupyter-scheduler job id -> a tracked sweep and its tasks' latest states
        self._sweeps: dict[str, tuple[Run, dict[str, JobInfo]]] = {}

    # -- folders ----------------------------------------------------------------------

    def get_local_output_path(self, model: DescribeJob, root_dir_relative: bool | None = False
                              ) -> str:
        name = os.path.join(self.output_directory,
                            folder_name(model.input_filename, model.job_id))
        return name if root_dir_relative else os.path.join(self.root_dir, name)

    def get_staging_paths(self, model: DescribeJob | DescribeJobDefinition) -> dict[str, str]:
        """The outputs are written where the job list links to them: staging and output
        folder are one."""
        if not isinstance(model, DescribeJob):
            return {}
        folder = self.get_local_output_path(model)
        names = self.get_job_filenames(model)
        formats = [*(model.output_formats or ()), "input"]
        return {fmt: os.path.join(folder, names[fmt]) for fmt in formats}

    # -- creating ---------------------------------------------------------------------

    def _formats(self, model: CreateJob) -> list[str]:
        """The outputs asked for (the notebook always), or Refused."""
        if model.job_definition_id:
            raise Refused("a job definition's runs start on its schedule or with "
                          "its Run button")
        formats = list(dict.fromkeys(["ipynb", *(model.output_formats or ())]))
        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            raise Refused(f"output format {unknown[0]!r} is not offered: {', '.join(FORMATS)}")
        return formats

    def _prepared(self, model: CreateJob, probe: DescribeJob) -> Prepared:
        """Everything a job needs, or Refused with the reason: nothing is stored. The
        parameter ``sweep`` may name a sweep file (hpcbridge/batch/sweep.py)."""
        model.output_formats = probe.output_formats = self._formats(model)
        root = Path(self.root_dir)
        path = root / model.input_uri
        try:
            content = read_notebook(path, root, model.input_uri)
            parameters, sets = split_sweep(model.parameters, notebook_parameters(content), root)
            names = self.get_job_filenames(probe)
            folder = Path(self.get_local_output_path(probe))
            return prepare(
                self.profile, self.user, cluster=self.cluster, notebook=path,
                content=content, folder=folder,
                job_id=probe.job_id, outputs={f: names[f] for f in model.output_formats},
                parameters=parameters, environment=model.runtime_environment_name,
                compute_type=model.compute_type, options=model.runtime_environment_parameters,
                sweep=sets, home=root,
                inputs=folder_inputs(path, folder) if model.package_input_folder else ())
        except FileNotFoundError:
            raise InputUriError(model.input_uri) from None
        except HpcBridgeError as exc:
            raise Refused(str(exc)) from None

    async def create_job(self, model: CreateJob) -> str:
        """Check, stage, submit as the user, then record; see the module's docstring."""
        if model.idempotency_token:
            with self.db_session() as session:
                if session.query(Job).filter(
                        Job.idempotency_token == model.idempotency_token).first():
                    raise IdempotencyTokenError(model.idempotency_token)
        job_id = str(uuid.uuid4())
        create_time = get_utc_timestamp()
        probe = DescribeJob(job_id=job_id, url="", create_time=create_time,
                            update_time=create_time, **model.dict(exclude={"input_uri"}))
        job = self._prepared(model, probe)
        try:
            job = await fit_sweep(self.client, self.user, job)
        except HpcBridgeError as exc:
            raise Refused(str(exc)) from None
        try:
            spec = await submit(self.client, self.user, job)
        except SubmitRefused as exc:
            raise Refused(f"the scheduler refused the job: {exc}") from None
        except HpcBridgeError as exc:
            raise SchedulerError(f"the job could not be submitted: {exc}") from None
        scheduler_id = spec.scheduler_job_id or ""
        try:
            self._record(model, job_id, create_time, scheduler_id)
        except BaseException:
            # no job without a record: cancel what was submitted
            await self.client.cancel(self.user, [scheduler_id])
            unstage(job.folder)
            raise
        self.log.info("batch job %s: submitted as %s job %s", job_id, self.cluster,
                      scheduler_id)
        self._track(job_id, scheduler_id, self._sweep_of(spec, job.folder))
        return job_id

    def _record(self, model: CreateJob, job_id: str, create_time: int,
                scheduler_id: str) -> None:
        with self.db_session() as session:
            session.add(Job(
                job_id=job_id, create_time=create_time, status="QUEUED",
                status_message=f"job {scheduler_id}: submitted",
                **model.dict(exclude_none=True, exclude={"input_uri"})))
            session.commit()

    # -- tracking ---------------------------------------------------------------------

    def _start_tracking(self) -> StatusPoller:
        """The server's poller; on first use, every job of the list that may still run
        is tracked again (a server that restarts shows what its jobs did meanwhile)."""
        if self.poller is None:
            self.poller = StatusPoller(self.client, interval=self.status_interval)
        if not self._tracking:
            self._tracking = True
            self.poller.subscribe(self._changed)
            self.poller.start()
            self._import_runs()  # runs of schedules while no server ran
            with self.db_session() as session:
                rows = session.query(Job).filter(Job.status.in_(ACTIVE)).all()
                active = [DescribeJob.from_orm(row) for row in rows]
            for model in active:
                spec = self._spec(model)
                if spec is not None and spec.scheduler_job_id:
                    folder = Path(self.get_local_output_path(model))
                    self._track(model.job_id, spec.scheduler_job_id,
                                self._sweep_of(spec, folder))
        return self.poller

    def _spec(self, model: DescribeJob) -> BatchSpec | None:
        try:
            return BatchSpec.read(Path(self.get_local_output_path(model)))
        except (OSError, ValueError, TypeError):
            return None

    def _sweep_of(self, spec: BatchSpec, folder: Path) -> Run | None:
        """A sweep's tasks as one status query asks about them; None for a plain job."""
        if not spec.sweep or not spec.scheduler_job_id:
            return None
        sid, tasks = spec.scheduler_job_id, len(spec.sweep)
        return Run(sid, folder, tasks, task_ids(self.client.dialect, sid, tasks))

    def _track(self, job_id: str, scheduler_id: str, sweep: Run | None = None) -> None:
        """Track the job, or each task of a ``sweep`` (one query asks about all)."""
        if sweep is not None:
            self._sweeps[job_id] = (sweep, self._sweeps.get(job_id, (sweep, {}))[1])
        poller = self._start_tracking()
        for queried in (sweep.queried if sweep is not None else [scheduler_id]):
            self._tracked[queried] = job_id
            poller.track(queried, self.user)

    def _untrack(self, job_id: str) -> None:
        for queried in [q for q, j in self._tracked.items() if j == job_id]:
            self._tracked.pop(queried, None)
            if self.poller is not None:
                self.poller.untrack(queried)
        self._sweeps.pop(job_id, None)

    @property
    def status_queries(self) -> int:
        """Status queries this server has made (one per interval while jobs are active)."""
        return self.poller.queries if self.poller else 0

    def _changed(self, change: StateChange) -> None:
        job_id = self._tracked.get(change.job_id)
        if job_id is None:
            return
        with self.db_session() as session:
            row = session.query(Job).filter(Job.job_id == job_id).first()
            if row is None:
                self._tracked.pop(change.job_id, None)
                return
            model = DescribeJob.from_orm(row)
        previous = model.status.value
        if job_id in self._sweeps:  # one task changed: the sweep's entry sums them up
            run, infos = self._sweeps[job_id]
            infos[change.job_id] = change.current
            view = run.views(infos, previous)[0]
        else:
            result = read_result(Path(self.get_local_output_path(model))) \
                if change.current.state.is_terminal else None
            view = shown(change.job_id, change.current, result, previous=previous)
        if previous == "STOPPING" and view.status in ("QUEUED", "IN_PROGRESS"):
            view = replace(view, status="STOPPING")  # the cancel is on its way
        updates: dict[str, Any] = {"status": view.status, "status_message": view.message}
        now = get_utc_timestamp()
        if view.running and model.start_time is None:
            updates["start_time"] = now
        if view.ended:
            updates["end_time"] = now
            self._untrack(job_id)
            self._complete_session(model, change)
        with self.db_session() as session:
            session.query(Job).filter(Job.job_id == job_id).update(updates)
            session.commit()

    def _complete_session(self, model: DescribeJob, change: StateChange) -> None:
        """The run's session record gets its end (accounting) in the background."""
        try:
            session = BatchSpec.read(Path(self.get_local_output_path(model))).session
        except (OSError, ValueError, TypeError):
            return
        if session:
            complete_in_background(self.client, self.user, os.path.expanduser("~"), session,
                                   change.job_id, change.current, by="batch")

    # -- reading, stopping, deleting ----------------------------------------------------

    def add_job_files(self, model: DescribeJob) -> None:
        """A sweep's outputs are its tasks': each task's executed notebook (and HTML)
        in ``task-<i>/``, listed with the input; other jobs' as jupyter-scheduler's."""
        spec = self._spec(model)
        if spec is None or not spec.sweep:
            super().add_job_files(model)
            return
        folder = self.get_local_output_path(model, root_dir_relative=True)
        labels = self.environments_manager.output_formats_mapping()
        files = []
        for i, values in enumerate(spec.sweep):
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())[:80]
            for fmt, name in spec.outputs.items():
                path = os.path.join(folder, f"task-{i}", name)
                files.append(JobFile(
                    display_name=f"Task {i} ({shown}): {labels.get(fmt, fmt)}",
                    file_format=f"task-{i}-{fmt}",
                    file_path=path if self.file_exists(path) else None))
        path = os.path.join(folder, spec.input)
        files.append(JobFile(display_name="Input", file_format="input",
                             file_path=path if self.file_exists(path) else None))
        model.job_files = files
        model.downloaded = True  # the tasks write into the folder; nothing to fetch

    async def list_jobs(self, query: ListJobsQuery) -> ListJobsResponse:
        self._start_tracking()
        self._import_runs()  # runs their schedules started since
        return super().list_jobs(query)

    async def get_job(self, job_id: str, job_files: bool | None = True
                      ) -> DescribeJob:
        self._start_tracking()
        return super().get_job(job_id, job_files)

    async def stop_job(self, job_id: str) -> None:
        """Cancel the job in the scheduler; the list shows STOPPED once it says so."""
        self._start_tracking()
        model = super().get_job(job_id, False)
        if model.status.value not in ACTIVE:
            return
        folder = Path(self.get_local_output_path(model))
        try:
            spec = BatchSpec.read(folder)
        except (OSError, ValueError, TypeError) as exc:
            raise SchedulerError(f"the job's folder has no readable record: {exc}") from None
        scheduler_id = spec.scheduler_job_id
        if not scheduler_id:
            return
        try:
            await self.client.cancel(self.user, [scheduler_id])
        except HpcBridgeError as exc:
            raise SchedulerError(f"cannot cancel job {scheduler_id}: {exc}") from None
        with self.db_session() as session:
            session.query(Job).filter(Job.job_id == job_id).update(
                {"status": "STOPPING", "status_message": f"job {scheduler_id}: cancelling"})
            session.commit()
        self._track(job_id, scheduler_id, self._sweep_of(spec, folder))

    async def delete_job(self, job_id: str) -> None:
        """Cancel the job if it may still run and drop it from the list; its folder
        stays (it holds the user's results)."""
        await self.stop_job(job_id)
        with self.db_session() as session:
            session.query(Job).filter(Job.job_id == job_id).delete()
            session.commit()

    async def close(self) -> None:
        if self.poller is not None and self._tracking:
            await self.poller.stop()


__all__ = ["BatchFeatures", "HpcScheduler"]

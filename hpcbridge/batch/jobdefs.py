"""Recurring batch notebooks in the notebook server: jupyter-scheduler's *job definitions*
with a schedule, kept as entries of the user's own crontab of the scheduler (Slurm's
scrontab) or, where the cluster has none, by the hub (``hpcbridge/batch/hubcron.py``,
registered through ``hpcbridge/batch/hubclient.py``), so that they run while no server
of the user runs. The site profile's ``recurring`` says which; each definition records
which keeps it.

:class:`RecurringJobs` is a part of :class:`hpcbridge.batch.scheduler.HpcScheduler`.
Creating a definition checks everything first (the cluster allows schedules, the cron
expression and its time zone, the notebook inside the home, its parameters, the
profile's limits for the runs and for the small cron job that submits them): a refusal
stores nothing. Then it stages the definition's folder (``hpcbridge/batch/definition.py``),
writes the definition's block into the crontab as the user through the scheduler client
(``hpcbridge/batch/crontab.py``: the user's own lines stay as they are), and records the
row jupyter-scheduler lists. Pausing keeps the block without its entry; resuming,
changing the schedule or the request writes it anew (through the gate again); deleting
removes it.

Runs are started by the cron job (``hpcbridge/batch/recurring.py``), which leaves a
record per run in the definition's folder; the server turns new records into rows of
jupyter-scheduler's job list (jobs of the definition) whenever the list is read, and
tracks them like one-off jobs.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_scheduler.exceptions import InputUriError, SchedulerError
from jupyter_scheduler.models import (
    CreateJobDefinition,
    CreateJobFromDefinition,
    DescribeJobDefinition,
    UpdateJobDefinition,
)
from jupyter_scheduler.orm import Job, JobDefinition
from jupyter_scheduler.utils import get_utc_timestamp
from sqlalchemy.exc import IntegrityError

from hpcbridge.batch import crontab, hubclient
from hpcbridge.batch.app import Refused
from hpcbridge.batch.cron import check_time_zone, parse_schedule
from hpcbridge.batch.definition import (
    PROFILE_FILE,
    RECURRING_DIR,
    DefinitionSpec,
    RunRecord,
    read_runs,
    write_run,
)
from hpcbridge.batch.recurring import launcher_request, prepare_run
from hpcbridge.batch.request import batch_request
from hpcbridge.batch.spec import FORMATS, folder_name
from hpcbridge.batch.submit import submit, unstage
from hpcbridge.errors import HpcBridgeError, RequestError, SchedulerUnavailable, SubmitRefused
from hpcbridge.profiles.jobcopy import job_copy_json
from hpcbridge.schedulers import dialect_of

_RUNNER = ("-m", "hpcbridge.batch.recurring")


@dataclass(frozen=True)
class _Plan:
    """A definition as it is to be: checked, nothing stored yet."""

    spec: DefinitionSpec
    folder: Path
    #: the crontab block (scrontab), or what the hub is asked to keep (hub)
    block: crontab.Block | None
    hub_entry: dict[str, Any] | None
    #: the notebook to copy into the folder (None: keep the folder's copy)
    notebook: Path | None
    log_folder: str


class RecurringJobs:
    """Job definitions with a schedule (a part of HpcScheduler; see the module)."""

    # provided by HpcScheduler
    profile: Any
    cluster: str
    client: Any
    user: str
    root_dir: str
    output_directory: str
    log: Any
    db_session: Any
    _track: Any

    #: the Python that runs the cron job (a trait of HpcScheduler)
    launcher_python: str

    @property
    def _crontab_lock(self) -> asyncio.Lock:
        lock = self.__dict__.get("_crontab_lock_")
        if lock is None:
            lock = self.__dict__["_crontab_lock_"] = asyncio.Lock()
        return lock

    def _jobs_folder(self) -> Path:
        return Path(self.root_dir) / self.output_directory

    def _definition_folder(self, input_filename: str, definition_id: str) -> Path:
        """The definition's folder: named after its first notebook, found by its id
        (an update may give it a notebook of another name)."""
        parent = self._jobs_folder() / RECURRING_DIR
        found = sorted(parent.glob(f"*-{definition_id}")) if parent.is_dir() else []
        return found[0] if found else parent / folder_name(input_filename, definition_id)

    # -- checking -----------------------------------------------------------------------

    async def _keeper(self) -> str:
        """Who keeps this server's new schedules: ``scrontab`` or ``hub`` (``auto``:
        scrontab where the user's ``scrontab -l`` works, asked once per server)."""
        config = self.profile.clusters[self.cluster]
        mode, crontab_ok = config.recurring, dialect_of(config).capabilities.crontab
        if mode == "off" or (mode == "scrontab" and not crontab_ok):
            raise Refused(f"cluster {self.cluster} does not run notebooks on a schedule "
                          f"(the site profile's recurring is {mode}); create a job "
                          f"without a schedule")
        if mode != "auto":
            return str(mode)
        if "_keeper_" not in self.__dict__:
            keeper = "hub"
            if crontab_ok:
                try:
                    await self.client.read_crontab(self.user)
                    keeper = "scrontab"
                except SchedulerUnavailable as exc:
                    raise SchedulerError(f"the scheduler cannot be asked: {exc}") from None
                except HpcBridgeError as exc:  # no scrontab command here, or refused
                    self.log.info("recurring jobs: the hub keeps them (%s)", exc)
            self.__dict__["_keeper_"] = keeper
        return str(self.__dict__["_keeper_"])

    def _plan(self, definition_id: str, want: dict[str, Any], folder: Path | None,
              keeper: str) -> _Plan:
        """The definition ``want`` (CreateJobDefinition's fields) checked; RequestError
        with the reason. ``folder``: the existing definition's, when updating."""
        config = self.profile.clusters[self.cluster]
        if want.get("package_input_folder"):
            raise RequestError("a job definition runs without its input folder (each run "
                               "receives the notebook only); a single job can run with it")
        formats = list(dict.fromkeys(["ipynb", *(want.get("output_formats") or ())]))
        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            raise RequestError(f"output format {unknown[0]!r} is not offered: "
                               f"{', '.join(FORMATS)}")
        schedule = parse_schedule(want.get("schedule"))
        check_time_zone(want.get("timezone"), schedule)
        root = Path(self.root_dir)
        source = root / want["input_uri"] if want.get("input_uri") else None
        shown = want.get("input_uri") or want["input_filename"]
        folder = folder or self._definition_folder(Path(shown).name, definition_id)
        spec = DefinitionSpec(
            definition_id=definition_id, cluster=self.cluster, input=Path(shown).name,
            formats=formats, jobs_folder=str(self._jobs_folder()), schedule=schedule.spec,
            parameters=dict(want.get("parameters") or {}),
            environment=want.get("runtime_environment_name"),
            compute_type=want.get("compute_type"),
            options=dict(want.get("runtime_environment_parameters") or {}),
            active=want.get("active", True) is not False, keeper=keeper)
        if source is not None:  # the gate reads the new notebook before it is copied
            self._check_run(spec, source.parent, source.name)
        else:
            self._check_run(spec, folder, spec.input)
        run = batch_request(self.profile, self.user, cluster=self.cluster,
                            environment=spec.environment, compute_type=spec.compute_type,
                            options=spec.options, command=("hostname",), job_name="hpcb-batch")
        command = (self.launcher_python, *_RUNNER, str(folder))
        bad = [w for w in command if not crontab.SAFE_WORD.fullmatch(w)]
        if bad:
            raise RequestError(f"the path {bad[0]!r} has characters a crontab line cannot "
                               f"carry (letters, digits and _ . / + = : - only)")
        launcher = launcher_request(self.profile, run, command)
        if keeper == "hub":
            entry = {"cluster": self.cluster, "schedule": schedule.spec,
                     "timezone": want.get("timezone"), "folder": str(folder),
                     "python": self.launcher_python, "environment": spec.environment,
                     "compute_type": spec.compute_type, "options": spec.options,
                     "active": spec.active}
            return _Plan(spec, folder, None, entry, source, launcher.log_folder)
        block = crontab.block(definition_id, schedule.spec,
                              dialect_of(config).crontab_directives(launcher), command,
                              active=spec.active)
        return _Plan(spec, folder, block, None, source, launcher.log_folder)

    def _check_run(self, spec: DefinitionSpec, where: Path, name: str) -> None:
        """A run of ``spec`` with the notebook ``where/name`` passes the gate."""
        probe = DefinitionSpec(**{**spec.__dict__, "input": name})
        prepare_run(self.profile, self.user, Path(self.root_dir), where, probe,
                    str(uuid.uuid4()), get_utc_timestamp())

    def _checked(self, definition_id: str, want: dict[str, Any], keeper: str,
                 folder: Path | None = None) -> _Plan:
        try:
            return self._plan(definition_id, want, folder, keeper)
        except FileNotFoundError:
            raise InputUriError(want.get("input_uri") or want.get("input_filename")) from None
        except RequestError as exc:  # the gate's refusal: answered with 400
            raise Refused(str(exc)) from None
        except HpcBridgeError as exc:
            raise SchedulerError(str(exc)) from None

    # -- the crontab, or the hub ----------------------------------------------------------

    async def _apply(self, definition_id: str, plan: _Plan | None, keeper: str) -> None:
        """Put the definition's schedule in place (None: remove it) where ``keeper`` keeps it."""
        if keeper == "scrontab":
            await self._set_block(definition_id, plan.block if plan else None)
            return
        try:
            if plan is None:
                await hubclient.remove(definition_id)
            else:
                await hubclient.register(definition_id, plan.hub_entry or {})
        except RequestError as exc:
            raise Refused(f"the schedule was not changed: {exc}") from None
        except HpcBridgeError as exc:
            raise SchedulerError(f"the schedule was not changed: {exc}") from None

    def _keeper_of(self, folder: Path) -> str:
        """Who keeps an existing definition's schedule (as it was made)."""
        try:
            return DefinitionSpec.read(folder).keeper
        except (OSError, ValueError, TypeError):
            return "scrontab"

    async def _set_block(self, definition_id: str, block: crontab.Block | None) -> None:
        """Write (or, None, remove) the definition's block, as the user; the rest of the
        crontab stays as it was. Refused with the scheduler's words when it refuses,
        SchedulerError when it cannot be asked."""
        async with self._crontab_lock:
            try:
                current = crontab.parse(await self.client.read_crontab(self.user))
                if block is None and definition_id not in current.blocks:
                    return
                await self.client.write_crontab(
                    self.user, crontab.render(current, {definition_id: block}))
            except (RequestError, SubmitRefused) as exc:  # a broken block, a refusal
                raise Refused(f"the schedule was not changed: {exc}") from None
            except HpcBridgeError as exc:
                raise SchedulerError(f"the schedule was not changed: {exc}") from None

    # -- jupyter-scheduler's methods ------------------------------------------------------

    async def create_job_definition(self, model: CreateJobDefinition) -> str:
        definition_id = str(uuid.uuid4())
        keeper = await self._keeper()
        plan = self._checked(definition_id, model.dict(), keeper)
        try:
            self._stage(plan)
            await self._apply(definition_id, plan, keeper)
            self._save_row(definition_id, model.dict(exclude_none=True,
                                                     exclude={"input_uri"}), plan)
        except BaseException:
            self._unstage(plan.folder)
            try:  # the block may be in (the row failed) or not (the scheduler refused)
                await self._apply(definition_id, None, keeper)
            except SchedulerError as exc:
                self.log.warning("job definition %s: its schedule stays: %s",
                                 definition_id, exc)
            raise
        self.log.info("job definition %s: %s, kept by %s for %s", definition_id,
                      plan.spec.schedule, keeper, self.user)
        return definition_id

    @staticmethod
    def _unstage(folder: Path) -> None:
        unstage(folder)
        try:  # the definitions' folder too, when this was its only one
            folder.parent.rmdir()
        except OSError:
            pass

    def _stage(self, plan: _Plan) -> None:
        """The definition's private folder: notebook, record, profile copy; the cron
        job's log folder (the scheduler makes none)."""
        Path(plan.log_folder).mkdir(mode=0o700, parents=True, exist_ok=True)
        plan.folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        plan.folder.mkdir(mode=0o700, exist_ok=True)
        if plan.notebook is not None:
            tmp = plan.folder / (plan.spec.input + ".tmp")
            shutil.copyfile(plan.notebook, tmp)
            tmp.replace(plan.folder / plan.spec.input)
        (plan.folder / PROFILE_FILE).write_text(job_copy_json(self.profile), encoding="utf-8")
        plan.spec.write(plan.folder)

    def _save_row(self, definition_id: str, fields: dict[str, Any], plan: _Plan) -> None:
        fields = {**fields, "schedule": plan.spec.schedule, "input_filename": plan.spec.input,
                  "output_formats": plan.spec.formats}
        with self.db_session() as session:
            session.add(JobDefinition(job_definition_id=definition_id, **fields))
            session.commit()

    def _definition(self, definition_id: str) -> DescribeJobDefinition:
        with self.db_session() as session:
            row = session.query(JobDefinition).filter(
                JobDefinition.job_definition_id == definition_id).first()
            if row is None:
                raise SchedulerError(f"no job definition {definition_id}")
            return DescribeJobDefinition.from_orm(row)

    async def update_job_definition(self, job_definition_id: str,
                                    model: UpdateJobDefinition) -> None:
        """Pause, resume, a new schedule, request or notebook: checked like a new one."""
        old = self._definition(job_definition_id)
        changes = model.dict(exclude_none=True, exclude={"output_filename_template", "url"})
        want = {**old.dict(), **changes}
        if not changes.get("input_uri"):
            want.pop("input_uri", None)
        folder = self._definition_folder(old.input_filename, job_definition_id)
        keeper = self._keeper_of(folder)
        plan = self._checked(job_definition_id, want, keeper, folder)
        await self._apply(job_definition_id, plan, keeper)
        self._stage(plan)
        updates = {**{k: v for k, v in changes.items() if k != "input_uri"},
                   "schedule": plan.spec.schedule, "input_filename": plan.spec.input,
                   "output_formats": plan.spec.formats, "update_time": get_utc_timestamp()}
        with self.db_session() as session:
            session.query(JobDefinition).filter(
                JobDefinition.job_definition_id == job_definition_id).update(updates)
            session.commit()

    async def delete_job_definition(self, job_definition_id: str) -> None:
        """No more runs (the block leaves the crontab), its jobs leave the list (runs
        still queued or running are cancelled); the runs' folders stay."""
        old = self._definition(job_definition_id)
        folder = self._definition_folder(old.input_filename, job_definition_id)
        await self._apply(job_definition_id, None, self._keeper_of(folder))
        with self.db_session() as session:
            jobs = [j for (j,) in session.query(Job.job_id).filter(
                Job.job_definition_id == job_definition_id)]
        for job_id in jobs:
            await self.delete_job(job_id)  # type: ignore[attr-defined]
        self._unstage(folder)
        with self.db_session() as session:
            session.query(JobDefinition).filter(
                JobDefinition.job_definition_id == job_definition_id).delete()
            session.commit()

    async def create_job_from_definition(self, job_definition_id: str,
                                         model: CreateJobFromDefinition) -> str:
        """Run the definition once now ("Run job"), as its schedule would."""
        old = self._definition(job_definition_id)
        folder = self._definition_folder(old.input_filename, job_definition_id)
        spec = DefinitionSpec.read(folder)
        if model.parameters:
            spec = DefinitionSpec(**{**spec.__dict__,
                                     "parameters": {**spec.parameters, **model.parameters}})
        job_id, created = str(uuid.uuid4()), get_utc_timestamp()
        try:
            job = prepare_run(self.profile, self.user, Path(self.root_dir), folder, spec,
                              job_id, created)
            submitted = await submit(self.client, self.user, job)
        except FileNotFoundError:
            raise Refused(f"the definition's notebook {spec.input} is missing") from None
        except SubmitRefused as exc:
            raise Refused(f"the scheduler refused the job: {exc}") from None
        except RequestError as exc:
            raise Refused(str(exc)) from None
        except HpcBridgeError as exc:
            raise SchedulerError(str(exc)) from None
        write_run(folder, RunRecord(job_id, created, submitted.scheduler_job_id,
                                    input=spec.input))
        self._import_runs()
        return job_id

    # -- runs -----------------------------------------------------------------------------

    def _import_runs(self) -> None:
        """New run records of every definition become jobs of the list (and tracked)."""
        with self.db_session() as session:
            definitions = [DescribeJobDefinition.from_orm(d)
                           for d in session.query(JobDefinition).all()]
            known = {j for (j,) in session.query(Job.job_id).filter(
                Job.job_definition_id.isnot(None))}
        for definition in definitions:
            folder = self._definition_folder(definition.input_filename,
                                             definition.job_definition_id)
            for record in read_runs(folder):
                if record.job_id not in known:
                    self._add_run(definition, record)

    def _add_run(self, definition: DescribeJobDefinition, record: RunRecord) -> None:
        sid = record.scheduler_job_id
        ended = sid is None
        fields = definition.dict(include={
            "runtime_environment_name", "runtime_environment_parameters", "compute_type",
            "input_filename", "output_formats", "name", "parameters", "tags"})
        if record.input:  # the notebook of that run (the definition's may have changed)
            fields["input_filename"] = record.input
        with self.db_session() as session:
            session.add(Job(
                job_id=record.job_id, job_definition_id=definition.job_definition_id,
                create_time=record.create_time, status="FAILED" if ended else "QUEUED",
                status_message=record.error if ended else f"job {sid}: submitted on schedule",
                end_time=get_utc_timestamp() if ended else None,
                **{k: v for k, v in fields.items() if v is not None}))
            try:
                session.commit()
            except IntegrityError:  # another server of the user's (same list) was first
                session.rollback()
                return
        if sid:
            self._track(record.job_id, sid)

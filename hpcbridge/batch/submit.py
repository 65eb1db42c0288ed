"""Submitting one batch notebook job: shared by the jupyter-scheduler backend
(``scheduler.py``) and ``hpcbridge run`` (``hpcbridge/cli/batch.py``).

:func:`prepare` checks everything (the notebook, its parameters, the profile's gate) and
touches nothing; :func:`fit_sweep` sizes a sweep's job array to the user's QOS (asking
the scheduler, still storing nothing); :func:`submit` then stages the job's private
folder, submits the script as the user through the scheduler client and writes the
scheduler's id into the folder's record. A submission the scheduler refuses leaves no folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hpcbridge.batch.inputs import check_inputs, copy_inputs
from hpcbridge.batch.request import batch_request, notebook_parameters, parse_parameters
from hpcbridge.batch.spec import JOB_NAME, LOG_FILE, RESULT_FILE, SPEC_FILE, BatchSpec
from hpcbridge.batch.sweep import fit_array, room
from hpcbridge.client import SchedulerClient
from hpcbridge.errors import RequestError
from hpcbridge.profiles import SiteProfile, ValidatedRequest, render_script
from hpcbridge.profiles.jobcopy import job_copy_json
from hpcbridge.schedulers import JobArray, dialect_of
from hpcbridge.sessions import origin

#: a notebook larger than this is refused (it is read to find its parameters cell)
MAX_NOTEBOOK_BYTES = 50 * 2**20
#: parameter sets of one sweep at most
MAX_SWEEP = 1000


def read_notebook(path: Path, root: Path, shown: str) -> dict[str, Any]:
    """The notebook at ``path`` (symbolic links resolved) inside ``root``; RequestError
    naming ``shown`` otherwise. FileNotFoundError when there is none."""
    resolved, root = path.resolve(), root.resolve()
    if not resolved.is_relative_to(root):
        raise RequestError(f"the notebook {shown!r} is outside your home folder")
    if not resolved.is_file():
        raise FileNotFoundError(shown)
    if resolved.suffix != ".ipynb":
        raise RequestError(f"{shown!r} is not a notebook (.ipynb)")
    if resolved.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise RequestError(f"{shown!r} is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
    try:
        notebook = json.loads(resolved.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RequestError(f"{shown!r} is not a readable notebook: {exc}") from None
    if not isinstance(notebook, dict):
        raise RequestError(f"{shown!r} is not a readable notebook")
    return notebook


@dataclass(frozen=True)
class Prepared:
    notebook: Path
    folder: Path
    spec: BatchSpec
    profile: SiteProfile
    request: ValidatedRequest
    #: a sweep's job array (tasks and throttle), once :func:`fit_sweep` sized it
    array: JobArray | None = None
    #: input files and folders, checked, to copy into the folder
    inputs: tuple[Path, ...] = ()

    @property
    def script(self) -> str:
        return render_script(self.profile, self.request, array=self.array)

    @property
    def log_folder(self) -> str:
        """Where the scheduler writes the job's own log (made before submitting)."""
        return self.request.log_folder


def prepare(profile: SiteProfile, user: str, *, cluster: str, notebook: Path,
            content: Mapping[str, Any], folder: Path, job_id: str, outputs: dict[str, str],
            parameters: Mapping[str, Any] | None, environment: str | None,
            compute_type: str | None, options: Mapping[str, Any] | None,
            sweep: Sequence[Mapping[str, Any]] = (), inputs: Sequence[Path] = (),
            home: Path | None = None) -> Prepared:
    """The job, checked: RequestError / LimitExceeded with the reason; nothing is stored.

    A ``sweep`` (parameter sets) becomes one job array of as many tasks; every set is
    checked against the notebook's parameters cell. :func:`fit_sweep` then sizes it.
    ``inputs`` (files and folders inside ``home``) are copied into the job's folder."""
    declared = notebook_parameters(content)
    values = parse_parameters(parameters, declared)
    sets = [{**values, **parse_parameters(one, declared)} for one in sweep]
    if len(sets) > MAX_SWEEP:
        raise RequestError(f"a sweep of {len(sets)} runs is more than {MAX_SWEEP}")
    request = batch_request(
        profile, user, cluster=cluster, environment=environment, compute_type=compute_type,
        options=options, command=("python", "-m", "hpcbridge.batch.runner", str(folder)),
        job_name=JOB_NAME)
    dialect = dialect_of(profile.clusters[cluster])
    if sets and not dialect.capabilities.arrays:
        raise RequestError(f"cluster {cluster}'s scheduler has no job arrays for a sweep")
    taken = {notebook.name, *outputs.values(), SPEC_FILE, RESULT_FILE, LOG_FILE}
    sources = check_inputs(inputs, home or Path.home(), folder, taken) if inputs else []
    spec = BatchSpec(job_id=job_id, cluster=cluster, input=notebook.name, outputs=outputs,
                     parameters=values, sweep=sets,
                     task_variables=list(dialect.array_task_variables) if sets else [],
                     profile=json.loads(job_copy_json(profile)),
                     inputs=[p.name for p in sources])
    job = Prepared(notebook, folder, spec, profile, request,
                   JobArray(len(sets)) if sets else None, tuple(sources))
    job.script  # noqa: B018 -- renders once: a refusal comes before anything is stored
    return job


async def fit_sweep(client: SchedulerClient, user: str, job: Prepared) -> Prepared:
    """A sweep's array sized to the user's QOS: RequestError when it cannot be queued
    now; throttled to the jobs she may run at once (hpcbridge/batch/sweep.py)."""
    if job.array is None:
        return job
    found = await room(client, user, job.request)
    partition = job.profile.clusters[job.request.cluster].partitions[job.request.partition]
    return replace(job, array=fit_array(job.array.tasks, found, partition.max_jobs_per_user))


async def submit(client: SchedulerClient, user: str, job: Prepared) -> BatchSpec:
    """Stage the folder, submit as ``user``; the spec with the scheduler's id. On any
    failure the folder is gone again (the client's errors pass through)."""
    script = job.script
    # the run's session record: its request part travels in the folder's spec
    spec = replace(job.spec, session=origin.session_of(
        job.profile, job.request, "batch", notebook=job.spec.input, folder=str(job.folder),
        script=script))
    _stage(job.notebook, job.folder, spec, job.inputs)
    try:
        scheduler_id = await client.submit(user, script, job.log_folder)
    except BaseException:
        unstage(job.folder)
        raise
    spec = replace(spec, scheduler_job_id=scheduler_id)
    try:
        spec.write(job.folder)
    except BaseException:
        await client.cancel(user, [scheduler_id])
        unstage(job.folder)
        raise
    return spec


def _stage(notebook: Path, folder: Path, spec: BatchSpec, inputs: Sequence[Path] = ()
           ) -> None:
    """Make the job's folder (private) with the notebook, its inputs and its record."""
    folder.mkdir(mode=0o700, parents=True)
    try:
        shutil.copyfile(notebook, folder / spec.input)
        copy_inputs(inputs, folder)
        spec.write(folder)
    except BaseException:
        unstage(folder)
        raise


def unstage(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)

"""One run of a recurring batch notebook, and the cron job that starts it.

Slurm's scrontab starts the definition's cron job at each time of its schedule, on a
compute node, as the user, with no notebook server anywhere::

    python -m hpcbridge.batch.recurring <jobs folder>/recurring/<notebook>-<definition id>

It passes the run through the same gate as a one-off job *at this run* (the profile,
the partition's limits, the notebook's parameters cell, the home folder), stages the
run's folder ``<jobs folder>/<notebook>-<job id>/`` and submits the run as a batch job
of its own (``sbatch``, as one-off runs are): the cron job itself stays small and ends
in seconds. Each run leaves a record in the definition's ``runs/`` folder: its
scheduler id, or the sentence that refused it; the notebook server lists the runs from
these records as jobs of the definition (``hpcbridge/batch/jobdefs.py``).

The profile is ``$HPCBRIDGE_SITE_PROFILE`` where the site sets one on its nodes, else
the job copy the server saved in the definition's folder.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

from hpcbridge.batch.definition import (
    CRON_JOB_NAME,
    DEFINITION_FILE,
    PROFILE_FILE,
    DefinitionSpec,
    RunRecord,
    write_run,
)
from hpcbridge.batch.spec import folder_name
from hpcbridge.batch.submit import Prepared, prepare, read_notebook, submit
from hpcbridge.client import SchedulerClient
from hpcbridge.errors import HpcBridgeError, RequestError
from hpcbridge.profiles import SiteProfile, ValidatedRequest, validate_request
from hpcbridge.profiles.jobcopy import PROFILE_ENV
from hpcbridge.profiles.types import Memory, Walltime
from hpcbridge.schedulers import dialect_of

#: what the cron job itself asks for: it only submits the run
LAUNCHER_CORES = 1
LAUNCHER_MEMORY = Memory.parse("1G")
LAUNCHER_WALLTIME = Walltime.parse("00:05:00")


def output_names(input_name: str, create_time: int, formats: list[str]) -> dict[str, str]:
    """The outputs' file names, as jupyter-scheduler names a job's outputs (the server's
    list links to them by these names)."""
    from jupyter_scheduler.utils import create_output_filename

    return {fmt: create_output_filename(input_name, create_time, fmt) for fmt in formats}


def prepare_run(profile: SiteProfile, user: str, home: Path, folder: Path,
                spec: DefinitionSpec, job_id: str, create_time: int) -> Prepared:
    """Run ``job_id`` of the definition in ``folder``, checked through the gate;
    RequestError / LimitExceeded with the reason, FileNotFoundError without its
    notebook. Nothing is stored."""
    jobs = Path(spec.jobs_folder)
    if not jobs.resolve().is_relative_to(home.resolve()):
        raise RequestError(f"the runs' folder {spec.jobs_folder} is outside your home folder")
    notebook = folder / spec.input
    job = prepare(
        profile, user, cluster=spec.cluster, notebook=notebook,
        content=read_notebook(notebook, home, spec.input),
        folder=jobs / folder_name(spec.input, job_id), job_id=job_id,
        outputs=output_names(spec.input, create_time, spec.formats),
        parameters=spec.parameters, environment=spec.environment,
        compute_type=spec.compute_type, options=spec.options)
    return replace(job, spec=replace(job.spec, definition_id=spec.definition_id))


def launcher_request(profile: SiteProfile, run: ValidatedRequest,
                     command: tuple[str, ...]) -> ValidatedRequest:
    """What the cron job asks for: one core, a little memory and a few minutes on the
    run's partition and account, through the gate too."""
    part = profile.clusters[run.cluster].partitions[run.partition]
    return validate_request(profile, replace(
        run.to_request(), preset=None, nodes=1, cores=LAUNCHER_CORES,
        memory=str(min(LAUNCHER_MEMORY, part.memory_per_node)), gpus=0,
        walltime=str(Walltime(min(LAUNCHER_WALLTIME, part.max_walltime))),
        job_name=CRON_JOB_NAME, command=command, export_env=()))


async def launch(profile: SiteProfile, client: SchedulerClient, user: str, home: Path,
                 folder: Path, *, now: float | None = None) -> RunRecord:
    """Check and submit one run of the definition in ``folder``; its record (written
    into ``runs/``), refused runs too."""
    spec = DefinitionSpec.read(folder)
    job_id, create_time = str(uuid.uuid4()), int((now or time.time()) * 1000)
    try:
        job = prepare_run(profile, user, home, folder, spec, job_id, create_time)
        submitted = await submit(client, user, job)
        record = RunRecord(job_id, create_time, scheduler_job_id=submitted.scheduler_job_id,
                           input=spec.input)
    except FileNotFoundError:
        record = RunRecord(job_id, create_time,
                           error=f"not submitted: the definition's notebook {spec.input} "
                                 f"is missing from {folder}", input=spec.input)
    except HpcBridgeError as exc:
        record = RunRecord(job_id, create_time, error=f"not submitted: {exc}",
                           input=spec.input)
    write_run(folder, record)
    return record


def profile_for(folder: Path) -> SiteProfile:
    """The site's profile on this node, else the copy saved with the definition."""
    from hpcbridge.profiles.jobcopy import profile_in_job

    if os.environ.get(PROFILE_ENV):
        return profile_in_job()
    return SiteProfile.model_validate_json((folder / PROFILE_FILE).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m hpcbridge.batch.recurring DEFINITION-FOLDER")
    os.umask(0o077)  # the cron job does not get sbatch's SLURM_UMASK
    folder = Path(args[0])
    if not (folder / DEFINITION_FILE).is_file():
        print(f"hpcbridge: {folder} holds no job definition (deleted?); nothing to run")
        return 0
    spec = DefinitionSpec.read(folder)
    if not spec.active:
        print(f"hpcbridge: job definition {spec.definition_id} is paused; nothing to run")
        return 0
    profile = profile_for(folder)
    client = SchedulerClient.on_this_machine(dialect_of(profile.clusters[spec.cluster]))
    record = asyncio.run(launch(profile, client, getpass.getuser(), Path.home(), folder))
    print(f"hpcbridge: job definition {spec.definition_id}: run {record.job_id}: "
          f"{'job ' + str(record.scheduler_job_id) if record.error is None else record.error}",
          flush=True)
    return 0 if record.error is None else 1


if __name__ == "__main__":
    sys.exit(main())

"""``hpcbridge run`` and ``hpcbridge jobs``: batch notebooks from a login node, as yourself.

``run`` checks the notebook and the request exactly as "Create Notebook Job" does
(``hpcbridge/batch/submit.py``), stages ``~/jobs/<notebook>-<id>/`` and submits with this
machine's scheduler commands; ``--wait`` follows the job to its end. ``jobs`` lists the
folders under ``~/jobs`` with their state (a sweep's summed up, then each task's), from
one status query for all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
import uuid
from pathlib import Path

from hpcbridge.batch.spec import BatchSpec, folder_name, task_folder
from hpcbridge.batch.submit import Prepared
from hpcbridge.batch.sweep import Run, task_ids
from hpcbridge.client import SchedulerClient
from hpcbridge.errors import HpcBridgeError
from hpcbridge.profiles import SiteProfile

#: where jobs' folders go, under the home directory (as in the notebook server)
JOBS_DIR = "jobs"
#: seconds between status queries of `run --wait`
FOLLOW_EVERY = 5.0
OPTIONS = ("partition", "account", "cores", "memory", "gpus", "walltime", "environment",
           "cluster")


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a notebook as a batch job (papermill)")
    run.add_argument("notebook", help="the notebook (inside your home)")
    run.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                     help="a value for a name of the notebook's parameters cell")
    run.add_argument("--preset", help="a preset of the site profile")
    for name in OPTIONS:
        run.add_argument(f"--{name}", help=f"{name} (checked against the profile)")
    run.add_argument("--sweep", metavar="FILE.yaml", help="a YAML list of parameter sets: "
                     "one job array, a task per set, each in its own task-<i>/ folder")
    run.add_argument("--input", action="append", default=[], metavar="PATH",
                     help="a file or folder of your home the notebook reads: copied into "
                     "the job's folder, its working directory (repeat for more)")
    run.add_argument("--html", action="store_true", help="also write the executed "
                     "notebook as HTML")
    run.add_argument("--wait", action="store_true", help="follow the job to its end; "
                     "exit 1 unless it completed")
    run.add_argument("--site", help="site profile (default: $HPCBRIDGE_SITE_PROFILE)")
    run.set_defaults(func=_run)
    jobs = sub.add_parser("jobs", help="your batch notebook jobs (~/jobs)")
    jobs.add_argument("action", nargs="?", default="list", choices=("list", "cancel", "outputs"))
    jobs.add_argument("job", nargs="?", help="cancel, outputs: the scheduler's job id")
    jobs.add_argument("--site", help="site profile (default: $HPCBRIDGE_SITE_PROFILE)")
    jobs.set_defaults(func=_jobs)


def client_for(profile: SiteProfile, cluster: str) -> SchedulerClient:
    """This machine's scheduler commands, as the calling user."""
    from hpcbridge.schedulers import dialect_of

    return SchedulerClient.on_this_machine(dialect_of(profile.clusters[cluster]))


def _parameters(items: list[str]) -> dict[str, str]:
    found = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise HpcBridgeError(f"-p {item!r}: write KEY=VALUE")
        found[key.strip()] = value
    return found


def _prepared(args: argparse.Namespace) -> tuple[Prepared, SchedulerClient]:
    """The checked job and its client; nothing is stored yet."""
    from hpcbridge.batch.submit import prepare, read_notebook
    from hpcbridge.profiles.jobcopy import profile_in_job

    home = Path.home()
    profile = profile_in_job(args.site)
    cluster = profile.cluster_name(args.cluster)
    notebook = Path(args.notebook).absolute()
    job_id = str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
    outputs = {fmt: f"{notebook.stem}-{stamp}.{fmt}"
               for fmt in ("ipynb", *(("html",) if args.html else ()))}
    options = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    job = prepare(profile, getpass.getuser(), cluster=cluster, notebook=notebook,
                  content=read_notebook(notebook, home, args.notebook),
                  folder=home / JOBS_DIR / folder_name(notebook.name, job_id), job_id=job_id,
                  outputs=outputs, parameters=_parameters(args.parameter), environment=None,
                  compute_type=args.preset, options=options, sweep=_sweep(args.sweep),
                  inputs=[Path(p) for p in args.input], home=home)
    return job, client_for(profile, cluster)


def _sweep(path: str | None) -> list[dict[str, str]]:
    """The parameter sets of a sweep file (anywhere the caller can read)."""
    from hpcbridge.batch.sweep import read_sweep_file

    return read_sweep_file(Path(path), None, path) if path else []


def _run(args: argparse.Namespace) -> int:
    from hpcbridge.batch.submit import fit_sweep, submit

    async def checked_then_submitted() -> tuple[Prepared, BatchSpec]:
        sized = await fit_sweep(client, user, job)
        return sized, await submit(client, user, sized)

    user = getpass.getuser()
    try:
        job, client = _prepared(args)
        job, spec = asyncio.run(checked_then_submitted())
    except FileNotFoundError:
        print(f"hpcbridge run: no notebook {args.notebook}", file=sys.stderr)
        return 1
    except HpcBridgeError as exc:
        print(f"hpcbridge run: {exc}", file=sys.stderr)
        return 1
    sid = spec.scheduler_job_id or ""
    what = "submitted"
    if job.array is not None:
        at_once = f", at most {job.array.limit} at once" if job.array.limit else ""
        what = f"submitted as one array of {job.array.tasks} tasks{at_once}"
    print(f"job {sid}: {what}; outputs in {job.folder}", flush=True)
    if not args.wait:
        return 0
    tasks = len(spec.sweep)
    ids = task_ids(client.dialect, sid, tasks) if tasks else None
    return asyncio.run(_follow(client, Run(sid, job.folder, tasks, ids)))


async def _follow(client: SchedulerClient, record: Run) -> int:
    """Print the job's (and each task's) changes until it ended (one status query a
    round); 0 when it completed."""
    last: dict[str, str] = {}
    while True:
        try:
            infos = await client.status(record.queried)
        except HpcBridgeError as exc:
            print(f"cannot ask the scheduler now ({exc}); still waiting", file=sys.stderr)
            await asyncio.sleep(FOLLOW_EVERY)
            continue
        entry, tasks = record.views(infos)
        for key, view in [("", entry), *((str(i), t) for i, t in enumerate(tasks))]:
            if view.message != last.get(key):
                print(view.message, flush=True)
                last[key] = view.message
        if entry.ended:
            return 0 if entry.status == "COMPLETED" else 1
        await asyncio.sleep(FOLLOW_EVERY)


def _jobs(args: argparse.Namespace) -> int:
    from hpcbridge.profiles.jobcopy import profile_in_job

    try:
        profile = profile_in_job(args.site)
    except HpcBridgeError as exc:
        print(f"hpcbridge jobs: {exc}", file=sys.stderr)
        return 1
    client = client_for(profile, profile.cluster_name(None))
    records = _records(client)
    runs = {r.job_id: r.folder for r in records}
    for r in records:  # a task can be asked for its outputs, and cancelled, by its id
        runs.update({tid: task_folder(r.folder, i) for i, tid in enumerate(r.ids or ())})
    if args.action != "list" and args.job not in runs:
        print(f"hpcbridge jobs: {args.job!r} is not a job of ~/{JOBS_DIR}", file=sys.stderr)
        return 1
    if args.action == "outputs":
        folder = runs[args.job]
        print(folder)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                print(f"  {path.relative_to(folder)}")
        return 0
    if args.action == "cancel":
        asyncio.run(client.cancel(getpass.getuser(), [args.job]))
        print(f"job {args.job}: cancel sent")
        return 0
    wanted = [i for r in records for i in r.queried]
    infos = asyncio.run(client.status(wanted)) if wanted else {}  # one query for all
    for record in records:
        entry, tasks = record.views(infos)
        print(f"{entry.status:<12} {record.folder.name}  {entry.message}")
        for i, view in enumerate(tasks):
            print(f"  {view.status:<10} task-{i}  {view.message}")
    return 0


def _records(client: SchedulerClient) -> list[Run]:
    """The jobs of ~/jobs that were submitted, oldest folder name first."""
    records = []
    for path in sorted((Path.home() / JOBS_DIR).glob("*/hpcbridge-job.json")):
        try:
            spec = BatchSpec.read(path.parent)
        except (OSError, ValueError, TypeError):
            continue
        sid, tasks = spec.scheduler_job_id, len(spec.sweep)
        if sid:
            records.append(Run(sid, path.parent, tasks,
                                  task_ids(client.dialect, sid, tasks) if tasks else None))
    return records

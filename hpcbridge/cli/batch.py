"""``hpcbridge run`` and ``hpcbridge jobs``: batch notebooks from a login node, as yourself.

``run`` checks the notebook and the request exactly as "Create Notebook Job" does
(``hpcbridge/batch/submit.py``), stages ``~/jobs/<notebook>-<id>/`` and submits with this
machine's scheduler commands; ``--wait`` follows the job to its end. ``jobs`` lists the
folders under ``~/jobs`` with their state, from one status query for all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
import uuid
from pathlib import Path

from hpcbridge.batch.spec import BatchSpec, folder_name, read_result, task_folder
from hpcbridge.batch.status import shown
from hpcbridge.batch.submit import Prepared
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
                  compute_type=args.preset, options=options, sweep=_sweep(args.sweep))
    return job, client_for(profile, cluster)


def _sweep(path: str | None) -> list[dict[str, str]]:
    """The parameter sets of a sweep file, values as the dialog's text (``3``, ``'x'``)."""
    if not path:
        return []
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise HpcBridgeError(f"--sweep {path}: {exc}") from None
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise HpcBridgeError(f"--sweep {path}: not a list of parameter sets (mappings)")
    return [{str(k): v if isinstance(v, str) else repr(v) for k, v in d.items()}
            for d in data]


def _run(args: argparse.Namespace) -> int:
    from hpcbridge.batch.submit import submit

    try:
        job, client = _prepared(args)
        spec = asyncio.run(submit(client, getpass.getuser(), job))
    except FileNotFoundError:
        print(f"hpcbridge run: no notebook {args.notebook}", file=sys.stderr)
        return 1
    except HpcBridgeError as exc:
        print(f"hpcbridge run: {exc}", file=sys.stderr)
        return 1
    sid = spec.scheduler_job_id or ""
    tasks = len(spec.sweep)
    what = f"submitted as one array of {tasks} tasks" if tasks else "submitted"
    print(f"job {sid}: {what}; outputs in {job.folder}", flush=True)
    if not args.wait:
        return 0
    return asyncio.run(_follow(client, _runs(sid, job.folder, tasks)))


def _runs(sid: str, folder: Path, tasks: int) -> dict[str, Path]:
    """Scheduler id -> folder of each run: the job, or each task of its array."""
    if not tasks:
        return {sid: folder}
    return {f"{sid}_{i}": task_folder(folder, i) for i in range(tasks)}


async def _follow(client: SchedulerClient, runs: dict[str, Path]) -> int:
    """Print each run's changes until all ended (one status query a round); 0 when all
    completed."""
    last: dict[str, str] = {}
    ended: dict[str, str] = {}
    while True:
        try:
            infos = await client.status([i for i in runs if i not in ended])
        except HpcBridgeError as exc:
            print(f"cannot ask the scheduler now ({exc}); still waiting", file=sys.stderr)
            infos = {}
        for sid, info in infos.items():
            view = shown(sid, info, read_result(runs[sid]) if info.state.is_terminal else None)
            if view.message != last.get(sid):
                print(view.message, flush=True)
                last[sid] = view.message
            if view.ended:
                ended[sid] = view.status
        if len(ended) == len(runs):
            return 0 if set(ended.values()) == {"COMPLETED"} else 1
        await asyncio.sleep(FOLLOW_EVERY)


def _jobs(args: argparse.Namespace) -> int:
    from hpcbridge.profiles.jobcopy import profile_in_job

    try:
        profile = profile_in_job(args.site)
    except HpcBridgeError as exc:
        print(f"hpcbridge jobs: {exc}", file=sys.stderr)
        return 1
    records: dict[str, Path] = {}
    for record in sorted((Path.home() / JOBS_DIR).glob("*/hpcbridge-job.json")):
        try:
            spec = BatchSpec.read(record.parent)
        except (OSError, ValueError, TypeError):
            continue
        if spec.scheduler_job_id:
            records.update(_runs(spec.scheduler_job_id, record.parent, len(spec.sweep)))
    known = set(records) | {i.split("_")[0] for i in records}  # a whole array too
    if args.action != "list" and args.job not in (known if args.action == "cancel"
                                                  else records):
        print(f"hpcbridge jobs: {args.job!r} is not a job of ~/{JOBS_DIR}", file=sys.stderr)
        return 1
    if args.action == "outputs":
        folder = records[args.job]
        print(folder)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                print(f"  {path.relative_to(folder)}")
        return 0
    client = client_for(profile, profile.cluster_name(None))
    if args.action == "cancel":
        asyncio.run(client.cancel(getpass.getuser(), [args.job]))
        print(f"job {args.job}: cancel sent")
        return 0
    infos = asyncio.run(client.status(list(records))) if records else {}  # one query
    for sid, folder in records.items():
        info = infos[sid]
        view = shown(sid, info, read_result(folder) if info.state.is_terminal else None)
        task = folder.name.startswith("task-")
        where = f"{folder.parent.name}/{folder.name}" if task else folder.name
        print(f"{view.status:<12} {where}  {view.message}")
    return 0

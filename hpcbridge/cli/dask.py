"""``hpcbridge dask orphans|jobqueue``: a user's Dask worker jobs, and plain dask-jobqueue config.

Worker jobs are named ``hpcb-dask-<cluster id>``. A cluster cancels its jobs when it is
closed or its kernel exits; a kernel killed outright leaves them until their workers'
``--death-timeout`` ends them. ``orphans`` lists such jobs and ``--cancel`` ends them.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys


def register(sub: argparse._SubParsersAction) -> None:
    dask = sub.add_parser("dask", help="Dask worker jobs")
    dsub = dask.add_subparsers(dest="dask_command", metavar="ACTION")
    dsub.required = True

    orphans = dsub.add_parser("orphans", help="list (and cancel) a user's Dask worker jobs")
    _site_args(orphans)
    orphans.add_argument("--cluster-id", help="only jobs of this Dask cluster "
                         "(hpcb-dask-<ID>, as in the job name)")
    orphans.add_argument("--cancel", action="store_true", help="cancel the jobs listed")
    orphans.set_defaults(func=_orphans)

    export = dsub.add_parser("jobqueue", help="print the profile's Dask worker as "
                             "dask-jobqueue configuration (jobqueue.yaml)")
    _site_args(export)
    export.set_defaults(func=_jobqueue)


def _site_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", default=None,
                        help="site profile (default: $HPCBRIDGE_SITE_PROFILE, else in a "
                        "notebook server the hub started, its copy of the hub's profile)")
    parser.add_argument("--user", default=None, help="whose jobs (default: you)")
    parser.add_argument("--cluster", default=None, help="cluster of the profile")


def _orphans(args: argparse.Namespace) -> int:
    return asyncio.run(_orphans_async(args))


async def _orphans_async(args: argparse.Namespace) -> int:
    from hpcbridge.dask.build import JOB_PREFIX
    from hpcbridge.dask.facts import user_jobs
    from hpcbridge.errors import HpcBridgeError
    from hpcbridge.profiles.jobcopy import profile_in_job
    from hpcbridge.site import Site

    user = args.user or getpass.getuser()
    prefix = JOB_PREFIX + (args.cluster_id.removeprefix(JOB_PREFIX) if args.cluster_id
                           else "")
    try:
        site = Site(profile_in_job(args.site))
    except HpcBridgeError as exc:
        print(f"hpcbridge dask orphans: {exc}", file=sys.stderr)
        return 1
    try:
        client = site.client(args.cluster)
        jobs = [j for j in await user_jobs(client, user)
                if j.name.startswith(prefix) and j.state.is_active]
        for job in jobs:
            print(f"{job.job_id}\t{job.name}\t{job.state.value}\t{job.reason or ''}")
        if not jobs:
            print(f"no Dask worker jobs of {user}", file=sys.stderr)
        elif args.cancel:
            await client.cancel(user, [j.job_id for j in jobs])
            print(f"cancelled {len(jobs)} job(s)", file=sys.stderr)
        return 0
    except HpcBridgeError as exc:
        print(f"hpcbridge dask orphans: {exc}", file=sys.stderr)
        return 1
    finally:
        await site.close()


def _jobqueue(args: argparse.Namespace) -> int:
    from hpcbridge.dask.jobqueue import jobqueue_yaml
    from hpcbridge.errors import HpcBridgeError
    from hpcbridge.profiles.jobcopy import profile_in_job

    try:
        profile = profile_in_job(args.site)
        print(jobqueue_yaml(profile, args.user or getpass.getuser()), end="")
    except HpcBridgeError as exc:
        print(f"hpcbridge dask jobqueue: {exc}", file=sys.stderr)
        return 1
    return 0

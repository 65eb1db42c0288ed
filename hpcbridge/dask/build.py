"""``hpcbridge.dask.cluster(...)``: a Dask cluster of batch-job workers from a site profile."""

from __future__ import annotations

import getpass
import os
import secrets
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from hpcbridge.client import SchedulerClient
from hpcbridge.dask.clusters import HpcPbsCluster, HpcSlurmCluster
from hpcbridge.dask.job import WorkerContext
from hpcbridge.dask.limits import ProfileCaps, WorkerShape, lifetime_options
from hpcbridge.errors import IdentityRefused
from hpcbridge.identity import hub_accounts, name_refusal
from hpcbridge.jobs import DASK_JOB_PREFIX, dask_cluster_name
from hpcbridge.poller import StatusPoller
from hpcbridge.profiles import (
    JobRequest,
    SiteProfile,
    ValidatedRequest,
    validate_request,
)
from hpcbridge.profiles.jobcopy import profile_in_job
from hpcbridge.schedulers import dialect_of

#: address the Dask scheduler listens on, as the compute nodes reach it
HOST_ENV = "HPCBRIDGE_DASK_HOST"
#: every worker job's name starts with this; `hpcbridge dask orphans` looks for it
JOB_PREFIX = DASK_JOB_PREFIX
#: dask-jobqueue cluster family (an adapter's ``capabilities.dask``) -> our cluster class
_CLUSTERS: dict[str, type[HpcSlurmCluster] | type[HpcPbsCluster]] = {
    "slurm": HpcSlurmCluster, "pbs": HpcPbsCluster}


def _profile(profile: SiteProfile | str | Path | None) -> SiteProfile:
    if isinstance(profile, SiteProfile):
        return profile
    # a file, $HPCBRIDGE_SITE_PROFILE, or in a server the hub started, its job copy
    return profile_in_job(profile)


def worker_request(profile: SiteProfile, user: str, name: str, **overrides: Any
                   ) -> tuple[ValidatedRequest, int]:
    """The profile's worker request with ``overrides``, validated; and processes per job."""
    w = profile.dask.worker
    fields = ("cluster", "partition", "account", "environment", "cores", "memory", "gpus",
              "walltime")
    values: dict[str, Any] = {
        k: overrides.get(k) if overrides.get(k) is not None else getattr(w, k) for k in fields}
    processes = overrides.get("processes") or w.processes
    for key in ("memory", "walltime"):
        if values[key] is not None:
            values[key] = str(values[key])
    request = JobRequest(user=user, job_name=name, command=("python",), **values)
    return validate_request(profile, request), processes


def caps_for(profile: SiteProfile, req: ValidatedRequest) -> ProfileCaps:
    per_user = profile.dask.per_user
    part = profile.clusters[req.cluster].partitions[req.partition]
    return ProfileCaps(
        partition_max_jobs=part.max_jobs_per_user,
        max_workers=per_user.max_workers,
        max_cores=per_user.max_cores,
        max_memory_mb=int(per_user.max_memory) // 2**20 if per_user.max_memory else None,
    )


def cluster(profile: SiteProfile | str | Path | None = None, *, user: str | None = None,
            site: Any = None, client: SchedulerClient | None = None,
            poller: StatusPoller | None = None, scheduler_host: str | None = None,
            interface: str | None = None, arrays: bool = False, max_failures: int = 3,
            poll_interval: float = 10.0, n_workers: int = 0, asynchronous: bool = False,
            inherit_env: bool = True, **overrides: Any) -> HpcSlurmCluster | HpcPbsCluster:
    """A dask-jobqueue cluster whose workers are batch jobs sized by the site profile.

    ``overrides`` change the profile's ``dask.worker`` (``cluster``, ``partition``,
    ``account``, ``environment``, ``cores``, ``memory``, ``gpus``, ``walltime``,
    ``processes``); every value passes the profile's limits. Jobs are submitted as
    ``user`` (default: whoever runs this) through ``client``, or ``site.client(...)``
    (a :class:`hpcbridge.site.Site`), or this machine's own scheduler commands. Remaining
    keyword arguments go to dask-jobqueue (e.g. ``scheduler_options``).

    ``inherit_env`` (Slurm): worker jobs start with this process's environment, like
    dask-jobqueue's; False keeps the profile's ``--export=NONE``, whose ``su -`` on the
    node may delay each job's start by a second (see ``docs/dask.md``).
    """
    known = {"cluster", "partition", "account", "environment", "cores", "memory", "gpus",
             "walltime", "processes"}
    job_overrides = {k: overrides.pop(k) for k in list(overrides) if k in known}
    profile = _profile(profile)
    user = user or getpass.getuser()
    # inside a notebook server's job: its stop cancels these workers too
    name = dask_cluster_name(secrets.token_hex(3),
                             os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID"))
    req, processes = worker_request(profile, user, name, **job_overrides)
    if req.cores % processes:
        raise ValueError(f"{req.cores} cores do not split into {processes} processes")
    if site is not None:
        # through a site's transport (sudo, ssh): never as a system or service account;
        # as oneself (the process's own account) it is what a notebook does anyway
        config = profile.clusters[req.cluster]
        refusal = name_refusal(req.cluster, config, user,
                               hub_accounts(config) - {getpass.getuser()})
        if refusal:
            raise IdentityRefused(f"no Dask workers as {user!r}: {refusal}")
    if client is None:
        client = site.client(req.cluster) if site is not None else \
            SchedulerClient.on_this_machine(dialect_of(profile.clusters[req.cluster]))
    walltime = timedelta(seconds=int(req.walltime))
    lifetime, stagger = lifetime_options(walltime)
    ctx = WorkerContext(
        profile=profile, client=client, user=user,
        request=replace(req.to_request(), memory=str(req.memory), walltime=str(req.walltime)),
        processes=processes, lifetime=lifetime, lifetime_stagger=stagger, interface=interface,
        inherit_env=inherit_env,
    )
    shape = WorkerShape(cores=req.cores, memory_mb=int(req.memory) // 2**20,
                        processes=processes, walltime=walltime, partition=req.queue,
                        account=req.account)
    options = dict(overrides.pop("scheduler_options", None) or {})
    host = scheduler_host or os.environ.get(HOST_ENV)
    if host:
        options.setdefault("host", host)
    kind = client.dialect.capabilities.dask
    if kind not in _CLUSTERS:
        raise ValueError(f"scheduler {client.dialect.name!r} runs no Dask workers")
    return _CLUSTERS[kind](
        hpcb=ctx, shape=shape, caps=caps_for(profile, req), qos=req.qos, poller=poller,
        poll_interval=poll_interval, arrays=arrays, max_failures=max_failures,
        n_workers=n_workers, name=name, asynchronous=asynchronous,
        scheduler_options=options, **overrides)

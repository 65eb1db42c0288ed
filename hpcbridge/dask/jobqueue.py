"""A site profile's Dask worker as plain dask-jobqueue configuration (``jobqueue.yaml``).

For users who run dask-jobqueue without hpcbridge: the same partition, account,
cores, memory, walltime and environment as ``hpcbridge.dask.cluster()`` would use, and a
``--lifetime`` derived from the walltime. Limits are not enforced there; the file says so.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import yaml

from hpcbridge.dask.build import worker_request
from hpcbridge.dask.limits import lifetime_options
from hpcbridge.profiles import SiteProfile
from hpcbridge.profiles.render import _setup_lines

HEADER = (
    "# dask-jobqueue configuration exported from hpcbridge site profile {site!r}\n"
    "# (cluster {cluster}, partition {partition}). Put it in ~/.config/dask/jobqueue.yaml.\n"
    "# Plain dask-jobqueue does not know your QOS, account or budget limits: prefer\n"
    "# hpcbridge.dask.cluster(), which clamps scaling to them.\n"
)


def jobqueue_config(profile: SiteProfile, user: str = "user") -> dict[str, Any]:
    """``{"jobqueue": {"slurm" | "pbs": {...}}}`` for the profile's ``dask.worker``."""
    req, processes = worker_request(profile, user, "dask-worker")
    cluster = profile.clusters[req.cluster]
    env = cluster.environments[req.environment]
    lifetime, stagger = lifetime_options(timedelta(seconds=int(req.walltime)))
    section: dict[str, Any] = {
        "name": "dask-worker",
        "cores": req.cores,
        "memory": f"{int(req.memory) // 2**30}GiB" if int(req.memory) % 2**30 == 0
        else f"{int(req.memory) // 2**20}MiB",
        "processes": processes,
        "queue": req.queue,
        "walltime": str(req.walltime),
        "worker-extra-args": [f"--lifetime={int(lifetime.total_seconds())}s",
                              f"--lifetime-stagger={int(stagger.total_seconds())}s"],
        "job-script-prologue": _setup_lines(env),
    }
    if req.account:
        section["account"] = req.account
    if env.python:
        section["python"] = env.python
    if cluster.scheduler == "slurm" and (req.qos or req.constraint):
        section["job-extra-directives"] = [f"--{k}={v}" for k, v in
                                           (("qos", req.qos), ("constraint", req.constraint))
                                           if v]
    if cluster.scheduler == "pbs" and req.account:
        section["account"] = req.account
    return {"jobqueue": {"slurm" if cluster.scheduler == "slurm" else "pbs": section}}


def jobqueue_yaml(profile: SiteProfile, user: str = "user") -> str:
    config = jobqueue_config(profile, user)
    kind = next(iter(config["jobqueue"]))
    section = config["jobqueue"][kind]
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    return HEADER.format(site=profile.site, cluster=profile.cluster_name(None),
                         partition=section["queue"]) + text

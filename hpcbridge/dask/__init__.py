"""Dask workers as batch jobs, within the user's allocation (issue E).

    import hpcbridge.dask
    cluster = hpcbridge.dask.cluster()        # sized by the site profile's dask.worker
    cluster.scale(10)                          # clamped to what QOS/account/budget allow
    cluster.adapt(maximum=40)                  # whole jobs only; replaces retired workers

Modules: ``limits`` (pure: what a user may still run), ``facts`` (reading limits and
jobs from the scheduler), ``job`` (worker jobs submitted through hpcbridge),
``clusters`` (the SLURMCluster / PBSCluster subclasses), ``build`` (the entry point),
``jobqueue`` (a profile as plain dask-jobqueue configuration), ``worker`` (array task
entry point on the nodes). Importing this package imports no Dask: the names below load
on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "cluster": "hpcbridge.dask.build",
    "JOB_PREFIX": "hpcbridge.dask.build",
    "HpcSlurmCluster": "hpcbridge.dask.clusters",
    "HpcPbsCluster": "hpcbridge.dask.clusters",
    "jobqueue_config": "hpcbridge.dask.jobqueue",
    "jobqueue_yaml": "hpcbridge.dask.jobqueue",
}

__all__ = [
    "JOB_PREFIX",
    "HpcPbsCluster",
    "HpcSlurmCluster",
    "cluster",
    "jobqueue_config",
    "jobqueue_yaml",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hpcbridge.dask' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)

"""Notebooks as batch jobs (issue 15): jupyter-scheduler's "Create Job" submits the
notebook as a batch job of the user, run by papermill on a compute node.

    jupyter server --SchedulerApp.scheduler_class=hpcbridge.batch.HpcScheduler \
                   --SchedulerApp.environment_manager_class=hpcbridge.batch.ProfileEnvironments

(the notebook servers HpcSpawner starts have both set). Modules: ``request`` (pure: the
profile's gate and the notebook's parameters), ``spec`` (the job folder's files; standard
library only), ``status`` (pure: what the job list shows), ``runner`` (the job's command
on the node), ``scheduler`` and ``environments`` (the jupyter-scheduler classes). Importing
this package imports no Jupyter: the names below load on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "HpcScheduler": "hpcbridge.batch.scheduler",
    "BatchFeatures": "hpcbridge.batch.scheduler",
    "ProfileEnvironments": "hpcbridge.batch.environments",
}

__all__ = ["BatchFeatures", "HpcScheduler", "ProfileEnvironments"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hpcbridge.batch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)

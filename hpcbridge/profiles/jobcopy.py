"""The site profile as code inside a user's job sees it (batch notebooks, Dask).

The hub's profile file lives on the hub's host and may hold what a user must not read (the
hub's database URL with its password, the SSH keys' paths). The spawner therefore hands
each notebook server a *job copy* in its private environment (``HPCBRIDGE_SITE_PROFILE_JSON``):
the same clusters, partitions, limits, environments and presets, so a batch job passes the
very gate a spawn passes, with the hub's settings left out and every cluster's transport
local (in a job, scheduler commands run on the node, as the user).
"""

from __future__ import annotations

import os
from pathlib import Path

from hpcbridge.errors import ProfileError
from hpcbridge.profiles.loader import load_profile
from hpcbridge.profiles.model import Dask, Hub, LocalTransport, SiteProfile

#: a profile file (on the machine the code runs on)
PROFILE_ENV = "HPCBRIDGE_SITE_PROFILE"
#: the job copy of the hub's profile, as JSON (set by the spawner)
JOB_PROFILE_ENV = "HPCBRIDGE_SITE_PROFILE_JSON"


def job_copy(profile: SiteProfile, cluster: str | None = None) -> SiteProfile:
    """``profile`` without its hub settings, every cluster's transport local (no sudo).

    ``cluster``: the cluster the job runs on. The copy then holds that cluster only (its
    local transport reaches no other), as the default of presets and Dask workers: code
    in the job submits to its own cluster, under that cluster's limits. Presets of other
    clusters are left out; Dask worker defaults naming another cluster fall back to this
    cluster's defaults for what it lacks.
    """
    local = LocalTransport(sudo=False)
    names = [cluster] if cluster else list(profile.clusters)
    clusters = {name: profile.clusters[name].model_copy(update={"transport": local})
                for name in names}
    update: dict[str, object] = {"clusters": clusters, "hub": Hub()}
    if cluster:
        update["default_cluster"] = cluster
        update["notebooks"] = [p for p in profile.notebooks
                               if profile.cluster_name(p.cluster) == cluster]
        update["dask"] = _dask_on(profile, cluster)
    return profile.model_copy(update=update)


def _dask_on(profile: SiteProfile, cluster: str) -> Dask:
    """The profile's Dask settings with the worker on ``cluster``."""
    worker, config = profile.dask.worker, profile.clusters[cluster]
    if profile.cluster_name(worker.cluster) == cluster:
        return profile.dask
    update: dict[str, object] = {"cluster": cluster, "account": None}
    if worker.partition not in config.partitions:
        update["partition"] = None
    if worker.environment not in config.environments:
        update["environment"] = None
    return profile.dask.model_copy(update={"worker": worker.model_copy(update=update)})


def job_copy_json(profile: SiteProfile, cluster: str | None = None) -> str:
    return job_copy(profile, cluster).model_dump_json(exclude_none=True)


def profile_in_job(path: str | Path | None = None) -> SiteProfile:
    """The profile at ``path``, else ``$HPCBRIDGE_SITE_PROFILE``'s file, else the job copy
    the spawner passed; ProfileError when there is none."""
    path = path or os.environ.get(PROFILE_ENV)
    if path:
        return load_profile(path)
    text = os.environ.get(JOB_PROFILE_ENV)
    if text:
        try:
            return SiteProfile.model_validate_json(text)
        except ValueError as exc:
            raise ProfileError([f"{JOB_PROFILE_ENV}: not a site profile: {exc}"]) from None
    raise ProfileError([f"no site profile: pass one, or set {PROFILE_ENV} to its path "
                        f"(notebook servers started by the hub have {JOB_PROFILE_ENV})"])

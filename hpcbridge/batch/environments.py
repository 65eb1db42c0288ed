"""The Create Job dialog's choices from the site profile
(``SchedulerApp.environment_manager_class``): each environment of the server's cluster is
a *runtime environment*, and the cluster's notebook presets are its *compute types*."""

from __future__ import annotations

import os

from jupyter_scheduler.environments import EnvironmentManager
from jupyter_scheduler.models import RuntimeEnvironment

from hpcbridge.batch.spec import FORMATS
from hpcbridge.profiles import SiteProfile
from hpcbridge.profiles.jobcopy import profile_in_job

#: which cluster of the profile the server runs on (as HpcScheduler.cluster); optional
CLUSTER_ENV = "HPCBRIDGE_CLUSTER"
_LABELS = {"ipynb": "Notebook", "html": "HTML"}


def environments(profile: SiteProfile, cluster: str | None = None) -> list[RuntimeEnvironment]:
    name = profile.cluster_name(cluster)
    config = profile.clusters[name]
    presets = [p.name for p in profile.notebooks if profile.cluster_name(p.cluster) == name]
    return [
        RuntimeEnvironment(
            name=env_name, label=env_name,
            description=env.description or f"Environment {env_name} of cluster {name}",
            file_extensions=["ipynb"], output_formats=list(FORMATS), metadata={},
            compute_types=presets or None, default_compute_type=presets[0] if presets else None,
            utc_only=False)
        for env_name, env in config.environments.items()
    ]


class ProfileEnvironments(EnvironmentManager):
    """The profile's environments and presets (the profile as ``HpcScheduler`` finds it,
    ``hpcbridge/profiles/jobcopy.py``)."""

    def __init__(self, profile: SiteProfile | None = None, cluster: str | None = None) -> None:
        self.profile = profile or profile_in_job()
        self.cluster = cluster or os.environ.get(CLUSTER_ENV) or None

    def list_environments(self) -> list[RuntimeEnvironment]:
        return environments(self.profile, self.cluster)

    def manage_environments_command(self) -> str:
        return ""

    def output_formats_mapping(self) -> dict[str, str]:
        return dict(_LABELS)

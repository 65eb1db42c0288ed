"""Site profiles: the typed model of a supercomputer center.

    load_profile(path) / load_profile_text(text, path)   YAML -> SiteProfile, or
                                                         ProfileError with every problem
    load_bundled_profile("testbed")                      the profiles shipped with hpcbridge
    validate_request(profile, JobRequest) -> ValidatedRequest   the one gate for requests
    render_script(profile, request) -> str               the exact SLURM / PBS batch script
    json_schema() -> dict                                for editors' YAML language servers

Everything here is pure apart from reading the profile file.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

from hpcbridge.profiles.loader import load_profile, load_profile_text
from hpcbridge.profiles.model import (
    Accounts,
    Cluster,
    Conda,
    Container,
    Dask,
    DaskCaps,
    DaskWorker,
    Environment,
    Hub,
    LocalTransport,
    NotebookPreset,
    Partition,
    SiteProfile,
    SshTransport,
)
from hpcbridge.profiles.render import render_script
from hpcbridge.profiles.request import (
    USER_OPTION_KEYS,
    JobRequest,
    ValidatedRequest,
    validate_request,
)
from hpcbridge.profiles.types import Memory, Walltime

#: profiles shipped inside the package (hpcbridge/profiles/data/NAME.yaml)
BUNDLED_PROFILES = ("testbed", "testbed-pbs")
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def bundled_profile_text(name: str = "testbed") -> str:
    """The YAML text of a bundled profile."""
    if name not in BUNDLED_PROFILES:
        raise ValueError(f"no bundled profile {name!r}; bundled: {', '.join(BUNDLED_PROFILES)}")
    return resources.files(__name__).joinpath("data", f"{name}.yaml").read_text("utf-8")


def bundled_profile_path(name: str = "testbed") -> str:
    """The file of a bundled profile (for a hub's configuration, which takes a path)."""
    if name not in BUNDLED_PROFILES:
        raise ValueError(f"no bundled profile {name!r}: {', '.join(BUNDLED_PROFILES)}")
    return str(resources.files("hpcbridge.profiles") / "data" / f"{name}.yaml")


def load_bundled_profile(
    name: str = "testbed", env: Mapping[str, str] | None = None
) -> SiteProfile:
    """Load a bundled profile; ``env`` fills its ``${VAR}`` settings (default: os.environ)."""
    return load_profile_text(bundled_profile_text(name), f"<bundled {name}.yaml>", env)


def json_schema() -> dict[str, Any]:
    """JSON schema of site profiles, with a description for every key."""
    schema = SiteProfile.model_json_schema()
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "hpcbridge site profile"}


__all__ = [
    "BUNDLED_PROFILES",
    "USER_OPTION_KEYS",
    "Accounts",
    "Cluster",
    "Conda",
    "Container",
    "Dask",
    "DaskCaps",
    "DaskWorker",
    "Environment",
    "Hub",
    "JobRequest",
    "LocalTransport",
    "Memory",
    "NotebookPreset",
    "Partition",
    "SiteProfile",
    "SshTransport",
    "ValidatedRequest",
    "Walltime",
    "bundled_profile_path",
    "bundled_profile_text",
    "json_schema",
    "load_bundled_profile",
    "load_profile",
    "load_profile_text",
    "render_script",
    "validate_request",
]

"""Site profiles: the typed model of a supercomputer center.

    load_profile(path) / load_profile_text(text, path)   YAML -> SiteProfile, or
                                                         ProfileError with every problem
    validate_request(profile, JobRequest) -> ValidatedRequest   the one gate for requests
    render_script(profile, request) -> str               the exact SLURM / PBS batch script
    json_schema() -> dict                                for editors' YAML language servers

Everything here is pure apart from reading the profile file.
"""

from __future__ import annotations

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

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """JSON schema of site profiles, with a description for every key."""
    schema = SiteProfile.model_json_schema()
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "hpcbridge site profile"}


__all__ = [
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
    "json_schema",
    "load_profile",
    "load_profile_text",
    "render_script",
    "validate_request",
]

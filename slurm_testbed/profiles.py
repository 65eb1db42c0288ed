"""The testbed's site profiles, shipped with the testbed (``site_profiles/*.yaml`` beside
this module; the same text as the repository's ``site_profiles/testbed*.yaml``).

They reach the testbed through ``${HPCBRIDGE_TESTBED_*}`` variables, which
:meth:`slurm_testbed.cluster.Testbed.profile_env` gives for a running testbed; the
second cluster of ``testbed-two-clusters`` through ``${HPCBRIDGE_TESTBED2_*}``
(:func:`two_cluster_env`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from typing import Any

from hpcbridge.profiles import SiteProfile, load_profile_text
from hpcbridge.site import Site

#: the profiles shipped here (site_profiles/NAME.yaml)
BUNDLED_PROFILES = ("testbed", "testbed-pbs", "testbed-two-clusters")
#: the profile of two testbeds behind one hub, and the variables of its second cluster
TWO_CLUSTERS = "testbed-two-clusters"
SECOND_PREFIX = "HPCBRIDGE_TESTBED2"


def _file(name: str):
    if name not in BUNDLED_PROFILES:
        raise ValueError(f"no bundled profile {name!r}; bundled: {', '.join(BUNDLED_PROFILES)}")
    return resources.files(__package__).joinpath("site_profiles", f"{name}.yaml")


def bundled_profile_text(name: str = "testbed") -> str:
    """The YAML text of a testbed profile."""
    return _file(name).read_text("utf-8")


def bundled_profile_path(name: str = "testbed") -> str:
    """The file of a testbed profile (for a hub's configuration, which takes a path)."""
    return str(_file(name))


def load_bundled_profile(
    name: str = "testbed", env: Mapping[str, str] | None = None
) -> SiteProfile:
    """Load a testbed profile; ``env`` fills its ``${VAR}`` settings (default: os.environ)."""
    return load_profile_text(bundled_profile_text(name), f"<bundled {name}.yaml>", env)


def two_cluster_env(first: Any, second: Any) -> dict[str, str]:
    """The variables of testbed-two-clusters.yaml for two running testbeds: cluster
    ``tb`` is ``first``, cluster ``tb22`` is ``second``."""
    return {**first.profile_env(), **second.profile_env(SECOND_PREFIX)}


def site_on_testbed(testbed: Any, name: str = "testbed", **kw: float) -> Site:
    """A :class:`hpcbridge.site.Site` on a running ``Testbed``, with its bundled profile."""
    return Site(load_bundled_profile(name, {**os.environ, **testbed.profile_env()}), **kw)

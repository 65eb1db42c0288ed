"""One :class:`~hpcbridge.site.Site` per profile path in the hub process, made on first use."""

from __future__ import annotations

import os

from hpcbridge.errors import HpcBridgeError
from hpcbridge.site import Site

_SITES: dict[str, Site] = {}


def site_for(profile_path: str, status_interval: float) -> Site:
    if not profile_path:
        raise HpcBridgeError("HpcSpawner.site_profile is not set: the hub has no site profile "
                             "(configure(c, site_profile=PATH) sets it)")
    if profile_path not in _SITES:
        _SITES[profile_path] = Site.load(profile_path, env=os.environ,
                                         poll_interval=status_interval)
    return _SITES[profile_path]

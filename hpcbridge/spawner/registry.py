"""One :class:`~hpcbridge.site.Site` per profile path in the hub process, made on first use."""

from __future__ import annotations

import os

from hpcbridge.site import Site

_SITES: dict[str, Site] = {}


def site_for(profile_path: str, status_interval: float) -> Site:
    key = profile_path or "<bundled testbed>"
    if key not in _SITES:
        _SITES[key] = Site.load(profile_path or None, env=os.environ,
                                poll_interval=status_interval)
    return _SITES[key]

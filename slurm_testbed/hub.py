"""A hub on a running testbed (what ``hpcbridge up`` starts when no site profile is given)."""

from __future__ import annotations

from hpcbridge.hubrun import Directory, Hub
from slurm_testbed import ldap
from slurm_testbed.cluster import Testbed
from slurm_testbed.profiles import bundled_profile_path


def up_hub(hub: Hub, tb: Testbed, users: list[str], interval: float = 30.0,
           site: str = "", db_url: str | None = None) -> dict:
    """Start ``hub`` for ``tb``: compute nodes reach it at the testbed network's gateway,
    people on loopback, and ``users`` log in with their directory passwords.

    ``site``: a profile for the testbed (default: the bundled testbed.yaml); ``db_url``:
    its database (default: SQLite in the hub's folder), e.g. one on the testbed's
    PostgreSQL (``Testbed.hub_db_url``)."""
    site = site or bundled_profile_path("testbed")
    info = tb.info()
    gateway = info.gateway_ip
    connect = f"http://{gateway}:{hub.hub_port}"
    env = {**tb.profile_env(), "HPCBRIDGE_HUB_CONNECT_URL": connect}
    directory = Directory(info.containers["ldap"], ldap.BIND_DN_TEMPLATE,
                          ldap.passwords(tb.state_dir))
    return hub.up(site=site, env=env, hub_ip=gateway, connect_url=connect, users=users,
                  interval=interval, db_url=db_url, directory=directory)

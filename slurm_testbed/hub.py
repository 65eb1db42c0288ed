"""A hub on a running testbed (what ``hpcbridge up`` starts when no site profile is given)."""

from __future__ import annotations

from hpcbridge.hubrun import Hub
from slurm_testbed import ldap
from slurm_testbed.cluster import Testbed
from slurm_testbed.profiles import bundled_profile_path

#: the testbed's users log in with their directory passwords (LDAP, as at a center)
DIRECTORY_LOGINS = '''c.JupyterHub.authenticator_class = (
    "hpcbridge.spawner.ldapauth.DirectoryAuthenticator")
c.LDAPAuthenticator.server_address = {server!r}
c.LDAPAuthenticator.server_port = 389
c.LDAPAuthenticator.tls_strategy = "insecure"  # the testbed's own network; a center: TLS
c.LDAPAuthenticator.bind_dn_template = [{template!r}]
c.Authenticator.allow_all = True  # any directory user (a center would name a group)
c.Authenticator.allowed_users = set({users!r})  # known to the hub before they log in
'''


def up_hub(hub: Hub, tb: Testbed, users: list[str], interval: float = 30.0,
           site: str = "", db_url: str | None = None, extra_config: str = "") -> dict:
    """Start ``hub`` for ``tb``: compute nodes reach it at the testbed network's gateway,
    people on loopback, and ``users`` log in with their directory passwords (which
    `status` reports).

    ``site``: a profile for the testbed (default: the bundled testbed.yaml); ``db_url``:
    its database (default: SQLite in the hub's folder), e.g. one on the testbed's
    PostgreSQL (``Testbed.hub_db_url``); ``extra_config``: lines of JupyterHub
    configuration appended after the rest."""
    site = site or bundled_profile_path("testbed")
    info = tb.info()
    gateway = info.gateway_ip
    connect = f"http://{gateway}:{hub.hub_port}"
    env = {**tb.profile_env(), "HPCBRIDGE_HUB_CONNECT_URL": connect}
    known = ldap.passwords(tb.state_dir)
    logins = DIRECTORY_LOGINS.format(server=info.containers["ldap"],
                                     template=ldap.BIND_DN_TEMPLATE, users=sorted(users))
    return hub.up(site=site, env=env, hub_ip=gateway, connect_url=connect,
                  interval=interval, db_url=db_url, logins=logins + extra_config,
                  passwords={u: known[u] for u in users if u in known})

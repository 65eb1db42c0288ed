"""A hub on a running testbed (what ``hpcbridge up`` starts when no site profile is given)."""

from __future__ import annotations

from hpcbridge.hubrun import Hub
from slurm_testbed import ldap
from slurm_testbed.cluster import PYTHON, Testbed
from slurm_testbed.errors import TestbedError
from slurm_testbed.profiles import SECOND_PREFIX, TWO_CLUSTERS, bundled_profile_path

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
           site: str = "", db_url: str | None = None, extra_config: str = "",
           second: Testbed | None = None) -> dict:
    """Start ``hub`` for ``tb``: compute nodes reach it at the testbed network's gateway,
    people on loopback, and ``users`` log in with their directory passwords (which
    `status` reports).

    ``site``: a profile for the testbed (default: the bundled testbed.yaml, or with
    ``second`` testbed-two-clusters.yaml); ``db_url``: its database (default: SQLite in
    the hub's folder), e.g. one on the testbed's PostgreSQL (``Testbed.hub_db_url``);
    ``extra_config``: lines of JupyterHub configuration appended after the rest;
    ``second``: another running testbed, cluster ``tb22`` of the two-cluster profile. Its
    nodes reach the hub at the same address (the host routes between the two networks;
    checked once the hub answers), and people log in against ``tb``'s directory."""
    site = site or bundled_profile_path(TWO_CLUSTERS if second else "testbed")
    info = tb.info()
    gateway = info.gateway_ip
    connect = f"http://{gateway}:{hub.hub_port}"
    env = {**tb.profile_env(), "HPCBRIDGE_HUB_CONNECT_URL": connect}
    if second is not None:
        env.update(second.profile_env(SECOND_PREFIX))
    known = ldap.passwords(tb.state_dir)
    logins = DIRECTORY_LOGINS.format(server=info.containers["ldap"],
                                     template=ldap.BIND_DN_TEMPLATE, users=sorted(users))
    status = hub.up(site=site, env=env, hub_ip=gateway, connect_url=connect,
                    interval=interval, db_url=db_url, logins=logins + extra_config,
                    passwords={u: known[u] for u in users if u in known})
    if second is not None:
        check_hub_reachable(second, connect)
    return status


def check_hub_reachable(tb: Testbed, connect: str) -> None:
    """TestbedError unless a compute node of ``tb`` reaches the hub at ``connect`` (a
    container engine that isolates its networks from each other would stop it)."""
    probe = ("import sys, urllib.request\n"
             "urllib.request.urlopen(sys.argv[1] + '/hub/api/', timeout=10)")
    node = tb.info().nodes[0]
    proc = tb.exec(node, [PYTHON, "-c", probe, connect], timeout=30)
    if proc.returncode != 0:
        raise TestbedError(
            f"compute node {node} of testbed {tb.name} cannot reach the hub at {connect}: "
            f"{proc.stderr.decode(errors='replace').strip()[-300:]} (the container engine "
            "must route between the two testbeds' networks and the host)")

"""The idle culler's service configuration (its live test: tests/testbed/test_idle_culler.py)."""

from __future__ import annotations

import sys

import pytest
from traitlets.config import Config

from hpcbridge.spawner.culler import add_idle_culler, culler_command


def test_the_culler_runs_in_the_hubs_python_with_its_timeouts() -> None:
    assert culler_command(3600) == [sys.executable, "-m", "jupyterhub_idle_culler",
                                    "--timeout=3600"]
    assert culler_command(20, cull_every=5, max_age=600)[3:] == [
        "--timeout=20", "--cull-every=5", "--max-age=600"]
    with pytest.raises(ValueError):
        culler_command(0)


def test_the_culler_gets_a_role_that_can_stop_servers_and_nothing_more() -> None:
    c = Config()
    c.JupyterHub.services = [{"name": "other"}]
    c.JupyterHub.load_roles = []
    add_idle_culler(c, timeout=900)
    assert c.JupyterHub.services[0] == {"name": "other"}
    assert c.JupyterHub.services[1]["name"] == "idle-culler"
    assert "--timeout=900" in c.JupyterHub.services[1]["command"]
    (role,) = c.JupyterHub.load_roles
    assert role == {"name": "idle-culler", "services": ["idle-culler"],
                    "scopes": ["list:users", "read:users:activity", "read:servers",
                               "delete:servers"]}

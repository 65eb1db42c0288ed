"""Culling idle servers with jupyterhub-idle-culler, as a service of the hub.

The culler stops a server nobody used for ``timeout`` seconds through the hub's API;
the stop is HpcSpawner's like any other: the server's job is cancelled, and so are the
Dask worker jobs that server started (named after its job, ``hpcbridge/jobs.py``), so
nothing of the user's allocation keeps running for a session nobody uses
(``docs/admin/hub.md``, "Culling idle servers"; live test:
``tests/testbed/test_idle_culler.py``).
"""

from __future__ import annotations

import sys
from typing import Any

#: the name of the culler's service and role
SERVICE = "idle-culler"
#: what the culler needs of the hub's API (JupyterHub's scopes), and nothing more
SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")


def culler_command(timeout: int, cull_every: int = 0, max_age: int = 0,
                   python: str = sys.executable) -> list[str]:
    """The service's argv: jupyterhub-idle-culler in the hub's Python. ``cull_every``:
    seconds between two checks (0: half the timeout); ``max_age``: stop servers this old
    even when they are used (0: never)."""
    if timeout <= 0 or cull_every < 0 or max_age < 0:
        raise ValueError("timeout must be positive, cull_every and max_age not negative")
    argv = [python, "-m", "jupyterhub_idle_culler", f"--timeout={int(timeout)}"]
    if cull_every:
        argv.append(f"--cull-every={int(cull_every)}")
    if max_age:
        argv.append(f"--max-age={int(max_age)}")
    return argv


def add_idle_culler(c: Any, timeout: int = 3600, cull_every: int = 0,
                    max_age: int = 0) -> None:
    """Run the idle culler as a service of this hub (``c``: JupyterHub's config), with a
    role of its own that can only list users, read their activity and stop servers."""
    c.JupyterHub.services.append(
        {"name": SERVICE, "command": culler_command(timeout, cull_every, max_age)})
    c.JupyterHub.load_roles.append(
        {"name": SERVICE, "scopes": list(SCOPES), "services": [SERVICE]})

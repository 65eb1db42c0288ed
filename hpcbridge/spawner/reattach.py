"""Re-attach notebook jobs that were pending when the hub stopped.

JupyterHub re-checks servers that were *running* when it restarts, but forgets servers
that were still starting: their spawner state (the job id, saved by HpcSpawner the moment
the job was submitted) stays in the database with no server. Left alone, such a job would
start later and run, unreachable, until its walltime.

This runs as a JupyterHub managed service (installed by ``configure``): after the hub
starts it finds stopped servers whose state names a job and starts them again through the
REST API; :meth:`HpcSpawner.start` sees the job id, asks the scheduler, and re-attaches to
the job if it is still alive (or forgets it and submits nothing if it is gone... which
JupyterHub then reports as a failed start). It needs the scopes ``list:users``,
``read:users``, ``admin:server_state`` and ``servers``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from urllib.parse import quote

import requests

log = logging.getLogger("hpcbridge.reattach")
SERVICE = "hpcbridge-reattach"
SCOPES = ["list:users", "read:users", "admin:server_state", "servers", "read:servers"]


def detached_servers(users: list[dict]) -> Iterator[tuple[str, str, str]]:
    """(user, server name, job id) of servers that are neither running nor starting but
    whose saved state names a batch job."""
    for user in users:
        for name, server in (user.get("servers") or {}).items():
            job_id = (server.get("state") or {}).get("job_id")
            if job_id and not server.get("ready") and not server.get("pending"):
                yield user["name"], name, job_id


def reattach_once(api_url: str, token: str) -> list[str]:
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    r = session.get(f"{api_url}/users", params={"include_stopped_servers": "1",
                                                "limit": "10000"}, timeout=60)
    r.raise_for_status()
    users = r.json()
    users = users.get("items", users) if isinstance(users, dict) else users
    done = []
    for user, name, job_id in detached_servers(users):
        path = f"/users/{quote(user)}/server" + (f"s/{quote(name)}" if name else "")
        resp = session.post(f"{api_url}{path}", json={}, timeout=60)
        log.info("re-attaching %s/%s to job %s: HTTP %s", user, name, job_id, resp.status_code)
        done.append(f"{user}/{name}:{job_id}")
    return done


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[hpcbridge-reattach] %(message)s")
    api_url = os.environ["JUPYTERHUB_API_URL"].rstrip("/")
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    for attempt in range(30):
        try:
            reattach_once(api_url, token)
            break
        except requests.RequestException as exc:
            log.warning("hub not answering yet (%s); retrying", exc)
            time.sleep(min(2 ** attempt, 30))
    # JupyterHub restarts managed services that exit: stay, doing nothing.
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())

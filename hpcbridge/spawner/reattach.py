"""Re-attach notebook jobs that were pending when the hub stopped.

JupyterHub re-checks servers that were *running* when it restarts, but forgets servers
that were still starting: their spawner state (the job id, saved by HpcSpawner the moment
the job was submitted) stays in the database with no server. Left alone, such a job would
start later and run, unreachable, until its walltime.

This runs as a JupyterHub managed service (installed by ``configure``): after the hub
starts it finds stopped servers whose state names a job and starts them again through the
REST API; :meth:`HpcSpawner.start` sees the job id, asks the scheduler, and re-attaches to
the job if it is still alive (or forgets it and submits a new one if it is gone). The job
reports its port with the token of the start that submitted it, which becomes the server's
token again, so that its OAuth client matches (docs/architecture.md, "Re-attach"). It
needs the scopes ``list:users``, ``read:users``, ``admin:server_state`` and ``servers``.

Then it sweeps orphans: queued or running notebook jobs that no server of the hub refers
to — e.g. a job whose submission returned while the hub was being killed — are
cancelled, as their owner. The hub knows its users and their servers, so it knows the
exact names its notebook jobs have (``hpcb-nb[.<tag>]-<user>[-<server>]``, letters,
digits and ``_.-`` only; a job tag keeps two hubs on one cluster apart) and asks the
scheduler for jobs of exactly those names. A job is an orphan only if its owner and name
are a pair this hub would have produced, for a user the hub may act as
(``hpcbridge/identity.py``), and no server refers to its id: a name another user chose
(free text, newlines included) can neither add a record nor claim someone's job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from urllib.parse import quote

import requests

from hpcbridge.errors import HpcBridgeError
from hpcbridge.spawner import jobenv

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


def referenced_jobs(users: list[dict], default_cluster: str = "") -> set[tuple[str, str]]:
    """(cluster, job id) of every job a server's state names. Ids are per cluster (two
    clusters both have a job 1); a state saved without a cluster is the default's."""
    return {((server.get("state") or {}).get("cluster") or default_cluster, job)
            for user in users for server in (user.get("servers") or {}).values()
            if (job := (server.get("state") or {}).get("job_id"))}


def list_users(session: requests.Session, api_url: str) -> list[dict]:
    r = session.get(f"{api_url}/users", params={"include_stopped_servers": "1",
                                                "limit": "10000"}, timeout=60)
    r.raise_for_status()
    users = r.json()
    return users.get("items", users) if isinstance(users, dict) else users


def owned_jobs(users: list[dict], tag: str = "") -> set[tuple[str, str]]:
    """(user, job name) of every notebook job this hub could have submitted: one per
    server the hub knows (the default server always)."""
    return {(user["name"], jobenv.job_name(user["name"], server, tag))
            for user in users for server in {"", *(user.get("servers") or {})}}


async def sweep_orphans(site, users: list[dict], again, tag: str = "") -> list[str]:
    """Cancel this hub's notebook jobs that no server refers to, cluster by cluster;
    ``again()`` re-reads the users after the scheduler query, so a job submitted
    meanwhile is never taken for one. A cluster that cannot be asked now is skipped (its
    orphans wait for the next sweep); the others are swept."""
    cancelled: list[str] = []
    found = 0
    for name in site.profile.clusters:
        try:
            jobs, gone = await _sweep_cluster(site, name, users, again, tag)
        except HpcBridgeError as exc:
            log.warning("orphan sweep of cluster %s skipped: %s", name, exc)
            continue
        found += jobs
        cancelled += gone
    log.info("orphan sweep done: %d notebook jobs of this hub queued or running, "
             "%d cancelled", found, len(cancelled))
    return cancelled


async def _sweep_cluster(site, name: str, users: list[dict], again, tag: str
                         ) -> tuple[int, list[str]]:
    """(notebook jobs of this hub found, ids cancelled) on cluster ``name``."""
    cluster, client = site.profile.clusters[name], site.client(name)
    may = set(await site.identity.allowed_users(name, [u["name"] for u in users]))
    allowed = [u for u in users if u["name"] in may]
    owned = owned_jobs(allowed, tag)
    if cluster.status_user:
        asks = [(cluster.status_user, {n for _, n in owned})]
    else:  # one query per user, as that user, for her own names
        asks = [(u["name"], {n for who, n in owned if who == u["name"]}) for u in allowed]
    jobs = []
    for who, names in asks:
        jobs += await client.active_jobs(sorted(names), as_user=who)
    default = site.cluster_name(None)
    known = {job for where, job in referenced_jobs(users, default)
             | referenced_jobs(again(), default) if where == name}
    cancelled = []
    for job in jobs:
        if (job.user, job.name) in owned and job.job_id not in known:
            log.warning("cancelling orphaned notebook job %s of %s (%s) on cluster %s",
                        job.job_id, job.user, job.name, name)
            await client.cancel(job.user, [job.job_id])
            cancelled.append(job.job_id)
    return len(jobs), cancelled


def reattach_once(api_url: str, token: str) -> list[str]:
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    users = list_users(session, api_url)
    done = []
    for user, name, job_id in detached_servers(users):
        path = f"/users/{quote(user)}/server" + (f"s/{quote(name)}" if name else "")
        resp = session.post(f"{api_url}{path}", json={}, timeout=60)
        log.info("re-attaching %s/%s to job %s: HTTP %s", user, name, job_id, resp.status_code)
        done.append(f"{user}/{name}:{job_id}")
    if os.environ.get("HPCBRIDGE_SITE_PROFILE") is not None:
        from hpcbridge.site import Site

        site = Site.load(os.environ["HPCBRIDGE_SITE_PROFILE"], env=os.environ)

        async def sweep() -> list[str]:
            try:
                return await sweep_orphans(site, users, lambda: list_users(session, api_url),
                                           os.environ.get("HPCBRIDGE_JOB_TAG", ""))
            finally:
                await site.close()

        asyncio.run(sweep())
    return done


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[hpcbridge-reattach] %(message)s")
    hub_pid = os.getppid()
    api_url = os.environ["JUPYTERHUB_API_URL"].rstrip("/")
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    for attempt in range(30):
        try:
            reattach_once(api_url, token)
            break
        except requests.RequestException as exc:
            log.warning("hub not answering yet (%s); retrying", exc)
            time.sleep(min(2 ** attempt, 30))
    # JupyterHub restarts managed services that exit: stay, doing nothing, until the hub
    # that started this process is gone (a killed hub does not stop its services).
    try:
        while os.getppid() == hub_pid:
            time.sleep(5)
    except KeyboardInterrupt:  # the hub stops its services with SIGINT/SIGTERM
        pass


if __name__ == "__main__":
    main()

"""A site at run time: for each cluster of a profile, one scheduler client and one poller.

The spawner and the Dask code share a :class:`Site` per process, so a hub with hundreds of
servers keeps one SSH connection per identity and one batched status query per cluster
per interval. Nothing connects until first used.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from hpcbridge.client import SchedulerClient
from hpcbridge.errors import HpcBridgeError, ProfileError, SchedulerUnavailable, Unreachable
from hpcbridge.identity import IdentityGate
from hpcbridge.jobs import JobInfo
from hpcbridge.poller import StatusPoller
from hpcbridge.profiles import Cluster, SiteProfile, load_profile
from hpcbridge.schedulers.base import Budget
from hpcbridge.schedulers import dialect_of
from hpcbridge.transport.base import Transport
from hpcbridge.transport.local import LocalTransport
from hpcbridge.transport.ssh import SshTransport
from hpcbridge.transport.sshca import UserCertificates

log = logging.getLogger(__name__)


def make_transport(cluster: Cluster) -> Transport:
    t = cluster.transport
    if t.kind == "local":
        return LocalTransport(sudo="sudo" if t.sudo else "")
    certificates = keys = None
    if t.user_ca_key:
        certificates = UserCertificates(os.path.expanduser(t.user_ca_key),
                                        validity=60.0 * t.certificate_minutes)
    elif t.key:
        key = os.path.expanduser(t.key)
        keys = key if "{user}" in key else (lambda user, _k=key: _k)
    else:
        raise ValueError("ssh transport without a key or user_ca_key is not supported "
                         "(agent keys are not used)")
    return SshTransport(
        t.host, port=t.port, known_hosts=os.path.expanduser(t.known_hosts), keys=keys,
        certificates=certificates, default_user=cluster.status_user or t.user,
        connect_timeout=t.connect_timeout,
    )


class Site:
    """Clients and pollers for every cluster of one site profile."""

    def __init__(self, profile: SiteProfile, *, poll_interval: float = 30.0) -> None:
        self.profile = profile
        self.poll_interval = poll_interval
        self._clients: dict[str, SchedulerClient] = {}
        self._pollers: dict[str, StatusPoller] = {}
        self._addresses: dict[tuple[str, str], str] = {}
        self._retries: set[asyncio.Task[None]] = set()
        self._cache: dict[tuple, tuple[float, object]] = {}
        self._fetching: dict[tuple, asyncio.Future] = {}
        #: who the hub may act as for a hub user (hpcbridge/identity.py)
        self.identity = IdentityGate(self)

    @classmethod
    def load(cls, path: str | Path, *, env: Mapping[str, str] | None = None,
             **kw: float) -> Site:
        """From a profile file; an empty path is a configuration error, never a default."""
        if not path:
            raise ProfileError(["no site profile given (a path to the site's YAML profile; "
                                "the testbed's is site_profiles/testbed.yaml)"])
        return cls(load_profile(path, env), **kw)

    def cluster(self, name: str | None = None) -> Cluster:
        return self.profile.clusters[self.cluster_name(name)]

    def cluster_name(self, name: str | None = None) -> str:
        return name or self.profile.default_cluster or next(iter(self.profile.clusters))

    def client(self, name: str | None = None) -> SchedulerClient:
        name = self.cluster_name(name)
        if name not in self._clients:
            cluster = self.profile.clusters[name]
            dialect = dialect_of(cluster)
            self._clients[name] = SchedulerClient(dialect, make_transport(cluster))
        return self._clients[name]

    def poller(self, name: str | None = None) -> StatusPoller:
        """The cluster's shared poller, started on first use (needs a running loop)."""
        name = self.cluster_name(name)
        if name not in self._pollers:
            cluster = self.profile.clusters[name]
            poller = StatusPoller(
                self.client(name), interval=self.poll_interval,
                query_as=cluster.status_user, per_user=cluster.status_user is None,
            )
            poller.start()
            self._pollers[name] = poller
        return self._pollers[name]

    def outage(self, name: str | None = None) -> str | None:
        """Why the cluster's scheduler cannot be asked now (its poller's last round
        failed), or None while it answers or nothing was asked yet."""
        poller = self._pollers.get(self.cluster_name(name))
        if poller is None or not poller.failures:
            return None
        return poller.last_error or "its status queries fail"

    async def recheck(self, name: str | None = None, timeout: float = 5.0) -> None:
        """Ask the cluster's scheduler again now (after an outage, the poller's backoff
        may be minutes long) and wait up to ``timeout`` seconds for the answer."""
        await self.poller(name).next_round(timeout)

    async def fresh_info(self, cluster: str | None, job_id: str, user: str | None,
                         timeout: float = 60.0) -> JobInfo | None:
        """The job's state from the poller: what it knows, or its next round's answer.

        Many callers waiting at once (a hub restarting with many servers) share one query.
        """
        poller = self.poller(cluster)
        if job_id in poller.tracked and poller.info(job_id) is not None:
            return poller.info(job_id)
        answer = poller.answer(job_id)
        try:
            poller.track(job_id, user)
            async with asyncio.timeout(timeout):  # never swallows the caller's cancel
                return await answer
        except TimeoutError:
            return None
        finally:
            poller.forget_answer(job_id, answer)

    async def node_address(self, cluster: str | None, node: str,
                           user: str | None = None) -> str:
        """A compute node's address as the login node resolves it (cached); asked as the
        cluster's status user, or as ``user`` where there is none."""
        key = (self.cluster_name(cluster), node)
        if key not in self._addresses:
            who = self.cluster(cluster).status_user or user
            self._addresses[key] = await self.client(cluster).resolve_host(node, as_user=who)
        return self._addresses[key]

    def cancel_later(self, cluster: str | None, user: str, job_id: str | None, *,
                     env_file: str | None = None, pause: float = 5.0,
                     max_pause: float = 300.0, give_up_after: float = 86400.0) -> None:
        """Keep trying, with growing pauses, to remove a job's unread env file and cancel
        the job while the login node or the scheduler cannot be reached."""
        async def retry() -> None:
            wait, left_file = pause, env_file
            deadline = time.monotonic() + give_up_after
            while time.monotonic() < deadline:
                await asyncio.sleep(wait)
                client = self.client(cluster)
                try:
                    if left_file:
                        await client.remove_file(user, left_file)
                        left_file = None
                    if job_id:
                        await client.cancel(user, [job_id])
                    log.info("cancelled job %s of %s after the outage", job_id, user)
                    return
                except (SchedulerUnavailable, Unreachable):
                    wait = min(wait * 2, max_pause)
                except HpcBridgeError as exc:
                    log.error("cannot cancel job %s of %s: %s", job_id, user, exc)
                    return
            log.error("gave up cancelling job %s of %s (file %s)", job_id, user, left_file)

        task = asyncio.get_running_loop().create_task(retry())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _cached(self, key: tuple, ttl: float, fetch):
        """A read-only scheduler answer, shared for ttl seconds (page views cost nothing).

        Callers arriving while it is being fetched wait for that one query: a hundred
        users opening the spawn form at once cost the scheduler one ``sinfo``.
        """
        hit = self._cache.get(key)
        if hit and time.monotonic() - hit[0] < ttl:
            return hit[1]
        pending = self._fetching.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(key, fetch))
            self._fetching[key] = pending
            pending.add_done_callback(lambda _done: self._fetching.pop(key, None))
        # a caller that gives up (a closed page) does not cancel the others' query
        return await asyncio.shield(pending)

    async def _fetch(self, key: tuple, fetch):
        try:
            value = await fetch()
        except HpcBridgeError as exc:
            log.warning("%s: %s", key[0], exc)
            hit = self._cache.get(key)
            return hit[1] if hit else None
        self._cache[key] = (time.monotonic(), value)
        return value

    def cache_age(self, key: tuple) -> float | None:
        """Seconds since the cached answer for ``key`` was fetched; None if there is none."""
        hit = self._cache.get(key)
        return None if hit is None else time.monotonic() - hit[0]

    async def user_accounts(self, cluster: str | None, user: str) -> list[str]:
        """Accounts the user may charge: the profile's static list or her associations."""
        c = self.cluster(cluster)
        if c.accounts.source == "static":
            return list(c.accounts.names)
        assocs = await self._cached(("associations", self.cluster_name(cluster), user), 300,
                                    lambda: self.client(cluster).associations(user))
        return sorted({a.account for a in assocs or []})

    async def availability(self, cluster: str | None = None) -> dict[str, object]:
        """Partition -> Availability, refreshed at most once a minute."""
        c = self.cluster(cluster)
        found = await self._cached(("availability", self.cluster_name(cluster)), 60,
                                   lambda: self.client(cluster).availability(
                                       as_user=c.status_user))
        return {a.partition: a for a in found or []}

    def availability_age(self, cluster: str | None = None) -> float | None:
        """Seconds since :meth:`availability`'s snapshot was taken (None: none yet)."""
        return self.cache_age(("availability", self.cluster_name(cluster)))

    async def budget(self, cluster: str | None, account: str, user: str) -> Budget | None:
        """The account's core-minute budget and use (asked as ``user``, who may charge
        it), shared for a minute; None where the scheduler keeps none or cannot say."""
        if not self.client(cluster).dialect.capabilities.budgets:
            return None
        return await self._cached(("budget", self.cluster_name(cluster), account), 60,
                                  lambda: self.client(cluster).budget(account, as_user=user))

    async def close(self) -> None:
        for poller in self._pollers.values():
            await poller.stop()
        for client in self._clients.values():
            await client.transport.close()
        self._pollers.clear()
        self._clients.clear()

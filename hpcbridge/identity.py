"""Which cluster accounts the hub may act as on behalf of a hub user.

A hub user's name is the identity every command for her runs as (``sudo -u NAME``,
``ssh NAME@login``). JupyterHub lets admins create users with any name, so before the
first command for a hub user (spawn, stop, spawn form, warm pool, orphan sweep) the hub
checks that the name is an ordinary person's account of the cluster:

- never ``root`` or ``nobody``, the cluster's ``status_user``, the transport's own login
  account, the hub process's own account (the local transport runs commands for it
  directly, without sudo), or a name in the cluster's ``deny_users``;
- its uid, read with ``getent passwd`` on the login node, at least the cluster's
  ``min_uid``; its login shell not one of ``deny_shells`` (``nologin``, ``false``: the
  mark of system accounts such as ``slurm`` whose uids are high).

``getent`` runs as the cluster's status user, or the transport's own identity, never as
the user being checked; only an SSH site with neither asks as the user herself, after
the name rules passed (sshd is then the one that lets her in or not). Verdicts are kept
for :data:`TTL` seconds; a login node that cannot answer is an outage, never a pass.
"""

from __future__ import annotations

import getpass
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hpcbridge.errors import HpcBridgeError, IdentityRefused, SchedulerUnavailable, quote
from hpcbridge.profiles import Cluster
from hpcbridge.profiles.types import USER_PATTERN

#: names that are never a person, whatever the site says
ALWAYS_DENIED = frozenset({"root", "nobody"})
#: seconds a verdict is kept (accounts change rarely; a refusal is cheap to repeat)
TTL = 300.0
#: names looked up by one getent
LOOKUP_CHUNK = 200
_USER_RE = re.compile(USER_PATTERN)


@dataclass(frozen=True)
class Account:
    """One ``passwd`` entry as the login node resolves it."""

    name: str
    uid: int
    shell: str


def parse_passwd(stdout: str, user: str) -> Account | None:
    """``user``'s entry in ``getent passwd`` output; None when there is none.

    The name must match exactly: ``getent passwd 0`` answers with root's entry.
    """
    for line in stdout.splitlines():
        fields = line.split(":")
        if len(fields) == 7 and fields[0] == user and fields[2].isdigit():
            return Account(user, int(fields[2]), fields[6].strip())
    return None


def name_refusal(cluster_name: str, cluster: Cluster, user: str,
                 hub_accounts: Iterable[str]) -> str | None:
    """The rule ``user``'s name breaks on this cluster, before anything is asked."""
    if not isinstance(user, str) or not _USER_RE.fullmatch(user):
        return f"{quote(user)} is not a valid user name"
    if user in ALWAYS_DENIED:
        return f"{user} is a system account"
    if user == cluster.status_user:
        return f"{user} is cluster {cluster_name}'s status_user, the hub's service account"
    if user in set(hub_accounts):
        return f"{user} is the hub's own account"
    if user in cluster.deny_users:
        return f"{user} is in cluster {cluster_name}'s deny_users"
    return None


def account_refusal(cluster_name: str, cluster: Cluster, user: str,
                    account: Account | None) -> str | None:
    """The rule ``user``'s account (as the login node knows it) breaks, or None."""
    if account is None:
        return f"the login node of cluster {cluster_name} knows no account {user}"
    if account.uid < cluster.min_uid:
        return (f"{user}'s uid {account.uid} is below cluster {cluster_name}'s min_uid "
                f"{cluster.min_uid}: a system account")
    if account.shell in cluster.deny_shells:
        return f"{user}'s login shell is {account.shell} (nologin): a system account"
    return None


def hub_accounts(cluster: Cluster) -> set[str]:
    """The accounts the hub itself is: its process's and its transport's login."""
    accounts = {getpass.getuser()}
    if cluster.transport.kind == "ssh" and cluster.transport.user:
        accounts.add(cluster.transport.user)
    return accounts


class IdentityGate:
    """Checks hub users against the rules above, for every cluster of a site."""

    def __init__(self, site, *, ttl: float = TTL) -> None:
        self.site = site
        self.ttl = ttl
        self._verdicts: dict[tuple[str, str], tuple[float, str | None]] = {}

    async def check(self, cluster: str | None, user: str) -> None:
        """Return if the hub may act as ``user`` on ``cluster``; raise IdentityRefused
        (naming the rule) if not, SchedulerUnavailable if the login node cannot say."""
        name = self.site.cluster_name(cluster)
        key = (name, user)
        hit = self._verdicts.get(key)
        if hit is None or time.monotonic() - hit[0] > self.ttl:
            hit = (time.monotonic(), await self._refusal(name, user))
            self._verdicts[key] = hit
        if hit[1] is not None:
            raise IdentityRefused(f"the hub does not act as {quote(user)}: {hit[1]}")

    async def allowed(self, cluster: str | None, user: str) -> bool:
        try:
            await self.check(cluster, user)
        except IdentityRefused:
            return False
        return True

    async def allowed_users(self, cluster: str | None, users: Sequence[str]) -> list[str]:
        """Those of ``users`` the hub may act as on ``cluster``, with one ``getent`` per
        :data:`LOOKUP_CHUNK` names not decided yet (an orphan sweep over every hub user)."""
        name = self.site.cluster_name(cluster)
        config = self.site.cluster(name)
        batch = _asks_for_others(config)
        now = time.monotonic()
        todo = []
        for user in dict.fromkeys(users):
            hit = self._verdicts.get((name, user))
            if hit is not None and now - hit[0] <= self.ttl:
                continue
            refusal = name_refusal(name, config, user, hub_accounts(config))
            if refusal is not None:
                self._verdicts[(name, user)] = (now, refusal)
            else:
                todo.append(user)
        for start in range(0, len(todo) if batch else 0, LOOKUP_CHUNK):
            chunk = todo[start:start + LOOKUP_CHUNK]
            lines = await self._lookup(name, chunk, _asker(config, chunk[0]))
            for user in chunk:
                self._verdicts[(name, user)] = (
                    now, account_refusal(name, config, user, parse_passwd(lines, user)))
        return [u for u in users if await self.allowed(name, u)]

    async def _refusal(self, name: str, user: str) -> str | None:
        cluster = self.site.cluster(name)
        refusal = name_refusal(name, cluster, user, hub_accounts(cluster))
        if refusal is not None:
            return refusal
        lines = await self._lookup(name, [user], _asker(cluster, user))
        return account_refusal(name, cluster, user, parse_passwd(lines, user))

    async def _lookup(self, name: str, users: list[str], service: str | None) -> str:
        try:
            return await self.site.client(name).passwd_lines(users, as_user=service)
        except HpcBridgeError as exc:
            raise SchedulerUnavailable(
                f"cannot look up accounts on cluster {name}: {exc}",
                user_message="The cluster's login node is not answering; try again soon.",
            ) from exc


def _asks_for_others(cluster: Cluster) -> bool:
    """Whether the hub has an identity of its own to run ``getent`` as: the status user,
    the SSH login account, or (local transport) the hub process itself."""
    transport = cluster.transport
    return bool(cluster.status_user or transport.kind == "local" or transport.user)


def _asker(cluster: Cluster, user: str) -> str | None:
    """Who runs ``getent`` for ``user``: the status user, else the SSH login account,
    else the local hub process (None); an SSH site with neither asks as her (the name
    rules passed)."""
    transport = cluster.transport
    if cluster.status_user:
        return cluster.status_user
    if transport.kind == "ssh":
        return transport.user or user
    return None

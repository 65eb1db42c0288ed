"""Compare a site profile with what its scheduler says: partitions, limits, accounts, QOS.

Two halves, as everywhere in hpcbridge:

* :func:`gather_facts` asks one cluster's scheduler through a
  :class:`~hpcbridge.client.SchedulerClient` (read-only queries: partitions with their
  node shapes, QOS, the associations of some users);
* :func:`compare_cluster` is pure: a :class:`~hpcbridge.profiles.Cluster` plus those
  :class:`ClusterFacts` give a list of :class:`Finding`, each pointing at the profile key
  it is about, saying what the profile says, what the scheduler says, and how to fix it.

Severities:

``error``    the profile lets users ask for something the scheduler refuses or never
             runs (a partition that does not exist, a limit above the scheduler's, an
             account none of the users has): ``hpcbridge doctor`` exits 1.
``warning``  the scheduler runs it, but not as the profile promises (a partition that
             is down, a QOS that caps jobs lower, a user without any association).
``note``     the profile is narrower than the scheduler (shorter walltime, fewer
             nodes): usually the site's policy; shown with ``--verbose``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

from hpcbridge.client import SchedulerClient
from hpcbridge.errors import HostKeyError, PermissionDenied, SchedulerError, Unreachable
from hpcbridge.profiles import Cluster, Memory, Partition, Walltime
from hpcbridge.profiles.request import did_you_mean
from hpcbridge.profiles.yamlsrc import Path
from hpcbridge.schedulers.base import Association, PartitionInfo, QosLimits
from hpcbridge.schedulers.textparse import min_known


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Finding:
    """One disagreement between the profile (at ``path``) and the scheduler."""

    severity: Severity
    path: Path
    message: str
    fix: str = ""


@dataclass(frozen=True)
class ClusterFacts:
    """What one cluster's scheduler says; ``None`` where it keeps no such thing."""

    partitions: Sequence[PartitionInfo]
    #: every QOS; None where the scheduler has none (PBS)
    qos: Sequence[QosLimits] | None = None
    #: user -> that user's associations; None where the scheduler keeps none (PBS)
    associations: dict[str, list[Association]] | None = None


async def gather_facts(client: SchedulerClient, users: Sequence[str] = (), *,
                       as_user: str | None = None) -> ClusterFacts:
    """Ask the scheduler; associations are asked as each user (as the hub would)."""
    partitions = await client.partitions(as_user=as_user)
    qos = await client.qos(as_user=as_user) if client.dialect.qos_command() else None
    associations = None
    # a dialect without associations returns no command for any user
    if client.dialect.associations_command(users[0] if users else "root") is not None:
        associations = {user: await client.associations(user) for user in users}
    return ClusterFacts(partitions, qos, associations)


def unreachable(path: Path, exc: Exception) -> Finding:
    """The finding for a cluster whose scheduler could not be asked at all."""
    if isinstance(exc, HostKeyError):
        fix = "pin the login node's current host key in the transport's known_hosts"
    elif isinstance(exc, PermissionDenied):
        fix = "check the transport's key and user (ssh) or the sudoers rule (local)"
    elif isinstance(exc, (Unreachable, SchedulerError)):
        fix = "check that the login node is up and the scheduler answers there"
    else:
        fix = ("check the cluster's transport settings, and that the scheduler's commands "
               "are on the PATH there")
    return Finding(Severity.ERROR, (*path, "transport"),
                   f"cannot ask the scheduler: {exc}", fix)


def compare_cluster(path: Path, cluster: Cluster, facts: ClusterFacts) -> list[Finding]:
    """Every disagreement between ``cluster`` (at ``path`` in the profile) and ``facts``."""
    found = list(_partition_findings(path, cluster, facts))
    found += _account_findings(path, cluster, facts)
    return found


def _walltime(td: timedelta) -> Walltime:
    return Walltime(int(td.total_seconds()))


def _partition_findings(path: Path, cluster: Cluster, facts: ClusterFacts
                        ) -> Iterator[Finding]:
    known = {p.name: p for p in facts.partitions}
    offered: set[str] = set()
    default_qos = _default_qos(facts)
    for key, part in cluster.partitions.items():
        where = (*path, "partitions", key)
        name = part.queue or key
        info = known.get(name)
        if info is None:
            yield Finding(
                Severity.ERROR, where,
                f"partition '{name}' does not exist on the scheduler"
                f"{did_you_mean(name, list(known), 'partitions')}",
                "remove it, or set `queue:` to the scheduler's name for it")
            continue
        offered.add(name)
        yield from _limits(where, name, part, info)
        qos = _qos_of(where, part, info, facts, default_qos)
        if isinstance(qos, Finding):
            yield qos
        elif qos is not None:
            yield from _qos_limits(where, part, qos)
    for name in known.keys() - offered:
        yield Finding(Severity.NOTE, (*path, "partitions"),
                      f"the scheduler's partition '{name}' is not in the profile",
                      "add it if users should be able to choose it")


def _compare(where: Path, profile: str, scheduler: str, over: bool, under: bool, fix: str
             ) -> Iterator[Finding]:
    if over:
        yield Finding(Severity.ERROR, where,
                      f"the profile allows {profile}; the scheduler allows {scheduler}", fix)
    elif under:
        yield Finding(Severity.NOTE, where,
                      f"the profile allows {profile}; the scheduler would allow {scheduler}",
                      "nothing, if this is the site's policy")


def _limits(where: Path, name: str, part: Partition, info: PartitionInfo
            ) -> Iterator[Finding]:
    if not info.available:
        yield Finding(Severity.WARNING, where,
                      f"partition '{name}' is not up on the scheduler: jobs will wait",
                      "bring it up, or remove it from the profile while it is down")
    if info.max_walltime is not None:
        sched = _walltime(info.max_walltime)
        yield from _compare((*where, "max_walltime"), f"a walltime of {part.max_walltime}",
                            f"{sched} on partition '{name}'",
                            part.max_walltime > sched, part.max_walltime < sched,
                            f'set max_walltime: "{sched}", or raise the partition\'s time '
                            "limit in the scheduler")
        default = part.default_walltime
        if default is not None and default > sched:
            yield Finding(Severity.ERROR, (*where, "default_walltime"),
                          f"the default walltime {default} is over the scheduler's limit "
                          f"{sched}", f'set default_walltime to "{sched}" or less')
    nodes = min_known(info.max_nodes, info.total_nodes)
    if nodes is not None:
        yield from _compare((*where, "max_nodes"), f"{_nodes(part.max_nodes)} per job",
                            f"{nodes} on partition '{name}'",
                            part.max_nodes > nodes, part.max_nodes < nodes,
                            f"set max_nodes: {nodes}")
    if info.cores_per_node is None:  # the scheduler does not say how large its nodes are
        if info.max_walltime is None and nodes is None:
            yield Finding(Severity.NOTE, where, f"the scheduler reports no limits for "
                          f"'{name}': only that it exists was checked")
        return
    yield from _node_shape(where, name, part, info)


def _nodes(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"


def _node_shape(where: Path, name: str, part: Partition, info: PartitionInfo
                ) -> Iterator[Finding]:
    smallest = f"(the smallest node of partition '{name}')"
    cores = info.cores_per_node or 0
    yield from _compare((*where, "cores_per_node"), f"{part.cores_per_node} cores per node",
                        f"{cores} {smallest}", part.cores_per_node > cores,
                        part.cores_per_node < cores, f"set cores_per_node: {cores}")
    mem_mb = min_known(info.memory_per_node_mb, info.max_memory_per_node_mb)
    if mem_mb is not None:
        sched_mem = Memory.from_mib(mem_mb)
        yield from _compare((*where, "memory_per_node"),
                            f"{part.memory_per_node} of memory per node",
                            f"{sched_mem} {smallest}",
                            part.memory_per_node > sched_mem, part.memory_per_node < sched_mem,
                            f"set memory_per_node: {sched_mem}")
    gpus = info.gpus_per_node or 0
    if part.gpus_per_node > gpus:
        yield Finding(Severity.ERROR, (*where, "gpus_per_node"),
                      f"the profile offers {part.gpus_per_node} GPUs per node; the "
                      f"scheduler's nodes here have {gpus}", f"set gpus_per_node: {gpus}")
    elif part.gpus_per_node < gpus:
        yield Finding(Severity.NOTE, (*where, "gpus_per_node"),
                      f"nodes of partition '{name}' have up to {gpus} GPUs; the profile "
                      f"offers {part.gpus_per_node}",
                      f"set gpus_per_node: {gpus} if users should get them")
    missing = [k for k in part.gpu_types if k not in info.gpu_types]
    if missing:
        have = ", ".join(info.gpu_types) or "none"
        yield Finding(Severity.ERROR, (*where, "gpu_types"),
                      f"no node of partition '{name}' has GPUs of type "
                      f"{', '.join(missing)} (typed GRES there: {have})",
                      f"set gpu_types: [{', '.join(info.gpu_types)}]")


def _default_qos(facts: ClusterFacts) -> set[str]:
    """The QOS the users' jobs get when they name none."""
    out = set()
    for assocs in (facts.associations or {}).values():
        for a in assocs:
            if a.default_qos:
                out.add(a.default_qos)
            elif len(a.qos) == 1:
                out.add(a.qos[0])
    return out


def _qos_of(where: Path, part: Partition, info: PartitionInfo, facts: ClusterFacts,
            default_qos: set[str]) -> QosLimits | Finding | None:
    """The QOS jobs of this partition run under, or the finding that it does not exist."""
    if facts.qos is None:
        return None
    by_name = {q.name: q for q in facts.qos}
    if part.qos is None:
        # jobs get the users' default QOS; check against it only when it is one
        return by_name.get(next(iter(default_qos))) if len(default_qos) == 1 else None
    if part.qos not in by_name:
        return Finding(Severity.ERROR, (*where, "qos"),
                       f"QOS '{part.qos}' does not exist on the scheduler"
                       f"{did_you_mean(part.qos, list(by_name), 'QOS')}",
                       "create it in the scheduler, or name an existing one")
    if info.allow_qos is not None and part.qos not in info.allow_qos:
        return Finding(Severity.ERROR, (*where, "qos"),
                       f"partition '{info.name}' does not allow QOS '{part.qos}' "
                       f"(allowed: {', '.join(info.allow_qos)})",
                       "name an allowed QOS, or allow it on the partition")
    return by_name[part.qos]


def _qos_limits(where: Path, part: Partition, qos: QosLimits) -> Iterator[Finding]:
    if qos.max_walltime is not None and part.max_walltime > _walltime(qos.max_walltime):
        sched = _walltime(qos.max_walltime)
        yield Finding(Severity.ERROR, (*where, "max_walltime"),
                      f"the profile allows a walltime of {part.max_walltime}; QOS "
                      f"'{qos.name}' allows {sched}", f'set max_walltime: "{sched}"')
    limit = qos.max_jobs_per_user
    if limit is not None and part.max_jobs_per_user is not None \
            and part.max_jobs_per_user > limit:
        yield Finding(Severity.WARNING, (*where, "max_jobs_per_user"),
                      f"the profile allows {part.max_jobs_per_user} jobs per user; QOS "
                      f"'{qos.name}' runs at most {limit}, the others wait",
                      f"set max_jobs_per_user: {limit}")


def _account_findings(path: Path, cluster: Cluster, facts: ClusterFacts) -> list[Finding]:
    where = (*path, "accounts")
    if facts.associations is None:
        return [Finding(Severity.NOTE, where, "accounts not checked: this scheduler keeps "
                        "no associations hpcbridge can read")]
    if not facts.associations:
        return [Finding(Severity.NOTE, where, "accounts not checked: no users to check them "
                        "for", "name users with --user")]
    found = []
    for user, assocs in facts.associations.items():
        if not assocs:
            found.append(Finding(
                Severity.WARNING, where,
                f"user '{user}' has no association on this cluster: the scheduler refuses "
                "every job of theirs", "add the user to an account in the scheduler"))
    known = sorted({a.account for assocs in facts.associations.values() for a in assocs})
    users = ", ".join(facts.associations)
    theirs = f"(their accounts: {', '.join(known) or 'none'})"
    names = cluster.accounts.names if cluster.accounts.source == "static" else []
    for i, name in enumerate(names):
        if name not in known:
            found.append(Finding(
                Severity.ERROR, (*where, "names", i),
                f"account '{name}' is not an account of {users} on the scheduler {theirs}",
                "remove it, or add the users to it in the scheduler"))
    default = cluster.accounts.default
    if default is not None and default not in known:
        found.append(Finding(
            Severity.ERROR, (*where, "default"),
            f"default account '{default}' is not an account of {users} {theirs}",
            "name one of their accounts, or leave it unset"))
    return found

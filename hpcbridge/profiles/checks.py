"""Checks that relate fields of a site profile to each other.

Each check yields ``(path, message)`` where ``path`` is the key path in the YAML
document, so the loader can point at the exact line. Presets and Dask worker defaults
are checked by resolving them as requests, through the same code that checks users'
requests, so a preset is accepted exactly when a user asking for it would be.
"""

from __future__ import annotations

from collections.abc import Iterator

from hpcbridge.profiles.model import Cluster, SiteProfile, _Resources
from hpcbridge.profiles.request import JobRequest, did_you_mean, resolve_request
from hpcbridge.schedulers import registry
from hpcbridge.profiles.yamlsrc import Path

Finding = tuple[Path, str]


def _unknown(path: Path, what: str, name: str, choices: list[str]) -> Finding:
    return path, f"no such {what} '{name}'{did_you_mean(name, choices, what + 's')}"


def check_profile(profile: SiteProfile) -> Iterator[Finding]:
    """Every cross-field problem of ``profile``."""
    clusters = list(profile.clusters)
    if profile.default_cluster and profile.default_cluster not in profile.clusters:
        yield _unknown(("default_cluster",), "cluster", profile.default_cluster, clusters)
    for name, cluster in profile.clusters.items():
        yield from _check_cluster(("clusters", name), cluster)
    yield from _check_presets(profile)
    yield from _check_dask(profile)
    yield from _check_warm_pool(profile)


def _check_scheduler(path: Path, cluster: Cluster) -> Iterator[Finding]:
    if cluster.scheduler != "pbs" and cluster.pbs_flavor is not None:
        yield (*path, "pbs_flavor"), "pbs_flavor applies only to scheduler: pbs"
    problems = registry.check_options(cluster.scheduler, cluster.scheduler_options)
    for key, problem in problems:
        yield (*path, "scheduler_options", key), problem
    if not problems:
        try:  # each option has its type; the adapter may still refuse a value
            dialect = registry.dialect_of(cluster)
        except (TypeError, ValueError) as exc:
            yield (*path, "scheduler_options"), str(exc)
        else:
            if cluster.recurring == "scrontab" and not dialect.capabilities.crontab:
                yield (*path, "recurring"), (f"scheduler {cluster.scheduler} keeps no "
                                             f"crontab; recurring: scrontab needs slurm")


def _check_cluster(path: Path, cluster: Cluster) -> Iterator[Finding]:
    yield from _check_scheduler(path, cluster)
    for key, choices in (
        ("default_partition", list(cluster.partitions)),
        ("default_environment", list(cluster.environments)),
    ):
        value = getattr(cluster, key)
        if value is not None and value not in choices:
            yield _unknown((*path, key), key.split("_")[1], value, choices)
    for pname, part in cluster.partitions.items():
        ppath = (*path, "partitions", pname)
        if part.default_walltime is not None and part.default_walltime > part.max_walltime:
            yield (*ppath, "default_walltime"), (
                f"default_walltime {part.default_walltime} is over "
                f"max_walltime {part.max_walltime}"
            )
        if part.gpu_types and (cluster.scheduler != "slurm" or ":" in part.gres
                               or not part.gpus_per_node):
            yield (*ppath, "gpu_types"), (
                "gpu_types needs scheduler: slurm, GPUs (gpus_per_node) and a gres without "
                f"a type (here {part.gres})")
        if cluster.scheduler == "pbs":
            for key in ("qos", "constraint"):
                if getattr(part, key) is not None:
                    yield (*ppath, key), f"{key} applies only to scheduler: slurm"
    yield from _check_accounts((*path, "accounts"), cluster)
    for ename, env in cluster.environments.items():
        if env.venv is not None and env.conda is not None:
            yield (*path, "environments", ename, "conda"), "use either venv or conda, not both"


def _check_accounts(path: Path, cluster: Cluster) -> Iterator[Finding]:
    accounts = cluster.accounts
    if accounts.source == "static":
        if not accounts.names:
            yield (*path, "source"), "source: static needs a list of account names"
        elif accounts.default is not None and accounts.default not in accounts.names:
            yield _unknown((*path, "default"), "account", accounts.default, accounts.names)
    elif accounts.names:
        yield (*path, "names"), "names are used only with source: static"


def _check_resources(path: Path, profile: SiteProfile, res: _Resources) -> Iterator[Finding]:
    request = JobRequest(
        user="nobody",
        cluster=res.cluster,
        partition=res.partition,
        account=res.account,
        environment=res.environment,
        cores=res.cores,
        memory=res.memory,
        gpus=res.gpus,
        walltime=res.walltime,
    )
    _, problems = resolve_request(profile, request, require_account=False)
    for key, message, _ in problems.items:
        # a problem with a value the entry does not set comes from a cluster default,
        # which is reported where that default is written
        if key in res.model_fields_set:
            yield (*path, key), message


def _check_presets(profile: SiteProfile) -> Iterator[Finding]:
    seen: set[str] = set()
    for index, preset in enumerate(profile.notebooks):
        path: Path = ("notebooks", index)
        if preset.name in seen:
            yield (*path, "name"), f"duplicate preset name '{preset.name}'"
        seen.add(preset.name)
        yield from _check_resources(path, profile, preset)


def _check_dask(profile: SiteProfile) -> Iterator[Finding]:
    worker, caps = profile.dask.worker, profile.dask.per_user
    path: Path = ("dask", "worker")
    if "dask" not in profile.model_fields_set:
        return
    yield from _check_resources(path, profile, worker)
    if worker.processes > worker.cores:
        yield (*path, "processes"), (
            f"processes {worker.processes} is more than cores {worker.cores}"
        )
    if caps.max_cores is not None and caps.max_cores < worker.cores:
        yield ("dask", "per_user", "max_cores"), (
            f"max_cores {caps.max_cores} is less than one worker's cores {worker.cores}"
        )
    if caps.max_memory is not None and worker.memory and caps.max_memory < worker.memory:
        yield ("dask", "per_user", "max_memory"), (
            f"max_memory {caps.max_memory} is less than one worker's memory {worker.memory}"
        )


def _check_warm_pool(profile: SiteProfile) -> Iterator[Finding]:
    pool = profile.hub.warm_pool
    names = [p.name for p in profile.notebooks]
    for index, name in enumerate(pool.presets):
        path: Path = ("hub", "warm_pool", "presets", index)
        preset = profile.preset(name)
        if preset is None:
            yield _unknown(path, "preset", name, names)
            continue
        if pool.presets.index(name) != index:
            yield path, f"preset '{name}' is listed twice"
        request = JobRequest(user="nobody", preset=name)
        resolved, _ = resolve_request(profile, request, require_account=False)
        if resolved is not None and resolved.walltime <= pool.max_idle:
            yield ("hub", "warm_pool", "max_idle"), (
                f"max_idle {pool.max_idle} is not less than preset '{name}' walltime "
                f"{resolved.walltime}: a warm job could hand over a server with no time left"
            )

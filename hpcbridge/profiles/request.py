"""Requests for a batch job, checked against a site profile.

:func:`validate_request` is the one gate every request passes, whatever its origin
(spawn form, REST ``user_options``, Dask scaling, ``hpcbridge profile render``): names
must exist, values must fit their grammar and the partition's limits. The result,
:class:`ValidatedRequest`, has every default filled in and is what scripts are
rendered from. Pure functions: no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from hpcbridge.errors import LimitExceeded, RequestError, quote
from hpcbridge.profiles.model import Cluster, Partition, SiteProfile
from hpcbridge.profiles.types import (
    ENV_VAR_PATTERN,
    NAME_PATTERN,
    USER_PATTERN,
    Memory,
    Walltime,
    check_command_word,
)

#: keys a user may send as JupyterHub ``user_options``; anything else is refused
USER_OPTION_KEYS = (
    "preset",
    "cluster",
    "partition",
    "account",
    "cores",
    "memory",
    "gpus",
    "walltime",
    "environment",
)
DEFAULT_COMMAND = ("hostname",)


@dataclass(frozen=True)
class JobRequest:
    """What someone asks for; every field is unchecked until :func:`validate_request`."""

    user: str
    preset: str | None = None
    cluster: str | None = None
    partition: str | None = None
    account: str | None = None
    environment: str | None = None
    nodes: int | None = None
    cores: int | None = None
    memory: str | int | None = None
    gpus: int | None = None
    #: a GPU type of the partition's ``gpu_types`` (``gpus: a100:2``); None: any type
    gpu_type: str | None = None
    walltime: str | int | None = None
    job_name: str = "hpcbridge"
    command: tuple[str, ...] = DEFAULT_COMMAND
    #: names (never values) of environment variables the job receives from submission
    export_env: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, user: str, **fixed: Any) -> JobRequest:
        """A request from JupyterHub ``user_options``; unknown keys are refused.

        ``fixed`` holds what the spawner decides itself (job_name, command, export_env);
        users cannot set those through options.
        """
        if not isinstance(options, Mapping):
            raise RequestError("options must be a mapping")
        unknown = sorted(str(k)[:1000] for k in options if k not in USER_OPTION_KEYS)
        if unknown:
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise RequestError(
                f"unknown option {', '.join(map(quote, unknown[:3]))}{more} — allowed: "
                + ", ".join(USER_OPTION_KEYS)
            )
        values: dict[str, Any] = {}
        for key, value in options.items():
            if value is None or value == "":
                continue  # an empty form field means "the default"
            if key == "gpus" and isinstance(value, str) and ":" in value:
                values["gpu_type"], value = _typed_gpus(value)
            values[key] = _option_count(key, value) if key in ("cores", "gpus") else value
        return cls(user=user, **values, **fixed)


def _typed_gpus(value: str) -> tuple[str, str]:
    """``a100:2`` -> ("a100", "2"): a GPU type and a count (checked by the gate)."""
    gpu_type, _, count = value.partition(":")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", gpu_type):
        raise RequestError(f"gpus must be a count or TYPE:COUNT (e.g. a100:2), not "
                           f"{quote(value)}")
    return gpu_type, count


def _option_count(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise RequestError(f"{key} must be a whole number, not {quote(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,7}", value):
        return int(value)
    raise RequestError(f"{key} must be a whole number, not {quote(value)}")


@dataclass(frozen=True)
class ValidatedRequest:
    """A request with every default applied, every name resolved, every limit checked."""

    user: str
    site: str
    cluster: str
    #: ``slurm``, ``pbspro`` or ``torque``
    flavor: str
    #: the partition's key in the profile
    partition: str
    #: the partition or queue name given to the scheduler
    queue: str
    nodes: int
    cores: int
    memory: Memory
    gpus: int
    gpu_type: str | None
    walltime: Walltime
    account: str | None
    environment: str
    job_name: str
    command: tuple[str, ...]
    export_env: tuple[str, ...]
    preset: str | None
    qos: str | None
    constraint: str | None
    #: the partition's Slurm gres name for GPUs
    gres: str
    #: the user's home directory, from the cluster's ``home`` template
    home: str
    #: the folder of the job's log (the cluster's ``job_logs`` under the home)
    log_folder: str

    def to_request(self) -> JobRequest:
        """The equivalent request, so that a validated value can be re-checked."""
        return JobRequest(**{f.name: getattr(self, f.name) for f in fields(JobRequest)})


@dataclass
class Problems:
    """Problems found while resolving a request, by request field."""

    items: list[tuple[str, str, bool]] = field(default_factory=list)

    def add(self, key: str, message: str, *, limit: bool = False) -> None:
        self.items.append((key, message, limit))


_NAME_RE = re.compile(NAME_PATTERN)
_USER_RE = re.compile(USER_PATTERN)
_ENV_RE = re.compile(ENV_VAR_PATTERN)


def _name_ok(problems: Problems, key: str, value: Any, regex: re.Pattern[str] = _NAME_RE) -> bool:
    if isinstance(value, str) and regex.fullmatch(value):
        return True
    problems.add(key, f"{key} {quote(value)} is not a valid name: "
                      "use letters, digits, '_', '.', '-'")
    return False


def did_you_mean(word: str, choices: list[str], plural: str = "allowed") -> str:
    """`` — did you mean 'x'? (PLURAL: a, b)`` when a choice is close, else the choices."""
    listed = f"{plural}: {', '.join(choices) or 'none'}"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'? ({listed})" if close else f" — {listed}"


def _choose(problems: Problems, key: str, value: str, choices: Any, where: str) -> bool:
    if value in choices:
        return True
    hint = did_you_mean(value, list(choices), key + 's')
    problems.add(key, f"no such {key} {quote(value)}{where}{hint}")
    return False


def _parse(problems: Problems, key: str, value: Any, parser: Any) -> Any:
    try:
        return parser(value)
    except (ValueError, TypeError) as exc:
        problems.add(key, f"{key}: {exc}")
        return None


def _count(problems: Problems, key: str, value: Any, default: int, minimum: int) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.add(key, f"{key} must be a whole number of at least {minimum}, "
                          f"not {quote(value)}")
        return None
    return value


def _merge_preset(profile: SiteProfile, req: JobRequest, problems: Problems) -> dict[str, Any]:
    """The request's resource fields, over the preset's when one is named."""
    names = ("cluster", "partition", "account", "environment", "cores", "memory", "gpus")
    values = {k: getattr(req, k) for k in (*names, "walltime", "nodes", "gpu_type")}
    if req.preset is None:
        return values
    if not _name_ok(problems, "preset", req.preset):
        return values
    preset = profile.preset(req.preset)
    if preset is None:
        known = did_you_mean(req.preset, [p.name for p in profile.notebooks], "presets")
        problems.add("preset", f"no such preset {quote(req.preset)}{known}")
        return values
    asked = values["cluster"]
    if preset.cluster and asked is not None and asked != preset.cluster:
        # its partition, account and environment are that cluster's
        problems.add("cluster", f"preset {preset.name} runs on cluster {preset.cluster}, "
                                f"not {quote(asked)}")
    for key in (*names, "walltime"):
        if values[key] is None:
            values[key] = getattr(preset, key)
    return values


def check_fit(
    problems: Problems, name: str, part: Partition, nodes: int, cores: int,
    memory: Memory, gpus: int, walltime: Walltime,
) -> None:
    """Add one problem per value over ``part``'s limits, naming the limit."""
    over = [
        ("nodes", nodes, part.max_nodes, "max_nodes"),
        ("cores", cores, part.cores_per_node, "cores_per_node"),
        ("memory", memory, part.memory_per_node, "memory_per_node"),
        ("walltime", walltime, part.max_walltime, "max_walltime"),
    ]
    for key, value, limit, limit_name in over:
        if value > limit:
            problems.add(
                key, f"{key} {value} is over partition {name}'s {limit_name} {limit}", limit=True
            )
    if gpus and not part.gpus_per_node:
        problems.add("gpus", f"partition {name} has no GPUs", limit=True)
    elif gpus > part.gpus_per_node:
        problems.add(
            "gpus",
            f"gpus {gpus} is over partition {name}'s gpus_per_node {part.gpus_per_node}",
            limit=True,
        )


def _account(
    problems: Problems, cluster_name: str, cluster: Cluster, value: Any, required: bool
) -> str | None:
    accounts = cluster.accounts
    account = value if value is not None else accounts.default
    if account is None:
        if accounts.required and required:
            problems.add("account", f"cluster {cluster_name} requires an account")
        return None
    if not _name_ok(problems, "account", account):
        return None
    if accounts.source == "static":
        _choose(problems, "account", account, accounts.names, f" on cluster {cluster_name}")
    return account


def _resources(
    problems: Problems, values: dict[str, Any], pname: str, part: Partition
) -> tuple[Any, ...]:
    nodes = _count(problems, "nodes", values["nodes"], 1, 1)
    cores = _count(problems, "cores", values["cores"], 1, 1)
    gpus = _count(problems, "gpus", values["gpus"], 0, 0)
    if values["memory"] is None and cores is not None:
        # a share of the node proportional to the cores, in whole MiB
        share = part.memory_per_node * min(cores, part.cores_per_node) // part.cores_per_node
        memory = Memory.from_mib(max(1, share // 1024**2))
    else:
        memory = _parse(problems, "memory", values["memory"], _memory)
    if values["walltime"] is None:
        walltime = part.default_walltime or part.max_walltime
    else:
        walltime = _parse(problems, "walltime", values["walltime"], _walltime)
    result = (nodes, cores, memory, gpus, walltime)
    if nodes and cores and memory and gpus is not None and walltime:
        check_fit(problems, pname, part, nodes, cores, memory, gpus, walltime)
    gpu_type = values.get("gpu_type")
    if gpu_type is not None and not part.gpu_types:
        problems.add("gpus", f"partition {pname} offers no choice of GPU type; "
                             "ask for a number of GPUs")
    elif gpu_type is not None and gpu_type not in part.gpu_types:
        hint = did_you_mean(gpu_type, list(part.gpu_types), "GPU types")
        problems.add("gpus", f"no GPU type {quote(gpu_type)} on partition {pname}{hint}")
    return result


def _memory(value: Any) -> Memory:
    return value if isinstance(value, Memory) else Memory.parse(value)


def _walltime(value: Any) -> Walltime:
    return value if isinstance(value, Walltime) else Walltime.parse(value)


def _job_fields(problems: Problems, req: JobRequest) -> None:
    _name_ok(problems, "user", req.user, _USER_RE)
    _name_ok(problems, "job_name", req.job_name)
    if not req.command or not isinstance(req.command, tuple):
        problems.add("command", "command must be a non-empty tuple of words")
    for word in req.command or ():
        _parse(problems, "command", word, check_command_word)
    for name in req.export_env:
        if not isinstance(name, str) or not _ENV_RE.fullmatch(name):
            problems.add("export_env", f"{quote(name)} is not an environment variable name")


def job_log_folder(profile: SiteProfile, cluster: str | None, user: str) -> str:
    """Where ``user``'s job logs go on ``cluster``: its ``job_logs`` under her home."""
    config = profile.clusters[profile.cluster_name(cluster)]
    return f"{config.home.replace('{user}', user)}/{config.job_logs}"


def resolve_request(
    profile: SiteProfile, req: JobRequest, *, require_account: bool = True
) -> tuple[ValidatedRequest | None, Problems]:
    """Resolve ``req`` against ``profile``: the validated request, or the problems found.

    ``require_account=False`` is for presets, whose account the user picks at spawn time.
    """
    problems = Problems()
    _job_fields(problems, req)
    values = _merge_preset(profile, req, problems)
    cname = profile.cluster_name(values["cluster"])
    if not (_name_ok(problems, "cluster", cname)
            and _choose(problems, "cluster", cname, profile.clusters, "")):
        return None, problems
    cluster = profile.clusters[cname]
    pname = cluster.partition_name(values["partition"])
    ename = cluster.environment_name(values["environment"])
    where = f" on cluster {cname}"
    if _name_ok(problems, "environment", ename):
        _choose(problems, "environment", ename, cluster.environments, where)
    account = _account(problems, cname, cluster, values["account"], require_account)
    if not (_name_ok(problems, "partition", pname)
            and _choose(problems, "partition", pname, cluster.partitions, where)):
        return None, problems
    part = cluster.partitions[pname]
    nodes, cores, memory, gpus, walltime = _resources(problems, values, pname, part)
    if problems.items:
        return None, problems
    return ValidatedRequest(
        user=req.user, site=profile.site, cluster=cname, flavor=cluster.flavor,
        partition=pname, queue=part.queue or pname, nodes=nodes, cores=cores, memory=memory,
        gpus=gpus, gpu_type=values["gpu_type"] if gpus else None, walltime=walltime,
        account=account, environment=ename, job_name=req.job_name,
        command=tuple(req.command), export_env=tuple(req.export_env), preset=req.preset,
        qos=part.qos, constraint=part.constraint, gres=part.gres,
        home=cluster.home.replace("{user}", req.user),
        log_folder=job_log_folder(profile, cname, req.user),
    ), problems


def validate_request(
    profile: SiteProfile, request: JobRequest | ValidatedRequest
) -> ValidatedRequest:
    """Check ``request`` against ``profile``; raise LimitExceeded or RequestError.

    LimitExceeded when every problem is a value over a limit; RequestError otherwise.
    The message lists every problem, separated by "; ".
    """
    if isinstance(request, ValidatedRequest):
        request = request.to_request()
    validated, problems = resolve_request(profile, request)
    if validated is not None:
        return validated
    message = "; ".join(msg for _, msg, _ in problems.items)
    found = tuple((key, msg) for key, msg, _ in problems.items)
    if all(limit for _, _, limit in problems.items):
        raise LimitExceeded(message, problems=found)
    raise RequestError(message, problems=found)

"""Scheduler adapters by name: the built-in ones and those a site installs.

A profile's ``scheduler:`` names an adapter here. ``slurm`` and ``pbs`` ship with
hpcbridge; a site adds its own without forking by publishing a class under the Python
entry point group ``hpcbridge.schedulers`` (name = what profiles write, value =
``package.module:DialectClass``). docs/architecture.md lists what an adapter implements.

An adapter class declares the options a profile may set for it (``OPTIONS``: name ->
(type, description)); :func:`dialect_of` builds the dialect of one profile cluster with
them. Loading entry points imports code, so it happens on first use, never at import.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Protocol

from hpcbridge.schedulers.base import SchedulerDialect

ENTRY_POINT_GROUP = "hpcbridge.schedulers"

#: the adapters hpcbridge ships with ("module:Class", imported when first asked for)
_BUILTIN = {
    "slurm": "hpcbridge.schedulers.slurm:SlurmDialect",
    "pbs": "hpcbridge.schedulers.pbs:PbsDialect",
}
_classes: dict[str, type] = {}
_extra: dict[str, str] | None = None


class UnknownScheduler(ValueError):
    """A scheduler name no adapter answers to; the message lists the known ones."""


class ClusterLike(Protocol):
    """What :func:`dialect_of` reads of a profile cluster (``profiles.model.Cluster``)."""

    @property
    def scheduler(self) -> str: ...

    @property
    def pbs_flavor(self) -> str | None: ...

    @property
    def scheduler_options(self) -> Mapping[str, Any]: ...


def _installed() -> dict[str, str]:
    """Adapters published through the entry point group (read once)."""
    global _extra
    if _extra is None:
        _extra = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return _extra


def names() -> list[str]:
    """Every scheduler name a profile may use, built-in first."""
    return [*_BUILTIN, *sorted(n for n in _installed() if n not in _BUILTIN)]


def register(name: str, cls: type) -> None:
    """Make ``cls`` the adapter for ``name`` in this process (tests, embedding code)."""
    _classes[name] = cls


def unknown_message(name: str) -> str:
    known = names()
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"no such scheduler {name!r}{hint} -- schedulers: {', '.join(known)}; a site "
            f"adds one through the entry point group {ENTRY_POINT_GROUP!r}")


def dialect_class(name: str) -> type:
    """The adapter class for ``name``; UnknownScheduler with a did-you-mean otherwise."""
    if name in _classes:
        return _classes[name]
    target = _BUILTIN.get(name) or _installed().get(name)
    if target is None:
        raise UnknownScheduler(unknown_message(name))
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    _classes[name] = cls
    return cls


def options_of(name: str) -> Mapping[str, tuple[type, str]]:
    """The profile options the adapter for ``name`` accepts: name -> (type, description)."""
    return getattr(dialect_class(name), "OPTIONS", {})


def check_options(name: str, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(option, problem) for every option the adapter does not accept as given."""
    allowed = options_of(name)
    problems = []
    for key, value in options.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            choices = ", ".join(allowed) or "none"
            problems.append((key, f"scheduler {name!r} has no option {key!r} "
                                  f"(options: {choices}{hint})"))
        elif type(value) is not allowed[key][0]:
            problems.append((key, f"option {key!r} of scheduler {name!r} must be a "
                                  f"{allowed[key][0].__name__}, got {value!r}"))
    return problems


def dialect_for(scheduler: str, **options: Any) -> SchedulerDialect:
    """The dialect for a profile's ``scheduler:`` value, with adapter options."""
    dialect: SchedulerDialect = dialect_class(scheduler)(**options)
    return dialect


def dialect_of(cluster: ClusterLike) -> SchedulerDialect:
    """The dialect of one profile cluster, with the options its profile sets."""
    options = dict(cluster.scheduler_options)
    if cluster.pbs_flavor is not None and "flavor" in options_of(cluster.scheduler):
        options.setdefault("flavor", cluster.pbs_flavor)  # the profile's older spelling
    return dialect_for(cluster.scheduler, **options)

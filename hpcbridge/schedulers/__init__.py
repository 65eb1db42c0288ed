"""Scheduler dialects: one scheduler's argv and output formats each (see :mod:`.base`)."""

from __future__ import annotations

from hpcbridge.schedulers.base import (
    Association,
    Availability,
    Budget,
    Command,
    Operation,
    PartitionInfo,
    QosLimits,
    SchedulerDialect,
)
from hpcbridge.schedulers.pbs import PbsDialect
from hpcbridge.schedulers.slurm import SlurmDialect

__all__ = [
    "Association", "Availability", "Budget", "Command", "Operation", "PartitionInfo", "PbsDialect",
    "QosLimits", "SchedulerDialect", "SlurmDialect", "dialect_for",
]


def dialect_for(scheduler: str, **options: bool) -> SchedulerDialect:
    """The dialect for a profile's ``scheduler:`` value ("slurm" or "pbs")."""
    kinds: dict[str, type] = {"slurm": SlurmDialect, "pbs": PbsDialect}
    if scheduler not in kinds:
        raise ValueError(f"no such scheduler {scheduler!r} -- schedulers: slurm, pbs")
    dialect: SchedulerDialect = kinds[scheduler](**options)
    return dialect

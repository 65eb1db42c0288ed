"""Scheduler adapters: one scheduler's argv, scripts and output formats each (see :mod:`.base`).

Adapters are found by name in :mod:`.registry` (built-in ``slurm`` and ``pbs``, and any a
site publishes under the entry point group ``hpcbridge.schedulers``).
"""

from __future__ import annotations

from hpcbridge.schedulers.base import (
    Association,
    Availability,
    Budget,
    Capabilities,
    Command,
    JobArray,
    Operation,
    PartitionInfo,
    QosLimits,
    SchedulerDialect,
    UserJob,
)
from hpcbridge.schedulers.pbs import PbsDialect
from hpcbridge.schedulers.registry import UnknownScheduler, dialect_for, dialect_of
from hpcbridge.schedulers.slurm import SlurmDialect

__all__ = [
    "Association", "Availability", "Budget", "Capabilities", "Command", "JobArray", "Operation",
    "PartitionInfo", "PbsDialect", "QosLimits", "SchedulerDialect", "SlurmDialect",
    "UnknownScheduler", "UserJob", "dialect_for", "dialect_of",
]

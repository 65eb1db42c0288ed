"""Slurm generations the testbed can run: each one Debian release and the Slurm it ships.

A generation is picked by its Slurm version (``testbed up --slurm 24.11``, or
``HPCBRIDGE_TESTBED_SLURM``). The images of each generation are built from the same
Containerfiles on a ``debootstrap`` of its Debian suite; what differs between the
generations' Slurm configuration lives in config.py, keyed by the generation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from slurm_testbed.errors import TestbedError


@dataclass(frozen=True)
class Generation:
    """One Slurm generation of the testbed."""

    #: the Slurm release series, as users name it ("22.05")
    slurm: str
    #: the Debian suite that ships it
    suite: str
    #: the suite's system Python (``major.minor``): the nodes' venv and its wheels
    python: str

    @property
    def slug(self) -> str:
        """A name part for testbeds and test ids: ``slurm2205``."""
        return "slurm" + self.slurm.replace(".", "")


GENERATIONS = {
    "22.05": Generation(slurm="22.05", suite="bookworm", python="3.11"),
    "24.11": Generation(slurm="24.11", suite="trixie", python="3.13"),
}
#: the generation `testbed up`, `hpcbridge up` and the tests use unless told otherwise
DEFAULT = "24.11"


def get(slurm: str | None = None) -> Generation:
    """The generation for a Slurm version; None: ``HPCBRIDGE_TESTBED_SLURM`` or DEFAULT."""
    name = slurm or os.environ.get("HPCBRIDGE_TESTBED_SLURM") or DEFAULT
    try:
        return GENERATIONS[name]
    except KeyError:
        raise TestbedError(
            f"no testbed generation for Slurm {name!r}; choose one of: "
            + ", ".join(GENERATIONS)
        ) from None

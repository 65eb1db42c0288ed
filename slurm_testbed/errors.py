"""The testbed's error: an hpcbridge error, so that `hpcbridge up` reports it like any other."""

from __future__ import annotations

from hpcbridge.errors import HpcBridgeError


class TestbedError(HpcBridgeError):
    """The containerized SLURM testbed could not be started, reached or stopped."""

    __test__ = False  # not a pytest test class despite the name

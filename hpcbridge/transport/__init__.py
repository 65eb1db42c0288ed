"""Transports: run an argv as a user somewhere (see :mod:`.base`)."""

from __future__ import annotations

from hpcbridge.transport.base import Result, Transport
from hpcbridge.transport.local import LocalTransport
from hpcbridge.transport.ssh import SshTransport, remote_command_line

__all__ = ["LocalTransport", "Result", "SshTransport", "Transport", "remote_command_line"]

"""The login node's sshd trusting an SSH user CA, as a center configures it for a hub
that logs in with short-lived certificates (``TrustedUserCAKeys``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from slurm_testbed.cluster import Testbed
from slurm_testbed.faults import restart_sshd

CA_PUB = "/etc/ssh/hpcbridge_user_ca.pub"
DROP_IN = "/etc/ssh/sshd_config.d/hpcbridge-user-ca.conf"


def trust_user_ca(tb: Testbed, public_line: str) -> None:
    """Make sshd on login accept certificates signed by this CA (its public key line)."""
    tb.exec("login", ["install", "-m", "0644", "/dev/stdin", CA_PUB],
            input=public_line.strip().encode() + b"\n", check=True)
    tb.exec("login", ["install", "-m", "0644", "/dev/stdin", DROP_IN],
            input=f"TrustedUserCAKeys {CA_PUB}\n".encode(), check=True)
    restart_sshd(tb, drop_sessions=False)


def untrust_user_ca(tb: Testbed) -> None:
    tb.exec("login", ["rm", "-f", CA_PUB, DROP_IN], check=True)
    restart_sshd(tb, drop_sessions=False)


@contextmanager
def user_ca_trusted(tb: Testbed, public_line: str) -> Iterator[None]:
    trust_user_ca(tb, public_line)
    try:
        yield
    finally:
        untrust_user_ca(tb)

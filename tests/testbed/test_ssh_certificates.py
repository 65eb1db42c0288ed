"""The hub logs in with short-lived SSH certificates from its own user CA (live sshd).

The login node's sshd trusts the CA (``TrustedUserCAKeys``); no user has a key of her own
for the hub. A certificate names one user: it cannot log in as another. An expired
certificate is replaced by a new one before a new connection needs it, so no command
fails for it.
"""

from __future__ import annotations

import asyncio
import time

import paramiko
import pytest

from hpcbridge.transport.ssh import SshTransport
from hpcbridge.transport.sshca import UserCertificates, new_ca_key

pytestmark = pytest.mark.testbed


@pytest.fixture(scope="module")
def ca(testbed, tmp_path_factory):  # type: ignore[no-untyped-def]
    from slurm_testbed.sshca import user_ca_trusted

    path = tmp_path_factory.mktemp("sshca") / "user_ca"
    public = new_ca_key(str(path))
    with user_ca_trusted(testbed, public):
        yield str(path)


def _transport(testbed, certs: UserCertificates) -> SshTransport:  # type: ignore[no-untyped-def]
    info = testbed.info()
    return SshTransport(info.login_ip, port=info.ssh_port, known_hosts=info.known_hosts,
                        certificates=certs)


def test_commands_run_as_each_user_with_her_own_certificate(testbed, ca) -> None:  # type: ignore[no-untyped-def]
    certs = UserCertificates(ca, validity=600)
    transport = _transport(testbed, certs)

    async def who() -> list[str]:
        try:
            return [(await transport.run(["id", "-un"], user=u)).stdout.strip()
                    for u in ("alice", "bob")]
        finally:
            await transport.close()

    assert asyncio.run(who()) == ["alice", "bob"]
    assert certs.count == {"alice": 1, "bob": 1}


def test_alices_certificate_cannot_log_in_as_bob(testbed, ca) -> None:  # type: ignore[no-untyped-def]
    alice = UserCertificates(ca, validity=600).credential("alice")
    info = testbed.info()
    client = paramiko.SSHClient()
    client.load_host_keys(info.known_hosts)
    try:
        with pytest.raises(paramiko.AuthenticationException):
            client.connect(info.login_ip, port=info.ssh_port, username="bob", pkey=alice,
                           look_for_keys=False, allow_agent=False, timeout=20)
        client.connect(info.login_ip, port=info.ssh_port, username="alice", pkey=alice,
                       look_for_keys=False, allow_agent=False, timeout=20)  # her own: fine
    finally:
        client.close()


def test_an_expired_certificate_is_renewed_without_a_failed_command(testbed, ca) -> None:  # type: ignore[no-untyped-def]
    certs = UserCertificates(ca, validity=8, renew_before=2)
    transport = _transport(testbed, certs)

    async def scenario() -> list[str]:
        out = [(await transport.run(["id", "-un"], user="carol")).stdout.strip()]
        first = certs.expires("carol")
        assert first is not None
        await asyncio.sleep(max(0.0, first.timestamp() - time.time()) + 1)  # expired now
        await transport.close()  # the next command needs a new connection
        out.append((await transport.run(["id", "-un"], user="carol")).stdout.strip())
        await transport.close()
        return out

    assert asyncio.run(scenario()) == ["carol", "carol"]
    assert certs.count == {"carol": 2}

"""Short-lived SSH user certificates: principal, validity, renewal, a private CA key."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from hpcbridge.errors import HostKeyError
from hpcbridge.transport.ssh import SshTransport
from hpcbridge.transport.sshca import CaKeyError, UserCertificates, new_ca_key


def _cert_of(certs: UserCertificates, user: str) -> serialization.SSHCertificate:
    key = certs.credential(user)
    blob = key.public_blob
    assert blob is not None
    return serialization.load_ssh_public_identity(
        f"{blob.key_type} {base64.b64encode(blob.key_blob).decode()}".encode())


def test_a_certificate_names_its_user_only_and_expires_soon(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    public = new_ca_key(str(ca))
    assert public.startswith("ssh-ed25519 ") and os.stat(ca).st_mode & 0o777 == 0o600
    certs = UserCertificates(str(ca), validity=300)
    cert = _cert_of(certs, "alice")
    assert isinstance(cert, serialization.SSHCertificate)
    assert cert.valid_principals == [b"alice"]
    assert cert.type is serialization.SSHCertificateType.USER
    assert 240 < cert.valid_before - time.time() <= 300
    cert.verify_cert_signature()  # signed by the CA it names
    ca_public = serialization.load_ssh_public_key(public.encode())
    assert cert.signature_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) == \
        ca_public.public_bytes(serialization.Encoding.OpenSSH,
                               serialization.PublicFormat.OpenSSH)


def test_a_certificate_is_reused_until_it_nears_expiry(tmp_path: Path) -> None:
    new_ca_key(str(tmp_path / "ca"))
    certs = UserCertificates(str(tmp_path / "ca"), validity=300, renew_before=60)
    first = certs.credential("bob")
    assert certs.credential("bob") is first and certs.count == {"bob": 1}
    short = UserCertificates(str(tmp_path / "ca"), validity=30, renew_before=60)
    assert short.credential("bob") is not short.credential("bob")  # always near expiry
    assert short.count == {"bob": 2}


def test_a_ca_key_others_can_read_is_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    new_ca_key(str(ca))
    os.chmod(ca, 0o640)
    with pytest.raises(CaKeyError, match=r"readable by others .*chmod 600"):
        UserCertificates(str(ca))
    with pytest.raises(CaKeyError, match="cannot be read"):
        UserCertificates(str(tmp_path / "missing"))


async def test_a_missing_known_hosts_file_is_named(tmp_path: Path) -> None:
    new_ca_key(str(tmp_path / "ca"))
    transport = SshTransport("127.0.0.1", port=1, known_hosts=str(tmp_path / "nope"),
                             certificates=UserCertificates(str(tmp_path / "ca")))
    with pytest.raises(HostKeyError, match=r"known_hosts file .*nope cannot be read"):
        await transport.run(["true"], user="alice")


def test_configure_refuses_a_readable_ca_key(tmp_path: Path) -> None:
    from traitlets.config import Config

    from hpcbridge.spawner.hubconfig import configure

    ca = tmp_path / "ca"
    new_ca_key(str(ca))
    os.chmod(ca, 0o644)
    profile = tmp_path / "site.yaml"
    profile.write_text(f"""\
site: s
clusters:
  c:
    scheduler: slurm
    transport: {{kind: ssh, host: login, known_hosts: /kh, user_ca_key: {ca}}}
    partitions:
      debug: {{max_walltime: "00:30:00", cores_per_node: 8, memory_per_node: 16G}}
""")
    with pytest.raises(SystemExit) as info:
        configure(Config(), site_profile=str(profile))
    assert "clusters.c.transport.user_ca_key: the SSH user CA key" in str(info.value.code)

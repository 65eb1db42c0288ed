"""Short-lived SSH user certificates instead of a long-lived private key per user.

The hub holds one SSH *user CA* key. For each user it logs in as, it makes a fresh key
pair in memory and signs a certificate for it (what ``ssh-keygen -s CA -I ID -n USER
-V +10m`` does): its only principal is that user, it is valid for minutes, and it is
renewed shortly before it expires. The login node's sshd trusts the CA
(``TrustedUserCAKeys``), so no per-user key is ever provisioned, and a certificate for
alice cannot log in as bob (sshd matches the principal with the login name).

A connection authenticated with a certificate stays open after the certificate
expires (sshd checks it only at login); a new connection gets a new certificate.
The CA key must be readable by the hub alone (mode 0600), or nothing starts.
"""

from __future__ import annotations

import datetime
import io
import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from hpcbridge.errors import PermissionDenied

#: a certificate is valid from a little before it was made (clocks of hub and login node)
_CLOCK_SKEW = 60


class CaKeyError(PermissionDenied):
    """The CA key cannot be used: missing, unreadable, not private, not a key."""


def check_ca_key(path: str) -> None:
    """Refuse a CA key that others could read (or that is not a readable file)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise CaKeyError(f"the SSH user CA key {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise CaKeyError(f"the SSH user CA key {path} is not a file")
    if mode & 0o077:
        raise CaKeyError(f"the SSH user CA key {path} is readable by others "
                         f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it")


@dataclass
class _Issued:
    key: paramiko.PKey
    expires: float
    serial: int


class UserCertificates:
    """Issues and renews per-user certificates signed by one CA key (OpenSSH format)."""

    def __init__(self, ca_key: str, *, validity: float = 600.0,
                 renew_before: float | None = None) -> None:
        check_ca_key(ca_key)
        try:
            loaded = serialization.load_ssh_private_key(Path(ca_key).read_bytes(), None)
        except (OSError, ValueError) as exc:
            raise CaKeyError(f"the SSH user CA key {ca_key} is not an unencrypted OpenSSH "
                             f"private key: {exc}") from None
        if not isinstance(loaded, ed25519.Ed25519PrivateKey):
            raise CaKeyError(f"the SSH user CA key {ca_key} must be an ed25519 key")
        self._ca = loaded
        self.ca_key = ca_key
        self.validity = validity
        self.renew_before = validity / 5 if renew_before is None else renew_before
        self._issued: dict[str, _Issued] = {}
        self._lock = threading.Lock()
        #: certificates issued per user (for operators and tests)
        self.count: dict[str, int] = {}

    def credential(self, user: str) -> paramiko.PKey:
        """A key with a certificate for ``user`` valid for at least ``renew_before``."""
        with self._lock:
            now = time.time()
            issued = self._issued.get(user)
            if issued is None or issued.expires - now < self.renew_before:
                issued = self._issued[user] = self._issue(user, now)
                self.count[user] = self.count.get(user, 0) + 1
            return issued.key

    def _issue(self, user: str, now: float) -> _Issued:
        key = ed25519.Ed25519PrivateKey.generate()
        serial = secrets.randbits(63)
        expires = now + self.validity
        cert = (serialization.SSHCertificateBuilder()
                .public_key(key.public_key())
                .serial(serial)
                .type(serialization.SSHCertificateType.USER)
                .key_id(f"hpcbridge:{user}:{serial}".encode())
                .valid_principals([user.encode()])
                .valid_after(int(now) - _CLOCK_SKEW)
                .valid_before(int(expires))
                .sign(self._ca))
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption()).decode()
        pkey = paramiko.Ed25519Key(file_obj=io.StringIO(private))
        pkey.load_certificate(cert.public_bytes().decode())
        return _Issued(pkey, expires, serial)

    def expires(self, user: str) -> datetime.datetime | None:
        issued = self._issued.get(user)
        return datetime.datetime.fromtimestamp(issued.expires, datetime.UTC) if issued else None


def new_ca_key(path: str) -> str:
    """Write a new ed25519 CA key (0600) at ``path``; its public line for sshd's
    ``TrustedUserCAKeys``."""
    key = ed25519.Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.OpenSSH,
                                  serialization.NoEncryption()))
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()

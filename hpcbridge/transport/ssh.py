"""Run an argv on a login node over SSH (paramiko), as the user the command is for.

* Host keys are checked against a pinned known_hosts file only (a ``RejectPolicy``;
  never auto-added, the user's and system's known_hosts are not read).
* One connection per (host, port, user), reused and kept alive; a dropped connection
  is re-opened once when a new command cannot open its channel (the command had not
  started, so retrying it is safe). A drop while a command runs is ``Unreachable``.
* Every command has a timeout.
* :func:`remote_command_line` is the ONLY place in hpcbridge where a string meets a
  shell: SSH carries one command line, which the remote login shell parses. Every argv
  element is quoted with :func:`shlex.quote`, so it arrives as exactly one word. This
  assumes a POSIX login shell (sh, bash, zsh, dash) for the users.

paramiko blocks, so each command runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

import paramiko

from hpcbridge.errors import HostKeyError, PermissionDenied, TransportError, Unreachable
from hpcbridge.transport.base import DEFAULT_TIMEOUT, FileOpsMixin, Result, check_argv
from hpcbridge.transport.sshca import UserCertificates

KeySource = str | Mapping[str, str] | Callable[[str], str]


def _no_delay(sock: object) -> None:
    """Send small packets at once: with Nagle's algorithm on, each command's exchange
    waited ~45 ms for the peer's delayed ACK (testbed: 47.7 ms -> 3.7 ms per command)."""
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def remote_command_line(argv: Sequence[str], *, no_stdin: bool = False) -> str:
    """The one quoting function: argv -> a command line a POSIX shell splits back into argv.
    ``no_stdin`` gives the command ``/dev/null`` as its input (see ``_run_blocking``)."""
    line = " ".join(shlex.quote(arg) for arg in check_argv(argv))
    return f"{line} </dev/null" if no_stdin else line


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _PinnedOnly(paramiko.RejectPolicy):
    """Reject unknown host keys with a message naming the host and the key offered."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> NoReturn:
        raise HostKeyError(
            f"host key of {hostname} is not pinned: the server offered "
            f"{key.get_name()} {fingerprint(key)}; add it to the pinned known_hosts "
            "only after checking it out of band",
        )


class SshTransport(FileOpsMixin):
    """Commands on one SSH host, logged in as each user with that user's key.

    ``keys`` says which private key logs in as a user: a template such as
    ``"/etc/hpcbridge/keys/{user}"``, a mapping user -> path, or a callable; or
    ``certificates`` issues a short-lived certificate per user from the hub's SSH user
    CA (:mod:`hpcbridge.transport.sshca`), and no per-user key exists at all.
    ``default_user`` is the identity for ``user=None`` (e.g. the status poller's).
    """

    def __init__(self, host: str, *, known_hosts: str, keys: KeySource | None = None,
                 port: int = 22, default_user: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = 10.0,
                 keepalive: int = 30, certificates: UserCertificates | None = None) -> None:
        if keys is None and certificates is None:
            raise ValueError("an SSH transport needs keys or certificates")
        self.certificates = certificates
        self.host = host
        self.port = port
        self.known_hosts = known_hosts
        self.keys = keys
        self.default_user = default_user
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._lock = threading.Lock()

    def key_path(self, user: str) -> str:
        if self.keys is None:
            raise PermissionDenied(f"no SSH key configured for user {user}")
        if callable(self.keys):
            return self.keys(user)
        if isinstance(self.keys, str):
            return self.keys.format(user=user)
        try:
            return self.keys[user]
        except KeyError:
            raise PermissionDenied(f"no SSH key configured for user {user}") from None

    async def run(self, argv: Sequence[str], *, user: str | None = None,
                  stdin: bytes | None = None, timeout: float | None = None) -> Result:
        login = user or self.default_user
        if not login:
            raise ValueError("no user given and no default_user configured")
        line = remote_command_line(argv, no_stdin=stdin is None)
        limit = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._run_blocking, login, line, stdin, limit)

    async def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- blocking part, in a worker thread -------------------------------------------

    def _run_blocking(self, user: str, line: str, stdin: bytes | None, limit: float) -> Result:
        """Run ``line`` on a channel of the user's connection. A command without input
        gets ``</dev/null`` and no end-of-input from here: paramiko marks a channel's EOF
        sent before it sends it, so a quick command's close from the server can go out
        first, and sshd ends the WHOLE connection on an EOF for a channel it has freed
        ("ieof packet referred to nonexistent channel"), failing every command of that
        user in flight (the scale benchmark's burst lost 4 spawns of 100 this way)."""
        deadline = time.monotonic() + limit
        client, chan = self._channel(user, deadline)
        try:
            chan.settimeout(max(0.1, deadline - time.monotonic()))
            chan.exec_command(line)
            if stdin is not None:  # a command given input reads it to its end
                chan.sendall(stdin)
                chan.shutdown_write()
            return _collect(chan, deadline, f"{line.split(' ', 1)[0]} on {self.host} as {user}")
        except _LINK_ERRORS as exc:
            self._forget_if_dead(user, client)
            raise Unreachable(f"connection to {self.host} as {user} failed: "
                              f"{_said(exc)}") from exc
        finally:
            chan.close()

    def _channel(self, user: str, deadline: float) -> tuple[paramiko.SSHClient, paramiko.Channel]:
        """A session channel on the user's kept connection. A dead connection is replaced
        (once); a channel the server refuses on a live one (sshd's MaxSessions, while other
        commands of the user run on it) is asked for again until the deadline, and the
        connection with those commands on it stays open. Anything else: Unreachable."""
        replaced = False
        while True:
            client = self._client(user)  # connects anew when the kept one is closed
            transport = client.get_transport()
            try:
                if transport is None or not transport.is_active():
                    raise paramiko.SSHException("connection is closed")
                wait = max(0.1, min(self.connect_timeout, deadline - time.monotonic()))
                return client, transport.open_session(timeout=wait)
            except _LINK_ERRORS as exc:
                alive = self._forget_if_dead(user, client)
                if not alive and not replaced:
                    replaced = True
                    continue
                if alive and time.monotonic() + _REFUSED_RETRY < deadline:
                    time.sleep(_REFUSED_RETRY)
                    continue
                raise Unreachable(f"cannot open a session on {self.host} as {user}: "
                                  f"{_said(exc)}") from None

    def _forget_if_dead(self, user: str, client: paramiko.SSHClient) -> bool:
        """Close and drop ``client`` when its connection is dead; whether it is alive.
        A live one stays: the user's other commands may be running on it."""
        transport = client.get_transport()
        if transport is not None and transport.is_active():
            return True
        with self._lock:
            if self._clients.get(user) is client:
                del self._clients[user]
        client.close()
        return False

    def _client(self, user: str) -> paramiko.SSHClient:
        with self._lock:
            client = self._clients.get(user)
            transport = client.get_transport() if client else None
            if client is not None and transport is not None and transport.is_active():
                return client
            if client is not None:
                client.close()  # its connection died
            client = self._connect(user)
            self._clients[user] = client
            return client

    def _connect(self, user: str) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(self.known_hosts)  # only the pinned file
        except OSError as exc:
            raise HostKeyError(f"the pinned known_hosts file {self.known_hosts} cannot be "
                               f"read ({exc.strerror}): no host key can be checked") from None
        client.set_missing_host_key_policy(_PinnedOnly())
        where = f"{self.host}:{self.port}"
        credential: dict[str, object] = (
            {"pkey": self.certificates.credential(user)} if self.certificates is not None
            else {"key_filename": self.key_path(user)})
        try:
            client.connect(
                self.host, port=self.port, username=user, timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout, auth_timeout=self.connect_timeout,
                look_for_keys=False, allow_agent=False, **credential,  # type: ignore[arg-type]
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"host key of {where} does not match the pinned one: the server offered "
                f"{exc.key.get_name()} {fingerprint(exc.key)}, pinned is "
                f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}",
            ) from None
        except HostKeyError:
            client.close()
            raise
        except paramiko.AuthenticationException as exc:
            client.close()
            raise PermissionDenied(f"SSH login to {where} as {user} refused: {exc}") from None
        except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise Unreachable(f"cannot connect to {where} as {user}: {exc}") from None
        transport = client.get_transport()
        if transport is None:
            raise TransportError(f"no SSH transport to {where}")
        transport.set_keepalive(self.keepalive)
        _no_delay(transport.sock)
        return client


#: what paramiko raises when a connection or a channel fails (ChannelException, a channel
#: refused on a live connection, is an SSHException too)
_LINK_ERRORS = (paramiko.SSHException, EOFError, OSError)
#: seconds between asking again for a channel the server refused on a live connection
_REFUSED_RETRY = 0.25


def _said(exc: BaseException) -> str:
    """An exception's words; its type where it has none (paramiko's EOFError)."""
    return str(exc) or type(exc).__name__


def _collect(chan: paramiko.Channel, deadline: float, what: str) -> Result:
    """Read stdout and stderr together until the command exits, or time out."""
    out, err = bytearray(), bytearray()
    while True:
        if chan.recv_ready():
            out += chan.recv(65536)
        elif chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        elif chan.exit_status_ready() and chan.eof_received:
            break
        elif chan.closed:
            raise Unreachable(f"{what}: connection closed before the command finished")
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unreachable(f"{what} timed out")
            select.select([chan], [], [], min(remaining, 0.5))
    return Result(chan.recv_exit_status(), out.decode(errors="replace"),
                  err.decode(errors="replace"))

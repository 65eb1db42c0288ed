"""SshTransport against a real sshd on 127.0.0.1 with a generated host key."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from hpcbridge.errors import HostKeyError, PermissionDenied, Unreachable
from hpcbridge.transport import SshTransport, remote_command_line

SSHD = "/usr/sbin/sshd"
HOSTILE = ["a;b", "$(id)", "`id`", "x\ny", "'quoted'", '"dq"', "| cat", "&& true", "*", "-n",
           "$HOME", "\\", " spaced ", "~", "a\tb", ""]
ECHO_ARGS = [sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))"]

pytestmark = pytest.mark.skipif(not os.path.exists(SSHD) or not shutil.which("ssh-keygen"),
                                reason="needs openssh-server (apt-get install openssh-server)")


@dataclass
class Sshd:
    port: int
    proc: subprocess.Popen[bytes]
    known_hosts: str
    user_key: str
    host_fingerprint: str
    workdir: Path

    def drop_connections(self) -> None:
        """Kill the per-connection sshd children, as a server restart or network cut would."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        for pid in children.split():
            os.kill(int(pid), signal.SIGKILL)


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    yield from _sshd(tmp_path_factory, "")


@pytest.fixture(scope="module")
def sshd_two_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """An sshd that opens at most two sessions on one connection (MaxSessions 2)."""
    yield from _sshd(tmp_path_factory, "MaxSessions 2\n")


@pytest.fixture(scope="module")
def sshd_no_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """An sshd that lets users log in and refuses every session (MaxSessions 0)."""
    yield from _sshd(tmp_path_factory, "MaxSessions 0\n")


def _sshd(tmp_path_factory: pytest.TempPathFactory, extra: str) -> Iterator[Sshd]:
    d = tmp_path_factory.mktemp("sshd")
    _keygen(d / "host_key")
    _keygen(d / "user_key")
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
        f"PidFile {d / 'sshd.pid'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\n"
        f"AllowUsers {getpass.getuser()}\n{extra}")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                            stderr=open(d / "sshd.log", "wb"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()}")
    key_type, key_b64 = (d / "host_key.pub").read_text().split()[:2]
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {key_type} {key_b64}\n")
    fp = subprocess.run(["ssh-keygen", "-lf", str(d / "host_key.pub")], check=True,
                        capture_output=True, text=True).stdout.split()[1]
    yield Sshd(port, proc, str(d / "known_hosts"), str(d / "user_key"), fp, d)
    proc.terminate()
    proc.wait(timeout=10)


def transport(sshd: Sshd, **kw: object) -> SshTransport:
    options: dict[str, object] = {"port": sshd.port, "known_hosts": sshd.known_hosts,
                                  "keys": {getpass.getuser(): sshd.user_key},
                                  "default_user": getpass.getuser()}
    options.update(kw)
    return SshTransport("127.0.0.1", **options)  # type: ignore[arg-type]


def test_the_one_quoting_function() -> None:
    assert remote_command_line(["squeue", "--jobs=1,2"]) == "squeue --jobs=1,2"
    assert remote_command_line(["echo", "$(id)", "a b"]) == "echo '$(id)' 'a b'"
    with pytest.raises(ValueError):
        remote_command_line(["echo", "a\0b"])
    assert remote_command_line(["echo", "<x"], no_stdin=True) == "echo '<x' </dev/null"


async def test_only_a_command_given_input_gets_an_end_of_input_from_the_hub(
        sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    """An EOF the hub sends for a channel sshd has already freed ends the whole
    connection ("ieof packet referred to nonexistent channel"), and paramiko can send it
    after the channel's close; so a command without input reads /dev/null and the hub
    sends it no EOF at all (the one race the scale benchmark's burst lost spawns to)."""
    sent: list[int] = []
    original = paramiko.Channel.shutdown_write

    def counted(chan: paramiko.Channel) -> None:
        sent.append(chan.get_id())
        original(chan)

    monkeypatch.setattr(paramiko.Channel, "shutdown_write", counted)
    t = transport(sshd)
    try:
        # reading its input ends at once: /dev/null, not a channel left open
        quick = await asyncio.gather(*(t.run(["sh", "-c", "cat; echo $?"], timeout=5)
                                       for _ in range(20)))
        assert [r.stdout for r in quick] == ["0\n"] * 20 and sent == []
        given = await t.run(["wc", "-c"], stdin=b"four")
        assert given.stdout.strip() == "4" and len(sent) == 1
        empty = await t.run(["wc", "-c"], stdin=b"")
        assert empty.stdout.strip() == "0" and len(sent) == 2
    finally:
        await t.close()


async def test_hostile_argv_arrives_verbatim(sshd: Sshd) -> None:
    t = transport(sshd)
    try:
        result = await t.run([*ECHO_ARGS, *HOSTILE])
    finally:
        await t.close()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == HOSTILE


async def test_stdin_is_streamed_and_exit_code_kept(sshd: Sshd) -> None:
    t = transport(sshd)
    payload = os.urandom(1 << 20).hex().encode()  # 2 MB, more than one SSH window
    try:
        result = await t.run(["wc", "-c"], stdin=payload)
        assert int(result.stdout) == len(payload)
        failed = await t.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
        assert (failed.returncode, failed.stdout, failed.stderr) == (7, "out\n", "err\n")
    finally:
        await t.close()


async def test_connection_is_reused(sshd: Sshd) -> None:
    t = transport(sshd)
    try:
        await t.run(["true"])
        first = t._clients[getpass.getuser()]
        for _ in range(3):
            await t.run(["true"])
        assert t._clients[getpass.getuser()] is first
    finally:
        await t.close()


async def test_reconnects_after_the_server_drops_the_connection(sshd: Sshd) -> None:
    t = transport(sshd)
    try:
        assert (await t.run(["echo", "before"])).stdout == "before\n"
        sshd.drop_connections()
        await asyncio.sleep(0.2)
        assert (await t.run(["echo", "after"])).stdout == "after\n"
    finally:
        await t.close()


async def test_sessions_refused_on_a_live_connection_wait_and_spare_the_running_ones(
        sshd_two_sessions: Sshd) -> None:
    # six commands of one user at once on her one connection, two sessions allowed: the
    # refused ones ask again, and no command loses its connection to another's refusal
    t = transport(sshd_two_sessions)
    try:
        results = await asyncio.gather(*(t.run(["sh", "-c", f"sleep 0.3; echo {i}"],
                                               timeout=30) for i in range(6)))
        assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]
        assert len(t._clients) == 1
    finally:
        await t.close()


async def test_sessions_refused_until_the_deadline_are_unreachable_not_raw(
        sshd_no_sessions: Sshd) -> None:
    t = transport(sshd_no_sessions)
    try:
        with pytest.raises(Unreachable, match=r"cannot open a session on 127\.0\.0\.1"):
            await t.run(["true"], timeout=1.0)
    finally:
        await t.close()


async def test_timeout_is_unreachable(sshd: Sshd) -> None:
    t = transport(sshd)
    try:
        with pytest.raises(Unreachable, match="timed out"):
            await t.run(["sleep", "10"], timeout=0.5)
        assert (await t.run(["echo", "still usable"])).returncode == 0
    finally:
        await t.close()


async def test_unknown_host_key_is_refused_naming_host_and_fingerprint(sshd: Sshd) -> None:
    empty = sshd.workdir / "empty_known_hosts"
    empty.write_text("")
    t = transport(sshd, known_hosts=str(empty))
    with pytest.raises(HostKeyError) as info:
        await t.run(["true"])
    assert "127.0.0.1" in str(info.value) and sshd.host_fingerprint in str(info.value)
    assert "not pinned" in str(info.value)


async def test_wrong_host_key_is_refused(sshd: Sshd) -> None:
    other = sshd.workdir / "other_key"
    if not other.exists():
        _keygen(other)
    key_type, key_b64 = (sshd.workdir / "other_key.pub").read_text().split()[:2]
    wrong = sshd.workdir / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key_b64}\n")
    t = transport(sshd, known_hosts=str(wrong))
    with pytest.raises(HostKeyError) as info:
        await t.run(["true"])
    assert "does not match" in str(info.value) and sshd.host_fingerprint in str(info.value)


async def test_wrong_user_key_is_permission_denied(sshd: Sshd) -> None:
    stranger = sshd.workdir / "stranger_key"
    if not stranger.exists():
        _keygen(stranger)
    t = transport(sshd, keys=str(sshd.workdir / "stranger_key"))
    with pytest.raises(PermissionDenied):
        await t.run(["true"])


async def test_closed_port_is_unreachable(sshd: Sshd) -> None:
    t = transport(sshd, port=_free_port(), connect_timeout=2.0)
    with pytest.raises(Unreachable):
        await t.run(["true"])


def test_key_path_template_and_mapping() -> None:
    t = SshTransport("login", known_hosts="/dev/null", keys="/keys/{user}/id_ed25519")
    assert t.key_path("alice") == "/keys/alice/id_ed25519"
    m = SshTransport("login", known_hosts="/dev/null", keys={"bob": "/k/bob"})
    with pytest.raises(PermissionDenied, match="no SSH key"):
        m.key_path("alice")
    c = SshTransport("login", known_hosts="/dev/null", keys=lambda u: f"/c/{u}")
    assert c.key_path("carol") == "/c/carol"

"""LocalTransport runs real processes; argv reaches them verbatim, never via a shell."""

from __future__ import annotations

import getpass
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from hpcbridge.errors import PermissionDenied, TransportError, Unreachable
from hpcbridge.transport import LocalTransport

HOSTILE = ["a;b", "$(id)", "`id`", "x\ny", "'quoted'", '"dq"', "| cat", "&& true", "*", "-n",
           "$HOME", "\\", " spaced "]
ECHO_ARGS = [sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))"]


async def test_hostile_argv_is_passed_verbatim() -> None:
    result = await LocalTransport().run([*ECHO_ARGS, *HOSTILE])
    assert result.returncode == 0
    assert json.loads(result.stdout) == HOSTILE


async def test_stdin_stdout_stderr_and_exit_code() -> None:
    code = "import sys; d=sys.stdin.read(); print(d.upper()); print('e', file=sys.stderr); exit(3)"
    result = await LocalTransport().run([sys.executable, "-c", code], stdin=b"script\n")
    assert (result.returncode, result.stdout, result.stderr) == (3, "SCRIPT\n\n", "e\n")


async def test_own_user_runs_without_sudo() -> None:
    transport = LocalTransport()
    me = getpass.getuser()
    assert transport.build_argv(["squeue"], me) == ["squeue"]
    assert transport.build_argv(["squeue"], None) == ["squeue"]
    assert transport.build_argv(["squeue", "-u", "x"], "alice") == [
        "sudo", "-n", "-u", "alice", "--", "squeue", "-u", "x"]
    with pytest.raises(ValueError):
        transport.build_argv(["squeue"], "-s")


async def test_timeout_is_unreachable_and_kills_the_command() -> None:
    with pytest.raises(Unreachable, match="timed out"):
        await LocalTransport().run(["sleep", "10"], timeout=0.2)


async def test_missing_program_is_a_transport_error() -> None:
    with pytest.raises(TransportError, match="command not found"):
        await LocalTransport().run(["/nonexistent/squeue"])


async def test_sudo_denial_is_permission_denied() -> None:
    # a fake sudo that answers like sudo -n does when its policy says no
    fake_sudo = [sys.executable, "-c",
                 "import sys; print('sudo: a password is required', file=sys.stderr); exit(1)"]
    transport = LocalTransport(current_user="hub")
    transport.sudo = fake_sudo[0]
    transport.build_argv = lambda argv, user: [*fake_sudo, *argv]  # type: ignore[method-assign]
    with pytest.raises(PermissionDenied, match="sudo refused"):
        await transport.run(["squeue"], user="alice")


async def test_private_file_roundtrip() -> None:
    transport = LocalTransport()
    path = await transport.write_private_file(None, b"#!/bin/sh\necho $(id)\n")
    try:
        # a blocking look at a small local file is what this test is about
        assert Path(path).read_bytes() == b"#!/bin/sh\necho $(id)\n"  # noqa: ASYNC240
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        await transport.remove_file(None, path)
    assert not os.path.exists(path)  # noqa: ASYNC240


def test_nul_bytes_are_refused() -> None:
    with pytest.raises(ValueError):
        LocalTransport().build_argv(["echo", "a\0b"], None)

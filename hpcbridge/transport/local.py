"""Run an argv on this machine as a user, through ``sudo -n -u USER --`` (never a shell).

When the target user is the process's own user, the argv runs directly. The hub needs
a sudoers rule allowing exactly the scheduler commands, as the users of a group, never
as root, e.g. (``/etc/sudoers.d/hpcbridge``)::

    Cmnd_Alias HPCBRIDGE = /usr/bin/sbatch, /usr/bin/scancel, /usr/bin/squeue, \\
        /usr/bin/sacct, /usr/bin/sinfo, /usr/bin/scontrol, /usr/bin/sacctmgr, \\
        /usr/bin/sshare, /usr/bin/qsub, /usr/bin/qstat, /usr/bin/qdel, \\
        /usr/bin/mktemp, /usr/bin/dd, /usr/bin/rm, /usr/bin/mkdir, \\
        /usr/bin/env SLURM_UMASK=0077 sbatch --parsable
    Defaults!HPCBRIDGE !requiretty, env_reset
    hubuser ALL=(%hpcusers,!root) NOPASSWD: HPCBRIDGE

``mktemp``, ``dd``, ``rm`` and ``mkdir`` write and remove the temporary script qsub needs and
a notebook server's private environment file. ``env`` is allowed with exactly the arguments
that submit with a private umask (``SLURM_UMASK=0077``), nothing else.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import signal
from collections.abc import Sequence

from hpcbridge.errors import PermissionDenied, TransportError, Unreachable
from hpcbridge.transport.base import DEFAULT_TIMEOUT, FileOpsMixin, Result, check_argv

#: what sudo -n prints when its policy says no
_SUDO_DENIALS = ("a password is required", "is not allowed to execute", "unknown user",
                 "is not in the sudoers file", "not allowed to run sudo")


class LocalTransport(FileOpsMixin):
    """Commands on the local host, as other users via ``sudo -n -u``."""

    def __init__(self, *, sudo: str = "sudo", timeout: float = DEFAULT_TIMEOUT,
                 current_user: str | None = None) -> None:
        self.sudo = sudo
        self.timeout = timeout
        self.current_user = current_user or getpass.getuser()

    def build_argv(self, argv: Sequence[str], user: str | None) -> list[str]:
        args = check_argv(argv)
        if user is None or user == self.current_user:
            return args
        if user.startswith("-") or not user:
            raise ValueError(f"not a user name: {user!r}")
        return [self.sudo, "-n", "-u", user, "--", *args]

    async def run(self, argv: Sequence[str], *, user: str | None = None,
                  stdin: bytes | None = None, timeout: float | None = None) -> Result:
        full = self.build_argv(argv, user)
        limit = self.timeout if timeout is None else timeout
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # so a timeout can stop the whole process group
            )
        except FileNotFoundError as exc:
            raise TransportError(f"command not found: {full[0]}") from exc
        except PermissionError as exc:
            raise PermissionDenied(f"not allowed to execute {full[0]}: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            raise Unreachable(f"{argv[0]} as {user or self.current_user} timed out after "
                              f"{limit:g} s") from None
        result = Result(proc.returncode or 0, out.decode(errors="replace"),
                        err.decode(errors="replace"))
        if full[0] == self.sudo and _sudo_denied(result):
            raise PermissionDenied(
                f"sudo refused to run {argv[0]} as {user}: {result.stderr.strip()}",
                user_message="The hub is not allowed to act for this user.",
            )
        return result

    async def close(self) -> None:
        """Nothing is kept open between commands."""


def _sudo_denied(result: Result) -> bool:
    err = result.stderr.lower()
    return result.returncode == 1 and err.startswith("sudo:") and any(
        d in err for d in _SUDO_DENIALS)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass

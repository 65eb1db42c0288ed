"""The transport protocol: run an argv as a user somewhere; know nothing of schedulers.

Transports never go through a local shell. Failures are typed:
:class:`~hpcbridge.errors.Unreachable` (host down, connection dropped, command timed
out), :class:`~hpcbridge.errors.PermissionDenied` (sudo policy, SSH authentication),
:class:`~hpcbridge.errors.HostKeyError` (SSH host key not pinned or different).
A command that ran and exited non-zero is *not* an error here: its
:class:`Result` goes back to the caller, who knows what the words mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hpcbridge.errors import TransportError

#: seconds a command may take when the caller gives no timeout
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


@runtime_checkable
class Transport(Protocol):
    async def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> Result:
        """Run ``argv`` as ``user`` (None: the transport's own identity)."""
        ...

    async def write_private_file(self, user: str | None, content: bytes) -> str:
        """Write ``content`` to a new file only ``user`` can read; return its path."""
        ...

    async def remove_file(self, user: str | None, path: str) -> None: ...

    async def close(self) -> None: ...


def check_argv(argv: Sequence[str]) -> list[str]:
    """A non-empty list of strings without NUL bytes (no OS interface can carry them)."""
    args = list(argv)
    if not args or not all(isinstance(a, str) for a in args):
        raise TypeError(f"argv must be a non-empty list of str, got {argv!r}")
    if any("\0" in a for a in args):
        raise ValueError("argv elements may not contain NUL bytes")
    return args


class FileOpsMixin:
    """Private temp files through ``run`` alone, so every transport gets them the same way.

    ``mktemp`` creates the file mode 0600 as the target user; ``dd`` fills it from stdin.
    Both are plain argv: the script content never becomes an argument.
    """

    async def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> Result:
        raise NotImplementedError

    async def write_private_file(self, user: str | None, content: bytes) -> str:
        made = await self.run(["mktemp", "--tmpdir", "hpcbridge-job.XXXXXXXXXX"], user=user)
        path = made.stdout.strip()
        if made.returncode != 0 or not path.startswith("/"):
            raise TransportError(f"could not create a private file as {user}: {made.stderr}")
        wrote = await self.run(["dd", f"of={path}", "status=none"], user=user, stdin=content)
        if wrote.returncode != 0:
            await self.remove_file(user, path)
            raise TransportError(f"could not write {path} as {user}: {wrote.stderr}")
        return path

    async def remove_file(self, user: str | None, path: str) -> None:
        await self.run(["rm", "-f", "--", path], user=user)

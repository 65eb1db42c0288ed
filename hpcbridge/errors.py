"""The exception tree of hpcbridge.

    HpcBridgeError
    ├── ProfileError              a site profile is invalid (carries every problem found)
    ├── RequestError              a user's request is refused (over a limit, outside a grammar)
    │   └── LimitExceeded         a value is over a limit; says which limit
    ├── IdentityRefused           the hub may not act as this user (system or service account)
    ├── TransportError            running a command somewhere failed
    │   ├── HostKeyError          the SSH host key is unknown or does not match the pinned one
    │   ├── PermissionDenied      authentication or authorization failed
    │   └── Unreachable           host or scheduler cannot be reached, or timed out
    └── SchedulerError            the scheduler answered with an error
        ├── SchedulerUnavailable  the scheduler is down or slow: job states are *unknown*, not gone
        ├── JobNotFound           the scheduler says this job does not exist
        └── SubmitRefused         the scheduler refused a submission (limits, account, partition)

Each error has a message for the person who must act on it; errors that a JupyterHub
user sees carry ``user_message`` separately from what goes into the hub log. A message
quotes at most :data:`QUOTE_LIMIT` characters of what a user sent (:func:`quote`).
"""

from __future__ import annotations

import reprlib

#: characters of a user's value an error message may quote
QUOTE_LIMIT = 60

_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = QUOTE_LIMIT
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 4


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` cut to about ``limit`` characters, safe for any size and nesting:
    what an error message may echo of a value someone sent."""
    if isinstance(value, str):
        text = repr(value[:limit])
        return text if len(value) <= limit else f"{text}… ({len(value)} characters)"
    text = _REPR.repr(value)
    return text if len(text) <= limit + 2 else text[:limit] + "…"


class HpcBridgeError(Exception):
    """Base of every error raised by hpcbridge."""

    def __init__(self, message: str, *, user_message: str | None = None) -> None:
        super().__init__(message)
        self.user_message = user_message or message


class ProfileError(HpcBridgeError):
    """A site profile failed to load or validate. ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems) or "invalid site profile")


class RequestError(HpcBridgeError):
    """A request (spawn options, render request, scale request) is refused.

    ``problems``: (request field, message) of each problem, when the gate found them;
    the spawn form shows each next to its field.
    """

    def __init__(self, message: str, *, user_message: str | None = None,
                 problems: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message, user_message=user_message)
        self.problems = problems


class LimitExceeded(RequestError):
    """A requested value is over a limit; the message names the limit."""


class IdentityRefused(HpcBridgeError):
    """The hub may not act as this user: a system account, the cluster's status user,
    the hub's own account, a denied name, or a uid below the cluster's minimum."""


class TransportError(HpcBridgeError):
    """Running a command through a transport failed."""


class HostKeyError(TransportError):
    """The remote host key is not pinned, or differs from the pinned one."""


class PermissionDenied(TransportError):
    """Authentication or authorization failed (SSH auth, sudo policy)."""


class Unreachable(TransportError):
    """The host cannot be reached, or a command timed out."""


class SchedulerError(HpcBridgeError):
    """The scheduler answered with an error."""


class SchedulerUnavailable(SchedulerError):
    """The scheduler cannot be reached or is too slow: states are unknown, never 'gone'."""


class JobNotFound(SchedulerError):
    """The scheduler says the job does not exist."""


class SubmitRefused(SchedulerError):
    """The scheduler refused a submission."""


"""jupyter-scheduler's server extension with refusals answered as what they are.

jupyter-scheduler's handlers answer every ``SchedulerError`` with HTTP 500 ("Internal
Server Error"), also a request refused before anything was stored: over a partition's
limit, a parameter the notebook does not take, a sweep over the QOS. Such refusals are
raised as :class:`Refused`; the handlers of :class:`HpcSchedulerApp` (jupyter-scheduler's
own, each with :class:`RefusalsAre400` in front) answer them with 400 and the plain
sentence as ``message``, which the Create Job dialog shows. Everything else stays
jupyter-scheduler's. Servers the spawner starts load this extension instead of
jupyter-scheduler's (``hpcbridge/spawner/launch.py``)::

    --ServerApp.jpserver_extensions=jupyter_scheduler=False
    --ServerApp.jpserver_extensions=hpcbridge.batch.app=True

``SchedulerApp.*`` settings apply to it unchanged (it is a subclass).
"""

from __future__ import annotations

from typing import Any

from jupyter_scheduler.exceptions import InputUriError, SchedulerError
from jupyter_scheduler.extension import SchedulerApp
from jupyter_scheduler.pydantic_v1 import ValidationError


class Refused(SchedulerError):
    """A request refused before anything was stored; its text is the reason."""


#: what a client asked wrongly: a refusal, a missing notebook, a malformed body
_CLIENT_ERRORS = (Refused, InputUriError, ValidationError)


def refusal_in(exc: BaseException | None) -> BaseException | None:
    """The client error that caused ``exc`` (jupyter-scheduler's handlers wrap it in a
    500 ``HTTPError``), if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, _CLIENT_ERRORS):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


class RefusalsAre400:
    """A handler mixin: a 500 caused by a client error goes out as 400."""

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if status_code == 500 and exc_info and refusal_in(exc_info[1]) is not None:
            status_code = 400
        super().send_error(status_code, **kwargs)  # type: ignore[misc]


def _refusing(handler: type) -> type:
    return type(handler.__name__, (RefusalsAre400, handler), {})


class HpcSchedulerApp(SchedulerApp):
    """jupyter-scheduler's extension; its handlers answer refusals with 400."""

    # a plain class attribute, as jupyter-scheduler's own (it replaces a traitlet)
    handlers = [(route, _refusing(handler))  # noqa: RUF012
                for route, handler in SchedulerApp.handlers]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "hpcbridge.batch.app", "app": HpcSchedulerApp}]

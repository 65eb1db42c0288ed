"""A running cell counts as use of the server, for idle culling.

Jupyter Server tells the hub when it was last used: API requests, kernel messages,
terminals, and any web-app setting whose name ends in ``_last_activity``. A cell that
computes for an hour without output sends no message, so without this a culler would
stop the server mid-computation and cancel its job. This server extension marks the
server used while any kernel is busy (``hpcbridge_busy_last_activity``); an idle kernel
that merely holds a Dask cluster is not use, and its server is culled with the workers
(``docs/admin/operations.md``, "Idle culling").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from datetime import datetime, timezone
from typing import Any

SERVER_EXTENSION = "hpcbridge.lab.activity"
#: the web-app setting Jupyter Server counts as activity (its name ends in _last_activity)
SETTING = "hpcbridge_busy_last_activity"
#: seconds between two looks at the kernels (in memory: costs nothing)
INTERVAL = 5.0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def any_busy(kernels: Iterable[Mapping[str, Any]]) -> bool:
    return any(k.get("execution_state") == "busy" for k in kernels)


def mark_if_busy(settings: MutableMapping[str, Any], kernels: Iterable[Mapping[str, Any]],
                 now: Callable[[], datetime] = _utcnow) -> bool:
    """Set the activity setting to now when a kernel is busy; whether one was."""
    if any_busy(kernels):
        settings[SETTING] = now()
        return True
    return False


async def watch(settings: MutableMapping[str, Any], kernel_manager: Any,
                interval: float = INTERVAL) -> None:
    while True:
        mark_if_busy(settings, kernel_manager.list_kernels())
        await asyncio.sleep(interval)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": SERVER_EXTENSION}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from tornado.ioloop import IOLoop

    settings = serverapp.web_app.settings

    def start() -> None:
        # keep a reference: the loop holds tasks weakly
        serverapp.hpcbridge_activity_task = asyncio.ensure_future(
            watch(settings, serverapp.kernel_manager))

    IOLoop.current().add_callback(start)

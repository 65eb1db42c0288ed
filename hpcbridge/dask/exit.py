"""Cancel a cluster's jobs when the notebook's kernel (the interpreter) exits.

dask's own exit hook closes clusters, which cancels their jobs through the transport;
this one runs first and, for whatever is left (an asynchronous cluster whose loop is
gone, a close that timed out), cancels the remaining job ids in a fresh event loop.
The hook is registered by the first cluster, never at import.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import weakref
from typing import Any

log = logging.getLogger(__name__)

_clusters: weakref.WeakSet[Any] = weakref.WeakSet()
_registered = False


def remember(cluster: Any) -> None:
    global _registered
    _clusters.add(cluster)
    if not _registered:
        atexit.register(close_all)
        _registered = True


def forget(cluster: Any) -> None:
    _clusters.discard(cluster)


def close_all(timeout: float = 20.0) -> None:
    for cluster in list(_clusters):
        try:
            if not cluster.asynchronous:
                cluster.close(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 -- at exit, go on to cancel by id
            log.warning("closing %s at exit failed: %s", cluster, exc)
        cancel_left(cluster)


def cancel_left(cluster: Any) -> None:
    left = cluster.live_job_ids()
    if not left:
        return
    try:
        asyncio.run(cluster.hpcb.client.cancel(cluster.hpcb.user, left))
    except Exception as exc:  # noqa: BLE001 -- report what could not be cancelled
        log.error("could not cancel worker jobs %s at exit: %s; list them with "
                  "`hpcbridge dask orphans`", ", ".join(left), exc)
    _clusters.discard(cluster)

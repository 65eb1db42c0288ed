"""hpcbridge clusters in JupyterLab's Dask sidebar (dask-labextension).

Two sides (see ``docs/dask.md``, "JupyterLab's Dask sidebar"):

* **The kernel's**: a cluster started under a JupyterHub server leaves a record
  (``hpcbridge/dask/labrecords.py``) and answers two requests on its own Dask
  scheduler: ``hpcbridge_lab`` (workers, cores, memory, the clamping message) and
  ``hpcbridge_lab_scale`` (scale through the same clamp as ``cluster.scale``). Whoever
  can reach a Dask scheduler can already run code in its process, so these add nothing.
* **The server's**: a Jupyter server extension (``hpcbridge.dask.lab``, enabled by the
  launcher) gives dask-labextension's one manager object the methods of a subclass that
  also lists this server's notebook clusters, scales them through their scheduler, and
  appends each cluster's clamping message to the name the sidebar shows. The "New"
  button's factory is ``hpcbridge.dask.cluster`` (dask config ``labextension.factory``,
  set by the launcher unless the site set it), so sidebar clusters come from the site
  profile under the same limits.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

from hpcbridge.dask.labrecords import (
    ClusterRecord,
    read_records,
    remove_record,
    sidebar_name,
    this_server,
    write_record,
)
from hpcbridge.errors import HpcBridgeError

log = logging.getLogger(__name__)

#: dask config (as environment variables) that makes the sidebar's "New" an hpcbridge cluster
FACTORY_ENV = {"DASK_LABEXTENSION__FACTORY__MODULE": "hpcbridge.dask",
               "DASK_LABEXTENSION__FACTORY__CLASS": "cluster"}
#: the Jupyter server extension (this module) that lists notebook clusters in the sidebar
SERVER_EXTENSION = "hpcbridge.dask.lab"
#: seconds between two looks at this server's notebook clusters
REFRESH = 2.0
#: how long one scheduler may take to answer
ASK_TIMEOUT = 5.0
#: set in the Jupyter server's own process: its manager lists the clusters it starts
_serving = False


# -- the kernel's side ---------------------------------------------------------------

def cluster_state(cluster: Any) -> dict[str, Any]:
    """What the sidebar shows of a cluster whose scheduler runs in this process."""
    workers = cluster.scheduler.workers.values()
    return {"workers": len(workers), "cores": sum(w.nthreads for w in workers),
            "memory": sum(w.memory_limit or 0 for w in workers),
            "message": cluster.error or cluster.scale_message,
            "dashboard_link": cluster.dashboard_link or ""}


def announce(cluster: Any) -> Any:
    """Answer the sidebar on the cluster's scheduler and leave a record; the record's path."""
    scheduler = getattr(cluster, "scheduler", None)
    handlers = getattr(scheduler, "handlers", None)
    if _serving or this_server() is None or not isinstance(handlers, dict):
        return None

    async def state() -> dict[str, Any]:
        return cluster_state(cluster)

    async def scale(n: int) -> dict[str, Any]:
        try:
            await cluster._scale_to(int(n))
        except HpcBridgeError as exc:
            return {**cluster_state(cluster), "refused": str(exc)}
        return cluster_state(cluster)

    handlers["hpcbridge_lab"] = state
    handlers["hpcbridge_lab_scale"] = scale
    try:
        return write_record(cluster._name, cluster.scheduler_address,
                            cluster.dashboard_link or "")
    except OSError as exc:
        log.warning("the Dask sidebar will not list %s: %s", cluster._name, exc)
        return None


def withdraw(path: Any) -> None:
    try:
        remove_record(path)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)


# -- the server's side ---------------------------------------------------------------

def kernel_model(record: ClusterRecord, state: dict[str, Any]) -> dict[str, Any]:
    """A dask-labextension cluster model for a notebook's cluster."""
    from dask.utils import format_bytes

    return {"id": record.lab_id,
            "name": sidebar_name(f"{record.name} (notebook)", state.get("message")),
            "scheduler_address": record.address,
            "dashboard_link": state.get("dashboard_link") or record.dashboard_link,
            "workers": int(state.get("workers", 0)), "cores": int(state.get("cores", 0)),
            "memory": format_bytes(int(state.get("memory", 0)))}


async def ask(address: str, op: str, **kwargs: Any) -> dict[str, Any]:
    from distributed.core import rpc

    async with rpc(address, timeout=ASK_TIMEOUT) as scheduler:
        return await asyncio.wait_for(getattr(scheduler, op)(**kwargs), ASK_TIMEOUT)


class NotebookClusters:
    """The notebook clusters of this server, as the sidebar lists them (refreshed)."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.models: dict[str, dict[str, Any]] = {}
        self.records: dict[str, ClusterRecord] = {}

    async def refresh(self) -> None:
        records = await asyncio.to_thread(read_records, self.server)
        answers = await asyncio.gather(*(ask(r.address, "hpcbridge_lab") for r in records),
                                       return_exceptions=True)
        models, by_id = {}, {}
        for record, answer in zip(records, answers, strict=True):
            if isinstance(answer, dict):  # else closing, or not a cluster of ours any more
                models[record.lab_id] = kernel_model(record, answer)
                by_id[record.lab_id] = record
        self.models, self.records = models, by_id

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # keep refreshing: one bad record must not end the listing
                log.exception("listing notebook Dask clusters failed")
            await asyncio.sleep(REFRESH)

    async def scale(self, lab_id: str, n: int) -> dict[str, Any]:
        record = self.records[lab_id]
        answer = await ask(record.address, "hpcbridge_lab_scale", n=n)
        if answer.get("refused"):
            raise HpcBridgeError(answer["refused"])
        self.models[lab_id] = model = kernel_model(record, answer)
        return model


class ManagerWithNotebooks:
    """Methods given to dask-labextension's manager (a ``DaskClusterManager``)."""

    notebooks: NotebookClusters
    _clusters: dict[str, Any]

    def _with_message(self, model: dict[str, Any] | None) -> dict[str, Any] | None:
        cluster = self._clusters.get(model["id"]) if model else None
        if model and cluster is not None:
            message = getattr(cluster, "error", None) or getattr(cluster, "scale_message", None)
            model = {**model, "name": sidebar_name(model["name"], message)}
        return model

    def list_clusters(self) -> list[dict[str, Any]]:
        own = super().list_clusters()  # type: ignore[misc]
        return [*(m for m in map(self._with_message, own) if m),
                *self.notebooks.models.values()]

    def get_cluster(self, cluster_id: str) -> dict[str, Any] | None:
        model = self._with_message(super().get_cluster(cluster_id))  # type: ignore[misc]
        return model or self.notebooks.models.get(cluster_id)

    async def scale_cluster(self, cluster_id: str, n: int) -> dict[str, Any] | None:
        if cluster_id in self.notebooks.models:
            return await self.notebooks.scale(cluster_id, n)
        return self._with_message(
            await super().scale_cluster(cluster_id, n))  # type: ignore[misc]

    def adapt_cluster(self, cluster_id: str, minimum: int, maximum: int) -> Any:
        if cluster_id in self.notebooks.models:
            raise HpcBridgeError("this cluster belongs to a notebook: call "
                                 "cluster.adapt(...) there")
        return self._with_message(super().adapt_cluster(  # type: ignore[misc]
            cluster_id, minimum, maximum))

    async def close_cluster(self, cluster_id: str) -> dict[str, Any] | None:
        if cluster_id in self.notebooks.models:
            raise HpcBridgeError("this cluster belongs to a notebook: close it there "
                                 "(cluster.close()), or shut the kernel down")
        return await super().close_cluster(cluster_id)  # type: ignore[misc]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": SERVER_EXTENSION}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    global _serving
    server = this_server()
    try:
        labext = importlib.import_module("dask_labextension.manager")
    except ImportError:
        serverapp.log.info("hpcbridge: no dask-labextension here; the Dask sidebar is off")
        return
    if server is None:
        return
    from tornado.ioloop import IOLoop

    _serving = True
    manager = labext.manager
    base = type(manager)
    if not issubclass(base, ManagerWithNotebooks):
        # the handlers hold this one object: give it the subclass's methods
        manager.__class__ = type("HpcClusterManager", (ManagerWithNotebooks, base), {})
    manager.notebooks = NotebookClusters(server)

    def start() -> None:
        # keep a reference: the loop holds tasks weakly
        serverapp.hpcbridge_lab_task = asyncio.ensure_future(manager.notebooks.run())

    IOLoop.current().add_callback(start)
    serverapp.log.info("hpcbridge: the Dask sidebar lists this server's notebook clusters")

"""The private parts of our libraries that hpcbridge relies on are still there.

pyproject.toml bounds these libraries from above; a release inside the bounds (or
``./dev test --latest`` past them) that moves one of these fails here, naming it,
instead of somewhere deep in a live Dask or hub test.
"""

from __future__ import annotations

import asyncio
import inspect


def _moved(what: str, user: str) -> str:
    return (f"{what} is gone or changed: {user} relies on it. Adapt that code, or keep the "
            "upper bound in pyproject.toml below this release")


def test_distributed_cluster_internals() -> None:
    from distributed.deploy.cluster import Cluster
    from distributed.deploy.spec import SpecCluster

    hook = getattr(Cluster, "_update_worker_status", None)
    assert callable(hook) and list(inspect.signature(hook).parameters) == ["self", "op", "msg"], \
        _moved("distributed Cluster._update_worker_status(self, op, msg)",
               "hpcbridge/dask/clusters.py (overrides it, skipping SpecCluster's by-name close)")
    assert "_update_worker_status" in vars(SpecCluster), _moved(
        "distributed SpecCluster._update_worker_status", "hpcbridge/dask/clusters.py")
    for name in ("_correct_state", "_start", "_close"):
        assert callable(getattr(SpecCluster, name, None)), _moved(
            f"distributed SpecCluster.{name}", "hpcbridge/dask/clusters.py and rolling.py")


def test_distributed_process_interface_has_its_finished_event() -> None:
    from distributed.deploy.spec import ProcessInterface

    async def make() -> ProcessInterface:
        return ProcessInterface()

    job = asyncio.run(make())
    assert isinstance(getattr(job, "_event_finished", None), asyncio.Event), _moved(
        "distributed ProcessInterface._event_finished (an asyncio.Event)",
        "hpcbridge/dask/specs.py mark_ended()")


def test_dask_jobqueue_cluster_internals() -> None:
    from dask_jobqueue.core import JobQueueCluster

    source = inspect.getsource(JobQueueCluster.__init__)
    assert "self._job_kwargs" in source, _moved(
        "dask-jobqueue JobQueueCluster._job_kwargs", "hpcbridge/dask/specs.py")
    assert "self.job_cls" in source, _moved(
        "dask-jobqueue JobQueueCluster.job_cls (the job class a subclass names)",
        "hpcbridge/dask/clusters.py")


def test_jupyterhub_api_route_table() -> None:
    from jupyterhub import apihandlers

    routes = getattr(apihandlers, "default_handlers", None)
    assert isinstance(routes, list) and all(isinstance(r, tuple) for r in routes), _moved(
        "jupyterhub.apihandlers.default_handlers (a list of (pattern, handler) tuples)",
        "hpcbridge/spawner/hubconfig.py (removes batchspawner's route from it)")

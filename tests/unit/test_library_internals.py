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


def test_jupyter_scheduler_internals() -> None:
    from jupyter_scheduler import handlers, orm, scheduler

    user = "hpcbridge/batch/scheduler.py"
    base = scheduler.Scheduler
    for name in ("get_job_filenames", "add_job_files", "get_local_output_path", "db_session"):
        assert hasattr(base, name), _moved(f"jupyter-scheduler Scheduler.{name}", user)
    params = list(inspect.signature(base.__init__).parameters)
    assert params[:4] == ["self", "root_dir", "environments_manager", "db_url"], _moved(
        "jupyter-scheduler Scheduler(root_dir, environments_manager, db_url, ...)", user)
    columns = set(orm.Job.__table__.columns.keys())
    assert {"job_id", "status", "status_message", "start_time", "end_time", "create_time",
            "idempotency_token"} <= columns, _moved("jupyter-scheduler's jobs table", user)
    # our create/stop/list/get/delete are coroutines: the handlers must await them
    source = inspect.getsource(handlers.JobHandler)
    for method in ("get_job", "list_jobs", "create_job", "stop_job", "delete_job"):
        assert f"ensure_async(self.scheduler.{method}(" in source, _moved(
            f"jupyter-scheduler JobHandler awaiting scheduler.{method}", user)


def test_jupyter_scheduler_definition_internals() -> None:
    from jupyter_scheduler import handlers, orm, utils

    user = "hpcbridge/batch/jobdefs.py"
    # our definition methods are coroutines: the handlers must await them
    source = inspect.getsource(handlers.JobDefinitionHandler)
    for method in ("create_job_definition", "update_job_definition", "delete_job_definition"):
        assert f"ensure_async(\n                self.scheduler.{method}(" in source or \
            f"ensure_async(self.scheduler.{method}(" in source, _moved(
                f"jupyter-scheduler JobDefinitionHandler awaiting scheduler.{method}", user)
    assert "ensure_async(\n                self.scheduler.create_job_from_definition(" in \
        inspect.getsource(handlers.JobFromDefinitionHandler), _moved(
            "jupyter-scheduler JobFromDefinitionHandler awaiting the scheduler", user)
    columns = set(orm.JobDefinition.__table__.columns.keys())
    assert {"job_definition_id", "schedule", "timezone", "active"} <= columns, _moved(
        "jupyter-scheduler's job definitions table", user)
    assert "job_definition_id" in orm.Job.__table__.columns, _moved(
        "jupyter-scheduler's jobs of a definition", user)
    # the cron job names a run's outputs as the server's list links to them
    assert list(inspect.signature(utils.create_output_filename).parameters)[:3] == [
        "input_filename", "create_time", "output_format"], _moved(
            "jupyter_scheduler.utils.create_output_filename", "hpcbridge/batch/recurring.py")

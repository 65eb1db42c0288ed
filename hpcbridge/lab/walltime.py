"""The remaining walltime of this notebook server's job (``GET <server>/hpcbridge/walltime``).

The job's id comes from the scheduler's own variable in the job's environment
(``SLURM_JOB_ID``, ``PBS_JOBID``), its time left from the scheduler (one status query
through the site profile's dialect, as the user, repeated every ``REFRESH`` seconds so
that a changed time limit shows); nothing a browser sends is used. Between queries the
answer counts down on this process's monotonic clock. The JupyterLab side
(``labextensions/@hpcbridge/walltime``) asks once a minute and counts down each second.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hpcbridge.client import SchedulerClient
from hpcbridge.errors import HpcBridgeError

#: the server extension (this module), enabled by the launcher
SERVER_EXTENSION = "hpcbridge.lab.walltime"
#: where JupyterLab finds the prebuilt extension that shows the time left
LABEXTENSIONS = Path(__file__).resolve().parent / "labextensions"
#: the browser warns this many seconds before the walltime ends
WARN_BEFORE = 600
#: seconds between two scheduler queries of one server (its time limit may be changed)
REFRESH = 300.0
#: the scheduler variables that hold the job's own id, most specific first
JOB_ID_VARIABLES = ("PBS_JOBID", "SLURM_JOB_ID")
ROUTE = "hpcbridge/walltime"


def job_id_of(client: SchedulerClient, environ: Mapping[str, str]) -> str | None:
    """This job's id as the scheduler set it, if the dialect takes it for one of its own."""
    for name in JOB_ID_VARIABLES:
        value = environ.get(name, "")
        if value and client.dialect.is_job_id(value):
            return value
    return None


class JobClock:
    """The time left of one job, asked of the scheduler at most every ``refresh`` s."""

    def __init__(self, job_id: str, client: SchedulerClient, refresh: float = REFRESH,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.job_id = job_id
        self.client = client
        self.refresh = refresh
        self.clock = clock
        self._end: float | None = None  # on ``clock``
        self._asked: float | None = None
        self._lock = asyncio.Lock()

    async def _ask(self) -> None:
        info = (await self.client.status([self.job_id]))[self.job_id]
        self._end = (self.clock() + info.time_left.total_seconds()
                     if info.time_left is not None else None)

    async def left(self) -> float | None:
        """Seconds until the walltime ends; None when the scheduler does not say."""
        async with self._lock:
            now = self.clock()
            if self._asked is None or now - self._asked >= self.refresh:
                try:
                    await self._ask()
                except HpcBridgeError:
                    pass  # keep counting down the last answer; ask again next time
                self._asked = now
        if self._end is None:
            return None
        return max(0.0, self._end - self.clock())

    async def answer(self) -> dict[str, Any]:
        left = await self.left()
        return {"job_id": self.job_id, "left": None if left is None else round(left),
                "warn_before": WARN_BEFORE}


def clock_for_this_job(environ: Mapping[str, str] | None = None) -> JobClock | None:
    """A clock for the job this process runs in, from the profile's job copy; None
    outside a batch job or without a profile."""
    from hpcbridge.profiles.jobcopy import profile_in_job
    from hpcbridge.schedulers.registry import dialect_of

    env = os.environ if environ is None else environ
    try:
        profile = profile_in_job()
    except HpcBridgeError:
        return None
    name = profile.cluster_name(env.get("HPCBRIDGE_CLUSTER") or None)
    client = SchedulerClient.on_this_machine(dialect_of(profile.clusters[name]))
    job_id = job_id_of(client, env)
    return JobClock(job_id, client) if job_id else None


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": SERVER_EXTENSION}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from jupyter_server.base.handlers import APIHandler
    from jupyter_server.utils import url_path_join
    from tornado import web

    found = clock_for_this_job()
    if found is None:
        serverapp.log.info("hpcbridge: not in a batch job; no walltime to show")
        return
    clock: JobClock = found

    class WalltimeHandler(APIHandler):
        @web.authenticated
        async def get(self) -> None:
            self.finish(json.dumps(await clock.answer()))

    route = url_path_join(serverapp.web_app.settings["base_url"], ROUTE)
    serverapp.web_app.add_handlers(".*$", [(route, WalltimeHandler)])
    serverapp.log.info("hpcbridge: walltime of job %s at %s", clock.job_id, route)

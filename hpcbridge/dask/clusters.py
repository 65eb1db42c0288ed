"""dask-jobqueue clusters that know the scheduler: limits, job states, replacement.

What this adds to dask-jobqueue's ``SLURMCluster`` / ``PBSCluster`` (see
``docs/dask.md``):

* ``scale`` and ``adapt`` are clamped by :mod:`hpcbridge.dask.limits` before anything
  is submitted; the reason is logged, warned once and kept in ``scale_message``.
* Every worker job is tracked by a :class:`~hpcbridge.poller.StatusPoller`; states,
  pending reasons and estimated starts show in ``jobs()`` and the repr.
* A worker job that ends while still wanted is replaced: a retired worker (its
  ``--lifetime`` ran out before the walltime) at once, a failed one at most
  ``max_failures`` times in a row, then ``error`` says why and scaling up is refused.
* ``adapt`` closes whole jobs only, so several processes per job do not thrash.
* With ``arrays=True`` (Slurm), a scale-up of several jobs is one job array.

Worker spec entries are named ``<cluster name>-<n>``; a worker is named after its
entry, plus ``-<array task>`` in an array, plus ``-<process>`` when a job runs several.
"""

from __future__ import annotations

import asyncio
import logging
import math
from html import escape
from typing import Any

from dask.utils import parse_bytes
from dask_jobqueue.pbs import PBSCluster
from dask_jobqueue.slurm import SLURMCluster
from distributed.core import Status
from distributed.deploy.adaptive import Adaptive
from distributed.deploy.cluster import Cluster

from hpcbridge.dask.exit import forget, remember
from hpcbridge.dask.facts import (
    StaticLimits,
    keep_static,
    read_limits,
    read_static,
    recent_static,
)
from hpcbridge.dask.job import HpcPbsJob, HpcSlurmJob, WorkerContext
from hpcbridge.dask.lab import announce, withdraw
from hpcbridge.dask.limits import (
    Limits,
    ProfileCaps,
    ScalePlan,
    WorkerShape,
    adapt_plan,
    plan_scale,
    roll_after,
)
from hpcbridge.dask.rolling import RollingMixin
from hpcbridge.dask.specs import JobKey, SpecEntriesMixin, mark_ended
from hpcbridge.dask.view import hub_dashboard_link, jobs_summary
from hpcbridge.errors import HpcBridgeError
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.poller import StateChange, StatusPoller

log = logging.getLogger(__name__)

#: how a worker job may end without counting as a failure: retired, walltime reached, or
#: an end nobody recorded (no evidence of a failure: on a site without job accounting
#: every end looks so, and counting them would stop replacing workers after a few)
NORMAL_ENDS = frozenset({JobState.COMPLETED, JobState.TIMEOUT, JobState.ENDED_UNKNOWN})
LIMITS_TTL = 5.0
STATIC_TTL = 300.0


class _HpcClusterMixin(SpecEntriesMixin, RollingMixin):
    """State and behaviour shared by the Slurm and PBS clusters."""

    # provided by SpecCluster (annotations only: nothing shadows the real attributes)
    status: Any
    plan: Any
    scheduler_info: dict[str, Any]
    scheduler_address: str
    asynchronous: bool
    sync: Any
    _correct_state: Any

    def __init__(self, *, hpcb: WorkerContext, shape: WorkerShape, caps: ProfileCaps,
                 qos: str | None = None, poller: StatusPoller | None = None,
                 poll_interval: float = 10.0, arrays: bool = False, max_failures: int = 3,
                 rolling: bool = True, n_workers: int = 0, **kwargs: Any) -> None:
        self.hpcb, self.shape, self._caps, self._qos = hpcb, shape, caps, qos
        self._poller, self._own_poller = poller, poller is None
        self._poll_interval = poll_interval
        # array workers learn their task from Slurm's variable and are tracked by Slurm's
        # task ids (hpcbridge/dask/worker.py, job.py): arrays on Slurm only
        can = hpcb.client.dialect.capabilities
        self.arrays = arrays and can.arrays and can.dask == "slurm"
        self.max_failures = max_failures
        self.failures = 0
        #: why worker jobs are no longer replaced (None while all is well)
        self.error: str | None = None
        #: the last clamping message (None when the last request fitted)
        self.scale_message: str | None = None
        #: the last scale request as planned: jobs, binding limits, cost and budget
        self.last_plan: ScalePlan | None = None
        #: what scale() last asked for; a clamped cluster grows towards it when room appears
        self.wanted_workers = 0
        self.regrow_interval = 5.0
        self._regrow: asyncio.Task[None] | None = None
        self.job_states: dict[str, JobInfo] = {}
        self._jobs_by_id: dict[str, Any] = {}
        self._limits: tuple[float, Limits] | None = None
        self._limits_reading: asyncio.Future[tuple[Limits, Any]] | None = None
        self._static: tuple[float, StaticLimits] | None = None
        self._static_reading: asyncio.Future[StaticLimits] | None = None
        self._unsubscribe: Any = None
        self._counter = -1
        self.adapt_limits: asyncio.Future[None] | None = None
        self.rolling = rolling
        self._init_rolling(
            roll_after(hpcb.lifetime, hpcb.lifetime_stagger).total_seconds(),
            (hpcb.lifetime - hpcb.lifetime_stagger).total_seconds())
        hpcb.on_submit, hpcb.on_cancel = self._on_submit, self._on_cancel
        kwargs.setdefault("scheduler_options", {}).setdefault("dashboard_address", ":0")
        super().__init__(hpcb=hpcb, processes=hpcb.processes, **kwargs)  # type: ignore[call-arg]
        remember(self)
        if n_workers:
            self.scale(n_workers)

    # -- tracking --------------------------------------------------------------------

    async def _start(self) -> None:
        await super()._start()  # type: ignore[misc]
        if self._poller is None:
            self._poller = StatusPoller(self.hpcb.client, interval=self._poll_interval,
                                        query_as=self.hpcb.user)
        self._poller.start()
        loop = asyncio.get_running_loop()

        def deliver(change: StateChange) -> None:
            # the poller may run on another loop (a Site's); handle changes on ours
            loop.call_soon_threadsafe(self._on_change, change)

        self._unsubscribe = self._poller.subscribe(deliver)
        if self.rolling:
            self._start_rolling()
        self._regrow = asyncio.ensure_future(self._regrow_loop())
        # read the limits now (sacctmgr is slow), so that the first scale() waits less
        self._prefetch = asyncio.ensure_future(self.current_limits())
        self._prefetch.add_done_callback(_log_failure)
        self._lab_record = announce(self)  # JupyterLab's Dask sidebar lists it

    def _on_submit(self, job: Any) -> None:
        self._jobs_by_id[str(job.job_id)] = job
        for job_id in job.job_ids:
            self.job_states[job_id] = JobInfo(job_id, JobState.PENDING, reason="submitted")
            if self._poller is not None:
                self._poller.track(job_id, self.hpcb.user)

    def _on_cancel(self, job_ids: list[str]) -> None:
        # so that closing does not cancel them a second time; the poller confirms later
        for job_id in job_ids:
            if job_id in self.job_states:
                self.job_states[job_id] = JobInfo(job_id, JobState.CANCELLED,
                                                  reason="cancelled by the cluster")

    def live_job_ids(self) -> list[str]:
        """Ids of this cluster's jobs that may still run (what closing must cancel)."""
        return [j for j, info in self.job_states.items() if not info.state.is_terminal]

    def _on_change(self, change: StateChange) -> None:
        self.job_states[change.job_id] = change.current
        if change.current.state.is_terminal:
            self._job_ended(change.job_id, change.current)

    def _job_ended(self, job_id: str, info: JobInfo) -> None:
        base, _, task_text = job_id.partition("_")
        job = self._jobs_by_id.get(base)
        task = int(task_text) if task_text.isdigit() else 0
        if job is None or task not in job.tasks or self.status != Status.running:
            return  # closed on purpose, or the cluster is going away
        job.tasks.discard(task)
        self._arrived.pop((job.name, task if job.array_tasks else None), None)
        if info.state not in NORMAL_ENDS:
            self.failures += 1
            log.warning("worker job %s ended: %s (%s)", job_id, info.state.description,
                        info.reason)
        if self.failures > self.max_failures:
            self._give_up(job_id, info)
        else:
            self._replace(job, 1)
        self._drop_if_empty(job)
        self._correct_state()

    def _replace(self, job: Any, count: int) -> None:
        if job.array_tasks:
            self._regroup(job.name)
            for _ in range(count):
                self.worker_spec.update(self._single_spec())
        elif self.workers.get(name := job.name) is job:
            # the spec stays; _correct_state submits a new job for it
            del self.workers[name]
            mark_ended(job)

    def _give_up(self, job_id: str, info: JobInfo) -> None:
        req = self.hpcb.request
        self.error = (
            f"worker jobs keep failing ({self.failures} in a row; the last, {job_id}, ended "
            f"{info.state.description}: {info.reason or 'no reason given'}); they are not replaced "
            f"any more. Their logs: {self.hpcb.log_folder}/{req.job_name}-<job id>.log. "
            "Call reset_failures() to try again."
        )
        log.error("%s", self.error)
        for name, job in list(self.workers.items()):
            if not job.tasks:
                self.worker_spec.pop(name, None)
                del self.workers[name]
                mark_ended(job)

    def reset_failures(self) -> None:
        self.failures, self.error = 0, None

    def _update_worker_status(self, op: str, msg: Any) -> None:
        if op == "add" and isinstance(msg, dict) and msg.get("workers"):
            self.failures = 0  # a worker arrived: the set-up works
            for info in msg["workers"].values():
                where = self._locate(str(info.get("name")))
                if where is not None:
                    self._worker_arrived(where)
        # SpecCluster closes a job some seconds after its worker left, by *name*: by then
        # the poller may have replaced it, and the new job of that name would be
        # cancelled. Job ends are the poller's to report, so skip that step.
        Cluster._update_worker_status(self, op, msg)  # type: ignore[arg-type]

    # -- scaling ---------------------------------------------------------------------

    def _requested_workers(self, n: int | None, jobs: int, memory: str | None,
                           cores: int | None) -> int:
        procs = self.hpcb.processes
        workers = n if n is not None else jobs * procs
        if memory is not None:
            per_worker = self.shape.memory_mb * 2**20 / procs
            workers = max(workers, math.ceil(parse_bytes(memory) / per_worker))
        if cores is not None:
            workers = max(workers, math.ceil(cores / max(1, self.shape.cores // procs)))
        return workers

    def scale(self, n: int | None = None, jobs: int = 0, memory: str | None = None,
              cores: int | None = None) -> Any:
        """Scale to ``n`` workers (or ``jobs`` jobs), clamped to what the user may run."""
        workers = self._requested_workers(n, jobs, memory, cores)
        return self.sync(self._scale_to, workers)

    async def _scale_to(self, workers: int) -> None:
        self.wanted_workers = workers
        target = 0
        if workers > 0 and self.status not in (Status.closing, Status.closed):
            if self.error and workers > len(self.plan):
                raise HpcBridgeError(self.error)
            plan = await self.plan_scale(workers)
            self.last_plan = plan
            self._announce(plan.message)
            if plan.budget_core_hours is not None and plan.cost_core_hours:
                log.info("%s", plan.cost_message)
            target = plan.jobs
        self._set_target_jobs(target)
        self.loop.add_callback(self._correct_state)

    async def _regrow_loop(self) -> None:
        """Limits held by other jobs free up: grow a clamped cluster towards its request."""
        while True:
            await asyncio.sleep(self.regrow_interval)
            plan = self.last_plan
            if self.error or self.status != Status.running or plan is None or not plan.clamped:
                continue
            if self.wanted_workers > len(self.plan):
                try:
                    await self._scale_to(self.wanted_workers)
                except HpcBridgeError as exc:
                    log.warning("not growing towards %d workers: %s", self.wanted_workers, exc)
                    self.wanted_workers = len(self.plan)

    async def current_limits(self, *, refresh: bool = False) -> Limits:
        """The user's limits: QOS/association/partition read every STATIC_TTL seconds,
        budget and the user's other jobs every LIMITS_TTL seconds."""
        now = asyncio.get_running_loop().time()
        if refresh or self._limits is None or now - self._limits[0] > LIMITS_TTL:
            reading = self._limits_reading
            if refresh or reading is None or reading.done():
                # a read in flight (the prefetch at start) is shared: it may count jobs
                # submitted since as "other jobs", which only leaves less room
                reading = self._limits_reading = asyncio.ensure_future(read_limits(
                    self.hpcb.client, self.hpcb.user, self._static_limits(refresh),
                    caps=self._caps, ours=self._all_job_ids()))
            limits, _jobs = await reading
            self._limits = (now, limits)
        return self._limits[1]

    async def _static_limits(self, refresh: bool = False) -> StaticLimits:
        now = asyncio.get_running_loop().time()
        if refresh or self._static is None or now - self._static[0] > STATIC_TTL:
            client, user = self.hpcb.client, self.hpcb.user
            known = None if refresh else recent_static(client, user, self.shape, self._qos,
                                                       STATIC_TTL)
            if known is not None:
                self._static = (now, known)
                return known
            if self._static_reading is None or self._static_reading.done():
                # one read at a time: a scale() right after start waits for the prefetch
                self._static_reading = asyncio.ensure_future(read_static(
                    client, user, self.shape, self._qos))
            static = await self._static_reading
            keep_static(client, user, self.shape, self._qos, static)
            self._static = (now, static)
        return self._static[1]

    def _all_job_ids(self) -> list[str]:
        return [*self._jobs_by_id, *self.job_states]

    async def plan_scale(self, workers: int) -> ScalePlan:
        """What ``scale(workers)`` would do now, and why (raises when refused)."""
        limits = await self.current_limits()
        live = sum(len(j.tasks) for j in self.workers.values() if j.job_id)
        return plan_scale(workers, self.shape, limits, current_jobs=live,
                          reserved_core_minutes=live * self.shape.core_minutes)

    def _announce(self, message: str | None) -> None:
        if message and message != self.scale_message:
            log.warning("%s", message)
        self.scale_message = message

    def adapt(self, *args: Any, minimum_jobs: int | None = None,
              maximum_jobs: int | None = None, **kwargs: Any) -> Adaptive:
        """Adaptive scaling between limits that the user's allocation allows."""
        procs = self.hpcb.processes
        if minimum_jobs is not None:
            kwargs["minimum"] = minimum_jobs * procs
        if maximum_jobs is not None:
            kwargs["maximum"] = maximum_jobs * procs
        kwargs.setdefault("worker_key", JobKey(procs))
        if self.asynchronous:
            # cannot block here: clamp as soon as the limits are read (scale-ups are
            # clamped on their own meanwhile); await cluster.adapt_limits to wait for it
            adaptive = super().adapt(*args, **kwargs)  # type: ignore[misc]
            self.adapt_limits = asyncio.ensure_future(self._clamp_adaptive(adaptive))
            return adaptive
        maximum = self.sync(self._adapt_maximum, kwargs.get("maximum", math.inf))
        kwargs["maximum"], kwargs["minimum"] = maximum, min(kwargs.get("minimum", 0), maximum)
        return super().adapt(*args, **kwargs)  # type: ignore[misc]

    async def _clamp_adaptive(self, adaptive: Adaptive) -> None:
        adaptive.maximum = await self._adapt_maximum(adaptive.maximum)
        adaptive.minimum = min(adaptive.minimum, adaptive.maximum)

    async def _adapt_maximum(self, maximum: float) -> int:
        limits = await self.current_limits(refresh=True)
        live = sum(len(j.tasks) for j in self.workers.values() if j.job_id)
        jobs, message = adapt_plan(maximum, self.shape, limits, current_jobs=live)
        self._announce(message)
        return jobs * self.hpcb.processes

    # -- views and closing -----------------------------------------------------------

    def jobs(self) -> list[JobInfo]:
        """The latest word on every job of this cluster, newest first."""
        return sorted(self.job_states.values(), key=lambda i: i.job_id, reverse=True)

    @property
    def submissions(self) -> int:
        """Submit commands (sbatch / qsub) run so far."""
        return self.hpcb.submissions

    @property
    def dashboard_link(self) -> str:
        link = super().dashboard_link  # type: ignore[misc]
        port = self.scheduler_info.get("services", {}).get("dashboard")
        return hub_dashboard_link(port) or link

    def _repr_html_(self, cluster_status: Any = None) -> str:
        html = super()._repr_html_(cluster_status)  # type: ignore[misc]
        lines = [f"<p><b>Batch jobs:</b> {escape(jobs_summary(self.job_states.values()))}</p>"]
        if self.scale_message:
            lines.append(f"<p>{escape(self.scale_message)}</p>")
        if self.error:
            lines.append(f"<p><b>Error:</b> {escape(self.error)}</p>")
        return html + "".join(lines)

    def __repr__(self) -> str:
        name = type(self).__name__
        text = (f"{name}({self._name!r}, {self.scheduler_address!r}, "
                f"workers={len(self.scheduler_info.get('workers', {}))}, "
                f"jobs: {jobs_summary(self.job_states.values())})")
        return text + (f" ERROR: {self.error}" if self.error else "")

    async def _close(self) -> None:
        withdraw(getattr(self, "_lab_record", None))
        await self._stop_rolling()
        if self._regrow is not None:
            self._regrow.cancel()
        await super()._close()  # type: ignore[misc]
        left = self.live_job_ids()
        if left:
            try:
                await self.hpcb.client.cancel(self.hpcb.user, left)
            except HpcBridgeError as exc:
                log.warning("could not cancel %s: %s", ", ".join(left), exc)
            else:
                for job_id in left:
                    self.job_states[job_id] = JobInfo(job_id, JobState.CANCELLED)
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._poller is not None and self._own_poller:
            await self._poller.stop()
        forget(self)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("reading limits failed: %s", task.exception())


# scale() keeps dask-jobqueue's signature (n, jobs, memory, cores), not SpecCluster's
class HpcSlurmCluster(_HpcClusterMixin, SLURMCluster):  # type: ignore[misc]
    """dask-jobqueue's SLURMCluster through hpcbridge: limits, tracking, replacement."""

    job_cls = HpcSlurmJob  # type: ignore[assignment]


class HpcPbsCluster(_HpcClusterMixin, PBSCluster):  # type: ignore[misc]
    """dask-jobqueue's PBSCluster through hpcbridge: limits, tracking, replacement."""

    job_cls = HpcPbsJob  # type: ignore[assignment]

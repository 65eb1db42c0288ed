"""Rolling replacement: a worker gets its successor *before* it retires.

dask-jobqueue's workers die at walltime; ``--lifetime`` makes them retire gracefully,
but a retiring worker can hand its results only to a worker that is alive. When every
worker of a cluster started together they retire together and the results are lost
(recomputed, over and over). So the cluster retires workers itself, one job at a time:

1. at ``roll_after`` (see :func:`hpcbridge.dask.limits.roll_after`) after a job's first
   worker arrived, submit a successor job -- if the user's limits leave room for one
   more job, else skip to 3;
2. wait until the successor's workers arrive, at most until the old worker's lifetime
   would end;
3. retire the old job's workers through the Dask scheduler (their results move to live
   workers), then cancel its job. Without a successor the spec stays, and the ended
   job is replaced like any retired worker.

The dask ``--lifetime`` stays as a backstop. A task of a job array rolls the same way,
task by task: its successor is a plain job, and once that arrived the task leaves the
array (its workers retire, the task is cancelled); without a successor the ended task
is replaced like any retired worker.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hpcbridge.errors import HpcBridgeError

log = logging.getLogger(__name__)

#: a rolling unit: a plain job's spec entry (task None), or one task of an array entry
Part = tuple[str, int | None]


class RollingMixin:
    """Needs the cluster's ``workers``, ``worker_spec``, ``scheduler_comm`` and helpers."""

    def _init_rolling(self, roll_after: float, deadline: float) -> None:
        self._roll_after, self._roll_deadline = roll_after, deadline
        #: (entry name, array task or None) -> loop time its first worker arrived
        self._arrived: dict[Part, float] = {}
        self._rolling: set[Part] = set()
        #: entries started to take over from a retiring job; adapt must not close them
        self._successors: set[str] = set()
        self._roll_task: asyncio.Task[None] | None = None
        #: replacements under way, held so that the event loop cannot drop them
        self._roll_jobs: set[asyncio.Future[None]] = set()

    def _start_rolling(self) -> None:
        self._roll_task = asyncio.ensure_future(self._roll_loop())

    async def _stop_rolling(self) -> None:
        if self._roll_task is not None:
            self._roll_task.cancel()
            await asyncio.gather(self._roll_task, return_exceptions=True)

    def _worker_arrived(self, part: Part) -> None:
        self._arrived.setdefault(part, asyncio.get_running_loop().time())

    async def _roll_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.1, min(5.0, self._roll_after / 10)))
            self._roll_due(asyncio.get_running_loop().time())

    def _roll_due(self, now: float) -> None:
        """Start replacing every worker (or array task) that has run ``roll_after``."""
        for part, arrived in list(self._arrived.items()):
            name, task = part
            job = self.workers.get(name)  # type: ignore[attr-defined]
            if job is None or part in self._rolling or (task is not None
                                                        and task not in job.tasks):
                continue
            if now - arrived >= self._roll_after:
                self._rolling.add(part)
                roll = asyncio.ensure_future(self._roll(part, job, arrived))
                self._roll_jobs.add(roll)
                roll.add_done_callback(self._roll_jobs.discard)

    async def _roll(self, part: Part, job: Any, arrived: float) -> None:
        name, task = part
        successor = None
        try:
            successor = await self._start_successor()
            loop = asyncio.get_running_loop()
            # polls what the scheduler's callbacks record; the deadline bounds the wait
            while (successor and (successor, None) not in self._arrived  # noqa: ASYNC110
                   and loop.time() < arrived + self._roll_deadline):
                await asyncio.sleep(0.5)
            log.info("retiring worker job %s (%s); successor %s",
                     job.job_id if task is None else job.task_job_id(task), name, successor)
            if task is not None:
                await self._retire_task(job, task, handed_over=successor is not None)
                return
            await self.scheduler_comm.retire_workers(  # type: ignore[attr-defined]
                names=self._worker_names(name), close_workers=True)
            if successor:
                self.worker_spec.pop(name, None)  # type: ignore[attr-defined]
                await self._correct_state()  # type: ignore[attr-defined]
        except (HpcBridgeError, OSError) as exc:
            log.warning("rolling replacement of %s failed: %s", name, exc)
        finally:
            self._rolling.discard(part)
            self._arrived.pop(part, None)
            self._successors.discard(successor or "")

    async def _retire_task(self, job: Any, task: int, *, handed_over: bool) -> None:
        """Retire one array task's workers; with a successor running, the task leaves the
        array first (its end is then no reason to replace it) and is cancelled after."""
        names = [job.name + suffix for suffix in self._group([task])]  # type: ignore[attr-defined]
        if handed_over:
            job.tasks.discard(task)
            self._regroup(job.name)  # type: ignore[attr-defined]
        try:
            await self.scheduler_comm.retire_workers(  # type: ignore[attr-defined]
                names=names, close_workers=True)
        finally:
            if handed_over:
                await job.cancel([job.task_job_id(task)])
                self._drop_if_empty(job)  # type: ignore[attr-defined]

    async def _start_successor(self) -> str | None:
        planned = self.planned_jobs()  # type: ignore[attr-defined]
        try:
            plan = await self.plan_scale((planned + 1) * self.hpcb.processes)  # type: ignore[attr-defined]
        except HpcBridgeError:
            return None
        if plan.jobs <= planned:
            return None  # no room for one more job: retire first, replace after
        spec = self._single_spec()  # type: ignore[attr-defined]
        name = next(iter(spec))
        self._successors.add(name)
        self.worker_spec.update(spec)  # type: ignore[attr-defined]
        await self._correct_state()  # type: ignore[attr-defined]
        return name

    def _worker_names(self, entry: str) -> list[str]:
        procs = self.hpcb.processes  # type: ignore[attr-defined]
        return [f"{entry}-{p}" for p in range(procs)] if procs > 1 else [entry]

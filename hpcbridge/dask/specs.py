"""Worker spec entries and the batch jobs behind them.

SpecCluster keeps ``worker_spec``: entry name -> how to start it. Here an entry is one
batch job: a plain job (its workers named ``<entry>`` or ``<entry>-<process>``) or a
Slurm job array (``<entry>-<task>[-<process>]``; the entry's ``group`` lists the live
tasks). Scaling counts *jobs* (array tasks one by one), never worker names, and closes
whole jobs only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distributed.core import Status

if TYPE_CHECKING:
    from hpcbridge.dask.job import WorkerContext


class JobKey:
    """Adaptive's ``worker_key``: a worker's batch job, so whole jobs are closed together."""

    def __init__(self, processes: int) -> None:
        self.processes = processes

    def __call__(self, ws: Any) -> str:
        name = str(ws.name)
        return name.rsplit("-", 1)[0] if self.processes > 1 else name


class SpecEntriesMixin:
    """Worker spec entries <-> batch jobs: plain jobs, arrays, processes per job."""

    # provided by the cluster class (SpecCluster and the hpcbridge cluster mixin)
    hpcb: WorkerContext
    arrays: bool
    workers: dict[str, Any]
    worker_spec: dict[str, Any]
    job_cls: Any
    loop: Any
    _counter: int
    _name: str
    _job_kwargs: dict[str, Any]
    _successors: set[str]
    plan: Any
    wanted_workers: int

    def _group(self, tasks: list[int] | None) -> list[str] | None:
        procs = self.hpcb.processes
        if tasks is None:
            return [f"-{p}" for p in range(procs)] if procs > 1 else None
        if procs == 1:
            return [f"-{t}" for t in tasks]
        return [f"-{t}-{p}" for t in tasks for p in range(procs)]

    def _single_spec(self, array_tasks: int = 0) -> dict[str, Any]:
        # names are never reused: a late event about an old job must not hit a new one
        self._counter += 1
        name = f"{self._name}-{self._counter}"
        options = dict(self._job_kwargs, array_tasks=array_tasks)
        spec: dict[str, Any] = {"cls": self.job_cls, "options": options}
        group = self._group(list(range(array_tasks)) if array_tasks else None)
        if group:
            spec["group"] = group
        return {name: spec}

    def _regroup(self, name: str) -> None:
        job = self.workers.get(name)
        spec = self.worker_spec.get(name)
        if job is not None and spec is not None:
            self.worker_spec[name] = dict(spec, group=self._group(sorted(job.tasks)))

    def _entry_jobs(self, name: str) -> int:
        job = self.workers.get(name)
        if job is not None and job.array_tasks:
            return len(job.tasks)
        return self.worker_spec[name]["options"].get("array_tasks") or 1

    def planned_jobs(self) -> int:
        return sum(self._entry_jobs(n) for n in self.worker_spec)

    def _set_target_jobs(self, target: int) -> None:
        total = self.planned_jobs()
        if target > total:
            if self.arrays and target - total >= 2:
                self.worker_spec.update(self._single_spec(target - total))
            else:
                for _ in range(target - total):
                    self.worker_spec.update(self._single_spec())
            return
        # shrink: jobs not submitted yet first, then the newest
        newest = list(reversed(self.worker_spec))
        names = [n for n in newest if n not in self.workers]
        for name in names + [n for n in newest if n not in names]:
            if total <= target:
                break
            size = self._entry_jobs(name)
            if size <= total - target:
                del self.worker_spec[name]
                total -= size
            else:
                total -= self._shrink_array(name, total - target)

    def _shrink_array(self, name: str, drop: int) -> int:
        job = self.workers.get(name)
        if job is None:  # not submitted: ask for fewer tasks
            spec = self.worker_spec[name]
            tasks = spec["options"]["array_tasks"] - drop
            options = dict(spec["options"], array_tasks=tasks)
            self.worker_spec[name] = dict(spec, options=options,
                                          group=self._group(list(range(tasks))))
            return drop
        gone = sorted(job.tasks)[-drop:]
        job.tasks.difference_update(gone)
        self._regroup(name)
        self.loop.add_callback(job.cancel, [job.task_job_id(t) for t in gone])
        return len(gone)

    async def scale_down(self, workers: Any) -> None:
        """Close the jobs *all* of whose workers are named; keep partly named jobs."""
        named: dict[tuple[str, int | None], int] = {}
        for w in workers:
            key = self._locate(str(w))
            if key is not None:
                named[key] = named.get(key, 0) + 1
        for (entry, task), count in named.items():
            if count < self.hpcb.processes:
                continue  # closing part of a job would only start it again (thrashing)
            if entry in self._successors:
                continue  # it is about to take over from a retiring job
            job = self.workers.get(entry)
            if task is not None and job is not None and job.array_tasks:
                job.tasks.discard(task)
                self._regroup(entry)
                await job.cancel([job.task_job_id(task)])
                self._drop_if_empty(job)
            else:
                self.worker_spec.pop(entry, None)
        self.wanted_workers = min(self.wanted_workers, len(self.plan))
        await self  # type: ignore[misc]

    def _drop_if_empty(self, job: Any) -> None:
        if job.array_tasks and not job.tasks:
            name = job.name
            self.worker_spec.pop(name, None)
            if self.workers.get(name) is job:
                del self.workers[name]
            mark_ended(job)

    def _locate(self, worker: str) -> tuple[str, int | None] | None:
        for entry, spec in self.worker_spec.items():
            if worker == entry:
                return entry, None
            if worker.startswith(entry + "-"):
                parts = worker[len(entry) + 1:].split("-")
                is_array = bool(spec["options"].get("array_tasks"))
                return entry, int(parts[0]) if is_array and parts[0].isdigit() else None
        return None


def mark_ended(job: Any) -> None:
    """Mark a job object whose batch job is over as closed, without cancelling it."""
    if job.status not in (Status.closing, Status.closed):
        job.status = Status.closed
        job._event_finished.set()

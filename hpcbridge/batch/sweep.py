"""Parameter sweeps: one job array, a task per parameter set (issue 15).

A sweep is a YAML list of parameter sets, in a file in the user's home: ``hpcbridge run
--sweep FILE`` names it, and in the Create Job dialog the parameter ``sweep`` does (unless
the notebook's parameters cell sets a ``sweep`` of its own). Before anything is stored,
:func:`fit_array` checks the sweep against what the user's QOS (on PBS: the queue) lets
her queue, counting the jobs she has, and throttles the array to the jobs it lets run at
once. What a sweep's tasks did is summed up by :func:`summary` for the job list and
``hpcbridge jobs``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcbridge.batch.spec import read_result, task_folder
from hpcbridge.batch.status import Shown, shown, summary, task_views
from hpcbridge.errors import HpcBridgeError, RequestError, SchedulerError
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.profiles import ValidatedRequest
from hpcbridge.schedulers.base import Association, JobArray, QosLimits

log = logging.getLogger(__name__)

#: the dialog's parameter naming a sweep file (when the notebook takes no such parameter)
SWEEP_PARAMETER = "sweep"
#: a sweep file larger than this is refused
MAX_SWEEP_FILE_BYTES = 1 << 20


def read_sweep_file(path: Path, root: Path | None, shown: str) -> list[dict[str, str]]:
    """The parameter sets of a sweep file, values as the dialog's text (``3``, ``'x'``);
    RequestError naming ``shown`` for a file outside ``root`` or not a list of sets."""
    import yaml

    resolved = path.resolve()
    if root is not None and not resolved.is_relative_to(root.resolve()):
        raise RequestError(f"the sweep file {shown!r} is outside your home folder")
    try:
        if resolved.stat().st_size > MAX_SWEEP_FILE_BYTES:
            raise RequestError(f"the sweep file {shown!r} is larger than 1 MiB")
        data = yaml.safe_load(resolved.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RequestError(f"there is no sweep file {shown!r}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RequestError(f"the sweep file {shown!r} cannot be read: {exc}") from None
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise RequestError(f"the sweep file {shown!r} is not a list of parameter sets "
                           "(write one '- {name: value, ...}' line per run)")
    return [{str(k): v if isinstance(v, str) else repr(v) for k, v in d.items()}
            for d in data]


def split_sweep(parameters: Mapping[str, Any] | None, declared: Sequence[str] | None,
                root: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The dialog's parameters without ``sweep``, and the sets of the sweep file it names
    (relative to ``root``, the home); no sets when there is none."""
    given = dict(parameters or {})
    if SWEEP_PARAMETER not in given or SWEEP_PARAMETER in (declared or ()):
        return given, []
    name = str(given.pop(SWEEP_PARAMETER)).strip()
    return given, read_sweep_file(root / name, root, name)


@dataclass(frozen=True)
class Room:
    """How many jobs ``user`` may queue and run (None: not known), and how many she has."""

    where: str
    max_queued: int | None
    max_running: int | None
    active: int


def _qos_for(qos: list[QosLimits], assocs: list[Association], req: ValidatedRequest
             ) -> QosLimits | None:
    # PBS reads per-user limits from the job's queue; Slurm from the job's QOS
    queues = [q for q in qos if "queue" in q.flags]
    if queues:
        return next((q for q in queues if q.name == req.queue), None)
    assoc = next((a for a in assocs if a.account == req.account or req.account is None), None)
    name = req.qos or (assoc.default_qos if assoc else None) or "normal"
    return next((q for q in qos if q.name == name), None)


async def room(client: Any, user: str, req: ValidatedRequest) -> Room:
    """The user's room in her QOS (three queries, at once); a limit that cannot be read
    is left unknown (the scheduler still refuses what does not fit, in its words)."""

    async def optional(coro: Any) -> Any:
        try:
            return await coro
        except (SchedulerError, HpcBridgeError) as exc:
            log.warning("sweep: a limit could not be read: %s", exc)
            return None

    qos, assocs, jobs = await asyncio.gather(
        optional(client.qos(as_user=user)), optional(client.associations(user)),
        optional(client.user_jobs(user)))
    chosen = _qos_for(qos or [], assocs or [], req)
    kind = "queue" if chosen and "queue" in chosen.flags else "QOS"
    return Room(
        where=f"your {kind} {chosen.name}" if chosen else "your QOS",
        max_queued=chosen.max_submit_jobs_per_user if chosen else None,
        max_running=chosen.max_jobs_per_user if chosen else None,
        active=len([j for j in jobs or () if j.state.is_active]))


def fit_array(tasks: int, room: Room, partition_limit: int | None) -> JobArray:
    """The array of ``tasks``, throttled to the jobs ``room`` lets run at once (else the
    partition's ``max_jobs_per_user``); RequestError when it cannot be queued now."""
    if room.max_queued is not None and tasks + room.active > room.max_queued:
        free = max(0, room.max_queued - room.active)
        raise RequestError(
            f"a sweep of {tasks} runs does not fit: {room.where} lets you queue "
            f"{room.max_queued} jobs at once and you have {room.active} queued or running, "
            f"so at most {free} runs fit now; split the sweep or wait for jobs to end")
    throttle = room.max_running or partition_limit
    return JobArray(tasks, min(throttle, tasks) if throttle else None)


def task_ids(dialect: Any, job_id: str, tasks: int) -> list[str] | None:
    """The scheduler's id of each task of the array ``job_id`` (one status query asks
    about all); None where tasks cannot be asked about one by one (then the array's own
    id is asked, and each task's result file tells its end)."""
    ids = [dialect.array_task_id(job_id, i) for i in range(tasks)]
    return None if None in ids else ids


def task_states(job_id: str, ids: list[str] | None, infos: Mapping[str, JobInfo],
                results: Sequence[dict[str, Any] | None]
                ) -> list[tuple[JobInfo | None, dict[str, Any] | None]]:
    """(state, result file) of each task, from one status answer ``infos``."""
    if ids is not None:
        return [(infos.get(tid), result) for tid, result in zip(ids, results, strict=True)]
    whole = infos.get(job_id)
    return [(JobInfo(job_id, JobState.ENDED_UNKNOWN) if result is not None else whole, result)
            for result in results]


@dataclass(frozen=True)
class Run:
    """A batch job as a list shows it: its scheduler id, folder, tasks (0: not a sweep)
    and their ids (None: the scheduler cannot be asked about one task)."""

    job_id: str
    folder: Path
    tasks: int = 0
    ids: list[str] | None = None

    @property
    def queried(self) -> list[str]:
        return (self.ids or [self.job_id]) if self.tasks else [self.job_id]

    def views(self, infos: Mapping[str, JobInfo], previous: str = "QUEUED"
              ) -> tuple[Shown, list[Shown]]:
        """The job's entry and, for a sweep, each task's; ``previous``: the status
        shown so far (kept while the scheduler does not answer)."""
        if not self.tasks:
            info = infos.get(self.job_id) or JobInfo(self.job_id, JobState.UNKNOWN)
            return shown(self.job_id, info, read_result(self.folder)
                         if info.state.is_terminal else None, previous), []
        results = [read_result(task_folder(self.folder, i)) for i in range(self.tasks)]
        states = task_states(self.job_id, self.ids, infos, results)
        names = self.ids or [f"{self.job_id} task {i}" for i in range(self.tasks)]
        tasks = task_views(names, states)
        return summary(self.job_id, states, tasks, previous), tasks

"""What jupyter-scheduler's job list shows for a batch job, from what the scheduler says
about it and what its runner wrote. Pure.

jupyter-scheduler's statuses are QUEUED, IN_PROGRESS, COMPLETED, FAILED, STOPPING and
STOPPED; the scheduler's detail goes into the job's status message: the pending reason,
the node it runs on, the exit code, the failing cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hpcbridge.batch.spec import cell_text, describe_failure
from hpcbridge.jobs import JobInfo, JobState

#: statuses whose job may still be queued or running: the ones tracked
ACTIVE = ("QUEUED", "IN_PROGRESS", "STOPPING")

_ENDS = {
    JobState.TIMEOUT: "its walltime ended",
    JobState.NODE_FAIL: "its node failed",
    JobState.OUT_OF_MEMORY: "it ran out of memory",
    JobState.PREEMPTED: "it was preempted",
    JobState.ENDED_UNKNOWN: "it ended, reason unknown (the scheduler keeps no record)",
}


@dataclass(frozen=True)
class Shown:
    status: str
    message: str
    #: the job is running now (its start time is set when first seen so)
    running: bool = False
    #: the job is over (its end time is set)
    ended: bool = False


def _exit(info: JobInfo, result: dict[str, Any] | None = None) -> str:
    # the queue does not say how a job that just ended exited; its runner wrote it down
    code = info.exit_code if info.exit_code is not None else (result or {}).get("exit_code")
    return f" (exit code {code})" if isinstance(code, int) else ""


def shown(job_id: str, info: JobInfo, result: dict[str, Any] | None,
          previous: str = "QUEUED") -> Shown:
    """The list entry for scheduler job ``job_id`` in state ``info``; ``result`` is the
    runner's result file (None if it wrote none); ``previous`` the status shown so far."""
    state, head = info.state, f"job {job_id}"
    if state is JobState.UNKNOWN:
        return Shown(previous, f"{head}: the scheduler is not answering; state unknown "
                               f"({(info.reason or '')[:200]})")
    if state in (JobState.PENDING, JobState.REQUEUED):
        return Shown("QUEUED", f"{head}: queued" + (f" ({info.reason})" if info.reason else ""))
    if state in (JobState.RUNNING, JobState.COMPLETING, JobState.SUSPENDED):
        where = f" on {','.join(info.nodes)}" if info.nodes else ""
        what = "suspended" if state is JobState.SUSPENDED else "running"
        return Shown("IN_PROGRESS", f"{head}: {what}{where}", running=True)
    if state is JobState.CANCELLED:
        return Shown("STOPPED", f"{head}: cancelled", ended=True)
    if state in (JobState.COMPLETED, JobState.ENDED_UNKNOWN) and result and result.get("ok"):
        node = f" on {result['node']}" if result.get("node") else ""
        return Shown("COMPLETED", f"{head}: completed{node}{_exit(info, result)}", ended=True)
    if state in _ENDS:
        # the scheduler's reason first: at the walltime the runner only saw a SIGTERM
        running = (result or {}).get("running_cell")
        where = f", in {cell_text(running)}" if isinstance(running, dict) else ""
        return Shown("FAILED", f"{head}: failed: {_ENDS[state]}{where}{_exit(info)}",
                     ended=True)
    if result is not None and not result.get("ok"):
        return Shown("FAILED", f"{head}: failed{_exit(info, result)}: {describe_failure(result)}",
                     ended=True)
    # COMPLETED without a result, or FAILED before the runner could write one
    return Shown("FAILED", f"{head}: failed{_exit(info)}: the runner left no result; see "
                           "the job's log", ended=True)


def task_views(task_ids: Sequence[str],
               tasks: Sequence[tuple[JobInfo | None, dict[str, Any] | None]]) -> list[Shown]:
    """Each task of a sweep as the list would show it alone (a task not heard of yet is
    queued)."""
    return [shown(tid, info, result) if info is not None
            else Shown("QUEUED", f"job {tid}: submitted")
            for tid, (info, result) in zip(task_ids, tasks, strict=True)]


def summary(job_id: str, tasks: Sequence[tuple[JobInfo | None, dict[str, Any] | None]],
            views: Sequence[Shown], previous: str = "QUEUED") -> Shown:
    """One entry for a sweep's job array from its tasks' states (``views``, from
    :func:`task_views`): ``job 12: 3 of 4 completed, 1 running on c2``."""
    head, total = f"job {job_id}", len(views)
    if any(info is not None and info.state is JobState.UNKNOWN for info, _ in tasks):
        return Shown(previous, f"{head}: the scheduler is not answering; task states "
                               "unknown")
    by = {s: [i for i, v in enumerate(views) if v.status == s] for s in
          ("COMPLETED", "FAILED", "STOPPED", "IN_PROGRESS", "QUEUED")}
    infos = [info for info, _ in tasks]
    parts = [f"{len(by['COMPLETED'])} of {total} completed"]
    if by["FAILED"]:
        parts.append(f"{len(by['FAILED'])} failed")
    if by["STOPPED"]:
        parts.append(f"{len(by['STOPPED'])} cancelled")
    if by["IN_PROGRESS"]:
        nodes = dict.fromkeys(n for i in by["IN_PROGRESS"] for n in _nodes(infos[i]))
        parts.append(f"{len(by['IN_PROGRESS'])} running" +
                     (f" on {', '.join(nodes)}" if nodes else ""))
    if by["QUEUED"]:
        reasons = dict.fromkeys(r for i in by["QUEUED"] for r in [_reason(infos[i])] if r)
        parts.append(f"{len(by['QUEUED'])} queued" +
                     (f" ({', '.join(reasons)})" if reasons else ""))
    message = f"{head}: {', '.join(parts)}"
    if by["FAILED"]:  # the first failure in its words: the failing cell, the end's reason
        first = by["FAILED"][0]
        message += f"; task {first} failed{views[first].message.split(': failed', 1)[-1]}"
    waiting = by["IN_PROGRESS"] or by["QUEUED"]
    if waiting:
        started = by["IN_PROGRESS"] or len(by["QUEUED"]) < total
        return Shown("IN_PROGRESS" if started else "QUEUED", message,
                     running=bool(by["IN_PROGRESS"]))
    status = "FAILED" if by["FAILED"] else "STOPPED" if by["STOPPED"] else "COMPLETED"
    return Shown(status, message, ended=True)


def _nodes(info: JobInfo | None) -> tuple[str, ...]:
    return info.nodes if info is not None else ()


def _reason(info: JobInfo | None) -> str | None:
    return info.reason if info is not None else None

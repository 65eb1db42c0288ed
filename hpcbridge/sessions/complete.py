"""The end of a session record: the scheduler's accounting, written once the job ended.

Whoever sees the end first completes the record, as the user, through the cluster's
scheduler client: the hub when its poll finds a server's job ended or when it stopped
one (``hpcbridge/spawner/spawner.py``), ``hpcbridge session`` for records it lists
without an end (a hub restarted meanwhile, a batch run). Completing reads accounting
from the scheduler (``sacct`` / ``qstat -x -f`` through the adapter), never from the
job's node, so a job whose node died gets its end too: ``NODE_FAIL``. A record the job
never wrote (the node died before its start was captured) is written from what the
submitter knows, its ``start`` missing; a job that never started leaves no record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from hpcbridge.client import SchedulerClient
from hpcbridge.errors import HpcBridgeError, SchedulerUnavailable
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.schedulers.base import Accounting
from hpcbridge.sessions import record

log = logging.getLogger(__name__)

#: seconds between asks while accounting does not have the job's end yet, and how many
PAUSES = (2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 60.0, 120.0, 300.0, 600.0)
#: how long an ended job's steps may take to report their usage (peak memory): a
#: cancelled job ends at once, its batch step when its processes are gone (up to
#: Slurm's KillWait later; until then the step may already read CANCELLED, without its
#: usage). After this the end is written as it is: a job shorter than the scheduler's
#: sampling interval never has a peak memory. A failed node's steps never report.
SETTLE_SECONDS = 35.0


def rss_note(acct: Accounting | None, sampling: int | None) -> str | None:
    """Why the record has no peak memory (``max_rss_mb`` null): the scheduler took no
    sample of a job shorter than its sampling interval (``sampling`` seconds), or
    takes none at all; None when there is a peak, or no accounting."""
    if acct is None or acct.max_rss_mb is not None:
        return None
    if sampling == 0:
        return "not measured: the scheduler samples no job's memory"
    elapsed = acct.elapsed_seconds
    if sampling and elapsed is not None and elapsed < sampling:
        return (f"not sampled: the job ran {elapsed} s, shorter than the scheduler's "
                f"sampling interval ({sampling} s)")
    if sampling and elapsed is not None and elapsed < 2 * sampling:
        # the first sample comes an interval after the task started, which is after
        # the job's start (its login shell, the environment): a job of 6 s may miss it
        return (f"not sampled: the job ran {elapsed} s, the scheduler samples every "
                f"{sampling} s")
    return "not measured by the scheduler"


def end_part(acct: Accounting | None, info: JobInfo | None, by: str,
             sampling: int | None = None) -> dict[str, Any]:
    """The record's ``end`` from accounting (or, where the scheduler keeps none, from
    the last state the queue showed); ``sampling``: the scheduler's memory sampling
    interval, for :func:`rss_note`."""
    state = acct.state if acct else info.state if info else JobState.ENDED_UNKNOWN
    end: dict[str, Any] = {"state": state.value, "description": state.description,
                           "recorded_at": record.now_iso(), "recorded_by": by}
    if acct is None:
        end["accounting"] = None
        if info is not None and info.reason:
            end["reason"] = info.reason
        return end
    end.update({
        "scheduler_state": acct.state_text, "exit_code": acct.exit_code,
        "nodes": list(acct.nodes), "cores": acct.cores,
        "started": acct.start.isoformat() if acct.start else None,
        "ended": acct.end.isoformat() if acct.end else None,
        "elapsed_seconds": acct.elapsed_seconds, "core_seconds": acct.core_seconds,
        "cpu_seconds": acct.cpu_seconds, "max_rss_mb": acct.max_rss_mb,
        "energy_joules": acct.energy_joules,
    })
    note = rss_note(acct, sampling)
    if note:
        end["max_rss_note"] = note
    return end


async def memory_sampling(client: SchedulerClient, user: str, acct: Accounting | None
                          ) -> int | None:
    """The scheduler's sampling interval, asked only for a job without a peak memory
    (one cheap query); None when it cannot be asked or has none to say."""
    if acct is None or acct.max_rss_mb is not None:
        return None
    try:
        return await client.memory_sampling(as_user=user)
    except HpcBridgeError:
        return None


def merged(existing: str | None, session: Mapping[str, Any], job_id: str,
           end: dict[str, Any]) -> dict[str, Any]:
    """The record with ``end`` added: the file's own parts when it is a record, else the
    submitter's (a job that died before writing its start)."""
    base: dict[str, Any] | None = None
    if existing:
        try:
            base = record.loads(existing)
        except ValueError as exc:
            log.warning("session record %s is unreadable (%s); rewritten from the request",
                        session.get("id"), exc)
    if base is None:
        base = {k: v for k, v in session.items()
                if k not in ("job_name", "container_image", "script")}
        base["start"] = None
    base["job_id"] = base.get("job_id") or job_id
    base["end"] = end
    return base


def never_ran(acct: Accounting | None) -> bool:
    return acct is not None and acct.start is None and not acct.nodes and \
        not acct.elapsed_seconds


def settled(acct: Accounting) -> bool:
    """The ended job's usage is final: its steps ended with their peak memory, its
    node failed (whose steps report nothing more), or it never ran."""
    return acct.state is JobState.NODE_FAIL or never_ran(acct) or \
        (acct.settled and acct.max_rss_mb is not None)


async def ended_accounting(client: SchedulerClient, job_id: str, user: str,
                           pauses=PAUSES, sleep=asyncio.sleep
                           ) -> tuple[bool, Accounting | None]:
    """(known, accounting) once the scheduler has the job's end: (True, None) where it
    keeps no accounting; (False, None) when it never had it within ``pauses``."""
    waited, last = 0.0, None
    for pause in (0.0, *pauses):
        await sleep(pause)
        waited += pause
        try:
            found = await client.accounting([job_id], as_user=user)
        except SchedulerUnavailable:
            continue
        if found is None:
            return True, None
        acct = found.get(job_id)
        if acct is not None and acct.state.is_terminal:
            if settled(acct) or waited >= SETTLE_SECONDS:
                return True, acct
            last = acct  # its steps' usage may still come
    return (True, last) if last is not None else (False, None)


async def complete(client: SchedulerClient, user: str, home: str,
                   session: Mapping[str, Any], job_id: str, *, info: JobInfo | None = None,
                   ran: bool = True, by: str = "hub", pauses=PAUSES, sleep=asyncio.sleep
                   ) -> dict | None:
    """Add the end to the session's record in ``user``'s home (as her); the record, or
    None when there is nothing to write (the job never ran, accounting never came).
    ``ran``: whether the submitter saw the job run (where accounting cannot say)."""
    known, acct = await ended_accounting(client, job_id, user, pauses, sleep)
    if not known or never_ran(acct):
        return None
    path = str(record.path_of(home, str(session["id"])))
    existing = await client.read_private_file(user, path, record.MAX_BYTES)
    if existing is None and acct is None and not ran:
        return None
    sampling = await memory_sampling(client, user, acct)
    done = merged(existing, session, job_id, end_part(acct, info, by, sampling))
    await client.replace_private_file(user, path, record.dumps(done).encode())
    return done


_TASKS: dict[tuple[str, str], asyncio.Task] = {}


def complete_in_background(client: SchedulerClient, user: str, home: str,
                           session: Mapping[str, Any], job_id: str,
                           info: JobInfo | None = None, ran: bool = True,
                           by: str = "hub") -> None:
    """:func:`complete` as a task of its own (one per record at a time); failures are
    logged: ``hpcbridge session list`` completes what is left."""
    key = (user, str(session.get("id")))
    if key in _TASKS and not _TASKS[key].done():
        return

    async def run() -> None:
        try:
            await complete(client, user, home, session, job_id, info=info, ran=ran, by=by)
        except HpcBridgeError as exc:
            log.warning("cannot complete session record %s of %s: %s", key[1], user, exc)
        finally:
            _TASKS.pop(key, None)

    _TASKS[key] = asyncio.ensure_future(run())

"""Slurm's status answers (``squeue``, ``sacct``) read into JobInfo, fast enough for a
poll round of 10,000 jobs.

The formats (:mod:`hpcbridge.schedulers.slurm`) print no field a user controls, so a
line is split on ``|`` and read field by field; a line of another shape is skipped,
never guessed at.

A round's ``squeue`` answer mostly repeats the previous round's: a queued job prints the
same line again, a running one the same line but for its last field (the time left).
:class:`LineMemo` keeps the rows of the last large answer by line without that field, so
a line seen before costs a dict look-up instead of a parse. A line is always read into the
same row, so the memo changes what a round costs, never what it reads.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.schedulers.textparse import expand_hostlist, is_none, parse_duration, parse_iso

STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,  # nodes allocated and booting; the script has not started
    "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SUSPENDED": JobState.SUSPENDED,
    "STOPPED": JobState.SUSPENDED,
    "REQUEUED": JobState.REQUEUED,
    "REQUEUE_HOLD": JobState.REQUEUED,
    "REQUEUE_FED": JobState.REQUEUED,
    "SPECIAL_EXIT": JobState.REQUEUED,  # requeued and held after a special exit code
    "COMPLETING": JobState.COMPLETING,
    "STAGE_OUT": JobState.COMPLETING,
    "COMPLETED": JobState.COMPLETED,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,  # a federation sibling started elsewhere
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.NODE_FAIL,
    "NODE_FAIL": JobState.NODE_FAIL,
    "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
    "PREEMPTED": JobState.PREEMPTED,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
}

#: when several array tasks answer for one base id, the most alive one speaks for all
_AGGREGATE_ORDER = (
    JobState.RUNNING, JobState.COMPLETING, JobState.SUSPENDED, JobState.REQUEUED,
    JobState.PENDING, JobState.UNKNOWN, JobState.NODE_FAIL, JobState.OUT_OF_MEMORY,
    JobState.TIMEOUT, JobState.FAILED, JobState.PREEMPTED, JobState.CANCELLED,
    JobState.COMPLETED, JobState.ENDED_UNKNOWN,
)

#: states in which squeue's time left counts down (elsewhere it is the time limit); a
#: tuple: ``in`` compares members by identity, a set would hash them in Python each time
_CLOCK_RUNS = (JobState.RUNNING, JobState.SUSPENDED, JobState.COMPLETING)

_JOB_ID = re.compile(r"^\d+(?:_(?:\d+|\[[\d,\-%]+\]))?(?:\+\d+)?$")

#: lines parsed in a worker thread between two offers of the GIL to the loop's thread
SHARE_EVERY = 256

#: one parsed line: shown id, raw id, array base id, and what it says
Row = tuple[str, str, str, JobInfo]

#: a few hundred distinct words (users, accounts, partitions, states, reasons) repeat over
#: thousands of jobs: one string object each instead of one per job
_word = sys.intern


def map_state(text: str) -> JobState:
    """A Slurm state word (``CANCELLED by 1000``, ``PD`` not accepted) as a JobState."""
    state = STATES.get(text)  # nearly every line: the plain word
    if state is not None:
        return state
    word = text.strip().split(" ", 1)[0].rstrip("+").upper()
    return STATES.get(word, JobState.UNKNOWN)


def is_job_id(job_id: str) -> bool:
    # the plain number first: str.isdecimal accepts exactly the characters \d does
    return job_id.isdecimal() or bool(_JOB_ID.match(job_id))


def _aggregate(job_id: str, infos: list[JobInfo]) -> JobInfo:
    if len(infos) == 1:
        only = infos[0]
        return only if only.job_id == job_id else replace(only, job_id=job_id)
    best = min(infos, key=lambda i: _AGGREGATE_ORDER.index(i.state))
    nodes = tuple(dict.fromkeys(n for i in infos for n in i.nodes))
    extra = dict(best.extra, array_tasks=str(len(infos)))
    return replace(best, job_id=job_id, nodes=nodes, extra=extra)


def match_ids(rows: list[Row], job_ids: Sequence[str]) -> dict[str, JobInfo]:
    """Match parsed rows to the ids asked for: by shown id, raw id, or array base id."""
    # pending array tasks share the array's raw id, so the shown id and the array base
    # are asked first; the raw id only names a split-off task
    single = {row[0]: row[3] for row in rows}  # each shown id on one line: the rule
    shown = _index(rows, 0) if len(single) < len(rows) else None
    others: tuple[dict[str, list[JobInfo]], dict[str, list[JobInfo]]] | None = None
    out: dict[str, JobInfo] = {}
    for job_id in job_ids:  # a plain loop: this runs for every tracked job of a round
        if shown is None:
            info = single.get(job_id)
            if info is not None:
                out[job_id] = info
                continue
            found = None
        else:
            found = shown.get(job_id)
        if found is None:
            # built once per answer, only when an id is not a shown one (an array's base,
            # a job that left the queue); a row whose base or raw id is its shown id is
            # found by that already, so only the others are indexed
            others = others if others is not None else (_index(rows, 2), _index(rows, 1))
            found = others[0].get(job_id) or others[1].get(job_id)
            if not found:
                continue
        out[job_id] = found[0] if len(found) == 1 and found[0].job_id == job_id \
            else _aggregate(job_id, found)
    return out


def _index(rows: list[Row], key: int) -> dict[str, list[JobInfo]]:
    """Rows by their ``key`` field (0: the shown id, all rows; 1, 2: the raw or base id,
    only rows where it is not the shown id)."""
    by: dict[str, list[JobInfo]] = {}
    for shown, raw, base, info in rows:
        value = (shown, raw, base)[key]
        if key == 0 or value != shown:
            by.setdefault(value, []).append(info)
    return by


class LineMemo:
    """The rows of the last large ``squeue`` answer, by line without its time left.

    Parses may run in worker threads: the memo is only ever replaced, never changed in
    place, so two parses at once can at worst miss each other's lines. A poller asking per
    user (``per_user``) gets answers of similar size in turn, each replacing the last: no
    line is found again, and a round costs what it cost without the memo."""

    #: answers in a row too small to displace the memo before it is replaced anyway
    KEEP = 8

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self._passed = 0

    def keep(self, seen: dict[str, Row]) -> None:
        # a small answer in between (one job asked about elsewhere) leaves the last large
        # one in place; a queue that shrank for good replaces it after KEEP answers
        if 2 * len(seen) >= len(self.rows) or self._passed >= self.KEEP:
            self.rows, self._passed = seen, 0
        else:
            self._passed += 1


def parse_squeue(stdout: str, memo: LineMemo | None = None) -> list[Row]:
    """Rows of squeue's status format; lines ``memo`` holds are not parsed again."""
    known = memo.rows if memo is not None else {}
    seen: dict[str, Row] = {}
    rows: list[Row] = []
    share = threading.current_thread() is not threading.main_thread()
    for n, line in enumerate(stdout.splitlines()):
        if share and n % SHARE_EVERY == 0:
            # in a worker thread: hand the GIL to the event loop's thread if it waits for
            # it, instead of after the 5 ms switch interval -- on a busy machine, tens of
            # milliseconds of loop lag while a long answer is parsed
            time.sleep(0)
        line = line.strip()
        head, _, left = line.rpartition("|")
        row = known.get(head)
        if row is None:
            row = _squeue_row(line)
            if row is None:
                continue  # not a record of our format; never guess
        elif row[3].state in _CLOCK_RUNS:
            time_left = parse_duration(left)
            if time_left != row[3].time_left:
                row = (row[0], row[1], row[2], _with_time_left(row[3], time_left))
        seen[head] = row
        rows.append(row)
    if memo is not None:
        memo.keep(seen)
    return rows


def _with_time_left(info: JobInfo, time_left: timedelta | None) -> JobInfo:
    """``info`` with another time left: the rest of the line is the same, so are the other
    fields (``extra`` is shared, not copied). Made as a copy of the new object's fields,
    not through the frozen dataclass's ``__init__`` (a guarded setattr per field): a
    quarter of the cost, paid for every running job of every round."""
    new = object.__new__(JobInfo)
    new.__dict__.update(info.__dict__)
    new.__dict__["time_left"] = time_left
    return new


def _squeue_row(line: str) -> Row | None:
    fields = line.split("|")
    if len(fields) != 12 or not is_job_id(fields[0]):
        return None
    shown, raw, base, _task, state_word, reason, user, account, part, nodes, start, left = (
        fields
    )
    state = map_state(state_word)
    raw = shown if raw == shown else raw
    base = shown if base == shown else base
    info = JobInfo(
        job_id=shown,
        state=state,
        reason=None if is_none(reason) else _word(reason),
        user=_word(user) if user else None,
        partition=_word(part) if part else None,
        nodes=expand_hostlist(nodes),
        start_time=parse_iso(start),
        time_left=parse_duration(left) if state in _CLOCK_RUNS else None,
        extra={"slurm_state": _word(state_word), "account": _word(account), "raw_id": raw},
    )
    return shown, raw, base, info


def parse_sacct(stdout: str) -> list[Row]:
    rows: list[Row] = []
    for line in stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 10 or not is_job_id(fields[0]):
            continue  # job steps (123.batch) and foreign lines
        shown, raw, state_word, exit_code, user, account, part, nodes, start, end = fields
        code, _, signal = exit_code.partition(":")
        state = map_state(state_word)
        info = JobInfo(
            job_id=shown,
            state=state,
            reason=state_word if " " in state_word else None,
            user=user or None,
            partition=part or None,
            nodes=expand_hostlist(nodes) if nodes != "None assigned" else (),
            start_time=parse_iso(start),
            exit_code=int(code) if code.isdigit() else None,
            extra={"slurm_state": state_word, "account": account, "raw_id": raw,
                   "end_time": end, "signal": signal},
        )
        rows.append((shown, raw, shown.split("_", 1)[0], info))
    return rows

"""Measuring inside a benchmark's hub (:mod:`bench.scale`): event-loop lag and status polls.

The scale benchmark's hub configuration calls :func:`start` (JupyterHub reads its
configuration file inside its running event loop). From then on, in the hub process:

* a ticker task asks to run every ``every`` seconds and records how late it ran: the lag
  every other request of the hub waits for at that moment;
* every round of :class:`hpcbridge.poller.StatusPoller` (``poll_once``) is timed: wall
  time, the hub process's CPU time during it, and the number of tracked jobs.

* a watchdog thread looks every 10 ms at when the ticker last ran; when the loop has not
  come back for ``stall`` seconds, it takes the loop thread's stack at that moment (what
  holds the loop, if it is running) and, once the loop is back, records the stall with
  the process's CPU time from then until the loop was back (about that time: the hub
  was busy; near zero: it waited for a core or in a call that blocks).

Lines go to ``path`` (appended about once a second, so writing costs the loop nothing
measurable): ``L <unix time> <lag ms>``, ``P <unix start> <wall s> <cpu s> <jobs>`` and
``S <unix start> <stall ms> <cpu ms> <frame < frame < ...>`` (innermost frame first).
Benchmark-only: the product never imports this module.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time
import traceback
from pathlib import Path

_tasks: set[asyncio.Task] = set()


def start(path: str, every: float = 0.02, stall: float = 0.1) -> None:
    """Start measuring in the running loop (from the hub's configuration file)."""
    out = Path(path)
    out.write_text("")
    lines: list[str] = []
    _wrap_polls(lines)
    ticked = [time.monotonic()]
    task = asyncio.get_running_loop().create_task(_tick(out, lines, every, ticked))
    _tasks.add(task)  # the loop keeps only a weak reference
    threading.Thread(target=_watch, args=(task, lines, ticked, threading.get_ident(),
                                          every + stall),
                     name="hub-probe-watchdog", daemon=True).start()


def _watch(ticker: asyncio.Task, lines: list[str], ticked: list[float], loop_thread: int,
           stall: float) -> None:
    """Record each time the loop stays away longer than ``stall`` (see the module's doc),
    while the ticker runs."""
    started: tuple[float, float, float, str] | None = None  # monotonic, unix, cpu, stack
    while not ticker.done():
        time.sleep(0.01)
        last, now = ticked[0], time.monotonic()
        if started is None and now - last > stall:
            frame = sys._current_frames().get(loop_thread)
            stack = " < ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in
                               reversed(traceback.extract_stack(frame)[-8:])) if frame else "?"
            started = (last, time.time() - (now - last), time.process_time(), stack)
        elif started is not None and last > started[0]:  # the loop is back
            lines.append(f"S {started[1]:.3f} {(last - started[0]) * 1000:.1f} "
                         f"{(time.process_time() - started[2]) * 1000:.1f} {started[3]}\n")
            started = None


async def _tick(out: Path, lines: list[str], every: float, ticked: list[float]) -> None:
    flushed = time.monotonic()
    while True:
        before = time.monotonic()
        await asyncio.sleep(every)
        now = ticked[0] = time.monotonic()
        lines.append(f"L {time.time():.3f} {(now - before - every) * 1000:.2f}\n")
        if now - flushed >= 1.0:
            _append(out, lines)  # a small local write: the loop waits microseconds
            lines.clear()
            flushed = now


def _append(out: Path, lines: list[str]) -> None:
    with open(out, "a") as f:
        f.writelines(lines)


def _wrap_polls(lines: list[str]) -> None:
    from hpcbridge.poller import StatusPoller

    original = StatusPoller.poll_once
    if getattr(original, "_bench_probe", False):
        return

    @functools.wraps(original)
    async def timed(self: StatusPoller) -> None:
        wall, cpu, stamp = time.monotonic(), time.process_time(), time.time()
        try:
            await original(self)
        finally:
            lines.append(f"P {stamp:.3f} {time.monotonic() - wall:.4f} "
                         f"{time.process_time() - cpu:.4f} {len(self.tracked)}\n")

    timed._bench_probe = True  # type: ignore[attr-defined]
    StatusPoller.poll_once = timed  # type: ignore[method-assign]


def read(path: Path, since: float, until: float
         ) -> tuple[list[tuple[float, float]], list[dict]]:
    """Lags (unix time, ms) and polls recorded between two unix times."""
    lags: list[tuple[float, float]] = []
    polls: list[dict] = []
    if not path.exists():
        return lags, polls
    for line in path.read_text().splitlines():
        parts = line.split()
        try:
            if len(parts) < 2 or not since <= float(parts[1]) <= until:
                continue
        except ValueError:  # a line being written as we read
            continue
        if parts[0] == "L" and len(parts) == 3:
            lags.append((float(parts[1]), float(parts[2])))
        elif parts[0] == "P" and len(parts) == 5:
            polls.append({"at": float(parts[1]), "wall_s": float(parts[2]),
                          "cpu_s": float(parts[3]), "jobs": int(parts[4])})
    return lags, polls


def read_stalls(path: Path, since: float, until: float) -> list[dict]:
    """The stalls (``S`` lines) that began between two unix times."""
    stalls: list[dict] = []
    if not path.exists():
        return stalls
    for line in path.read_text().splitlines():
        parts = line.split(" ", 4)
        if len(parts) < 5 or parts[0] != "S":
            continue
        try:
            at, ms, cpu = float(parts[1]), float(parts[2]), float(parts[3])
        except ValueError:
            continue
        if since <= at <= until:
            stalls.append({"at": at, "ms": ms, "cpu_ms": cpu, "stack": parts[4]})
    return stalls

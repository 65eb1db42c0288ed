"""Measuring inside a benchmark's hub (:mod:`bench.scale`): event-loop lag and status polls.

The scale benchmark's hub configuration calls :func:`start` (JupyterHub reads its
configuration file inside its running event loop). From then on, in the hub process:

* a ticker task asks to run every ``every`` seconds and records how late it ran: the lag
  every other request of the hub waits for at that moment;
* every round of :class:`hpcbridge.poller.StatusPoller` (``poll_once``) is timed: wall
  time, the hub process's CPU time during it, and the number of tracked jobs.

Lines go to ``path`` (appended about once a second, so writing costs the loop nothing
measurable): ``L <unix time> <lag ms>`` and ``P <unix start> <wall s> <cpu s> <jobs>``.
Benchmark-only: the product never imports this module.
"""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

_tasks: set[asyncio.Task] = set()


def start(path: str, every: float = 0.02) -> None:
    """Start measuring in the running loop (from the hub's configuration file)."""
    out = Path(path)
    out.write_text("")
    lines: list[str] = []
    _wrap_polls(lines)
    task = asyncio.get_running_loop().create_task(_tick(out, lines, every))
    _tasks.add(task)  # the loop keeps only a weak reference


async def _tick(out: Path, lines: list[str], every: float) -> None:
    flushed = time.monotonic()
    while True:
        before = time.monotonic()
        await asyncio.sleep(every)
        now = time.monotonic()
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

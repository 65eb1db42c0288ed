"""Per-stage timings of hpcbridge spawns, read back from the hub's log.

The spawner logs one INFO line per spawn, e.g.::

    [I 2026-11-23 23:01:02.345 JupyterHub spawner:269] alice:c1: spawn stages: env 0.12 s,
    submit 0.08 s, queued 1.10 s, port 2.10 s, address 0.15 s (total 3.55 s)

(on one line; ``alice`` for a default server). Stage names are taken as logged, so a
renamed or added stage shows up in the figures without a change here; the total, when
logged, is kept as the stage ``total``.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

_LINE = re.compile(r"(?P<who>\S+): spawn stages: (?P<stages>.+?)"
                   r"(?:\s*\(total (?P<total>\d+(?:\.\d+)?) s\))?\s*$")
_STAGE = re.compile(r"^\s*(?P<name>[A-Za-z][\w-]*(?: [A-Za-z][\w-]*)*)\s+"
                    r"(?P<seconds>\d+(?:\.\d+)?)\s*s\s*$")


def parse_line(line: str) -> dict | None:
    """``{"who": "alice", "stages": {"env": 0.12, ...}}`` or None for any other line."""
    m = _LINE.search(line)
    if not m:
        return None
    stages: dict[str, float] = {}
    for part in m.group("stages").split(","):
        s = _STAGE.match(part)
        if s is None:
            return None  # not the format we know: better none than a wrong figure
        stages[s.group("name")] = float(s.group("seconds"))
    if not stages:
        return None
    if m.group("total") is not None:
        stages["total"] = float(m.group("total"))
    return {"who": m.group("who"), "stages": stages}


def parse(text: str) -> list[dict]:
    return [row for line in text.splitlines() if (row := parse_line(line))]


def medians(rows: list[dict]) -> dict[str, float]:
    """Median seconds per stage over ``rows``, stages in the order they were logged."""
    names = list(dict.fromkeys(name for r in rows for name in r["stages"]))
    return {name: round(statistics.median(r["stages"][name] for r in rows
                                          if name in r["stages"]), 3) for name in names}


class LogTail:
    """The part of a log file written after this object was made (or after ``mark``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mark()

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def read(self) -> str:
        if not self.path.exists():
            return ""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")


def summarize(text: str) -> dict:
    """What the benchmark records: how many spawns logged stages, and the medians."""
    rows = parse(text)
    return {"spawns": len(rows), "median_s": medians(rows)} if rows else \
        {"spawns": 0, "median_s": {}, "note": "no 'spawn stages:' lines in the hub log"}

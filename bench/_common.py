"""What the benchmarks share: a testbed for the run, results files, ratio lines."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from slurm_testbed.cluster import Testbed
from slurm_testbed.engine import REPO

RESULTS = REPO / "docs" / "benchmarks"


@contextlib.contextmanager
def testbed_session(nodes: int = 3) -> Iterator[Testbed]:
    """The testbed named by HPCBRIDGE_TESTBED_NAME with at least ``nodes`` compute nodes,
    brought up if needed (again, if it had fewer); taken down afterwards only when this
    run started it (and HPCBRIDGE_TESTBED_KEEP is not 1)."""
    tb = Testbed()
    was_up = tb.reusable()
    if was_up and len(tb.info().nodes) < nodes:
        tb.progress(f"up with fewer than {nodes} nodes; starting it again")
        tb.down()
        was_up = False
    tb.up(nodes=nodes)
    try:
        yield tb
    finally:
        if not was_up and os.environ.get("HPCBRIDGE_TESTBED_KEEP") != "1":
            tb.down()


def cli(parser: Callable[[], argparse.ArgumentParser],
        bench: Callable[[Testbed, argparse.Namespace], object],
        argv: list[str] | None = None) -> int:
    """A benchmark's own ``python -m bench.<name>``: its options, on the session's testbed."""
    args = parser().parse_args(argv)
    with testbed_session() as tb:
        bench(tb, args)
    return 0


def environment() -> dict[str, object]:
    """Where the figures come from (no host names or paths)."""
    return {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
            "python": platform.python_version(), "machine": platform.machine()}


def write_results(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({**environment(), **data}, indent=2) + "\n")
    return path


def ratio_line(label: str, value: float | None) -> str:
    """One ratio on its own line, e.g. ``ratio rpc/min n=50 per-job/ours 25.0``."""
    return f"ratio {label} " + ("n/a" if value is None else f"{value:.2f}")

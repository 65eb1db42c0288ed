"""Dask clients of the live tests that compute, run where a user's notebook runs: on a
compute node, as the user, with the nodes' Python.

    python dask_on_node.py CASE PROFILE      # prints one line: RESULT {json}

Dask sends functions defined in a notebook or a test (lambdas, local functions) to the
workers pickled by value, and such code loads only under the Python minor version that
pickled it. The workers run the nodes' Python (3.11 on bookworm, 3.13 on trixie), so a
client in the test process on the host computes only on the generation whose Python
matches the host's; hpcbridge's users run their client in a notebook on a node, with the
nodes' Python, and so do these cases (docs/testbed.md, "Python on the nodes").
tests/testbed/test_dask_live.py runs them and checks what they report.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from distributed import Client

import hpcbridge.dask as hd

CASES: dict[str, Callable[[str], dict[str, Any]]] = {}


def case(fn: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    CASES[fn.__name__] = fn
    return fn


def queued(name: str) -> list[str]:
    """Ids of this user's jobs named ``name`` that the scheduler still lists."""
    proc = subprocess.run(["squeue", "--noheader", "--array", "--me", f"--name={name}",
                           "--format=%i|%T"], capture_output=True, text=True, check=True)
    return [line.split("|")[0] for line in proc.stdout.split()
            if not line.endswith("|COMPLETING")]


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


def slow(i: int) -> int:  # pickled by value, like a function of a notebook
    time.sleep(1.0)
    return i


@case
def answer(profile: str) -> dict[str, Any]:
    """One worker computes a lambda."""
    cluster = hd.cluster(profile, cores=1, memory="1G", walltime="00:05:00", poll_interval=2)
    with Client(cluster) as client:
        cluster.scale(1)
        client.wait_for_workers(1, timeout=180)
        result = client.submit(lambda: 41 + 1).result()
    cluster.close()
    return {"name": cluster._name, "answer": result, "left": cluster.live_job_ids()}


@case
def outlive_walltimes(profile: str) -> dict[str, Any]:
    """3 minutes of work on workers of a 1-minute walltime (each retires after ~27 s)."""
    cluster = hd.cluster(profile, cores=1, memory="1G", walltime="00:01:00", poll_interval=2)
    started = time.monotonic()
    with Client(cluster) as client:
        cluster.scale(2)
        futures = client.map(slow, range(360))
        total = client.submit(sum, futures).result(timeout=420)
    return closed(cluster, total=total, elapsed=time.monotonic() - started)


def closed(cluster: Any, **found: Any) -> dict[str, Any]:
    """Close a rolling cluster and report ``found`` with its name, how many jobs it
    submitted (counted before the close) and its failures."""
    submissions = cluster.submissions
    cluster.close()
    return {"name": cluster._name, **found, "submissions": submissions,
            "failures": cluster.failures}


@case
def array_roll(profile: str) -> dict[str, Any]:
    """Array tasks of a 1-minute walltime hand their work to successor jobs."""
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    rolling = logging.getLogger("hpcbridge.dask.rolling")
    rolling.setLevel(logging.INFO)
    rolling.addHandler(Keep())
    cluster = hd.cluster(profile, arrays=True, cores=1, memory="1G", walltime="00:01:00",
                         poll_interval=2)
    with Client(cluster) as client:
        cluster.scale(2)
        client.wait_for_workers(2, timeout=180)
        futures = client.map(slow, range(80))
        total = client.submit(sum, futures).result(timeout=240)
    return closed(cluster, total=total, messages=messages)


@case
def adapt_two_processes(profile: str) -> dict[str, Any]:
    """adapt with 2 processes per job: busy, then idle."""
    cluster = hd.cluster(profile, cores=2, memory="2G", processes=2, walltime="00:05:00",
                         poll_interval=2)

    def work(i: int) -> int:
        time.sleep(0.5)
        return i

    with Client(cluster) as client:
        adaptive = cluster.adapt(minimum=0, maximum=4, interval="1s", wait_count=3)
        futures = client.map(work, range(80))
        total = sum(client.gather(futures))
        del futures
        # idle: adapt closes whole jobs (both processes) and does not start them again
        emptied = wait_until(lambda: not queued(cluster._name), 60)
        time.sleep(5)
        after = queued(cluster._name)
        submissions = cluster.submissions
    cluster.close()
    return {"name": cluster._name, "maximum": adaptive.maximum, "total": total,
            "emptied": emptied, "queued_after_idle": after, "submissions": submissions}


if __name__ == "__main__":
    name, profile_path = sys.argv[1:3]
    print("RESULT " + json.dumps(CASES[name](profile_path)), flush=True)

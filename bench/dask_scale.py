"""Time to N Dask workers and submit commands: hpcbridge.dask vs plain dask-jobqueue.

Runs on the testbed as bob (brought up if needed):

    python -m bench.dask_scale [--repeat 5] [--only n3 ...] [--quick]

Plain dask-jobqueue runs where its ``sbatch`` works, on the login node (it shells out
locally); hpcbridge runs here and submits over SSH, as a notebook or hub would. Both
are timed the same way: from ``cluster.scale(N)``, called right after the cluster and
its client exist, until ``client.wait_for_workers(N)`` returns.

:func:`run` is what ``python -m bench all`` calls: per scenario one warm-up run of each
tool (discarded: the first SSH login, cold caches on the nodes), then ``repeat`` runs
of each, alternating which tool goes first, run ``i`` of both tools waiting the same
fraction of a second before ``scale`` (slurmctld schedules on a one-second tick; see
:func:`measure_scenario`); medians,
slurmctld RPC counts around every run (``sdiag``, through :mod:`bench.dask_bench`),
ratios on their own lines:

    ratio time n3 hpcbridge/dask-jobqueue 0.93

QOS normal runs 4 jobs per user (array tasks count one by one), so the large N uses
several processes per job: the largest scenario is as many whole-node jobs as the QOS
and the testbed's nodes allow, one 1-core worker per core (24 on 3 nodes, 32 on 4+).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from distributed import Client

import hpcbridge.dask as hd
from hpcbridge.site import Site
from slurm_testbed import config
from slurm_testbed.cluster import Testbed

USER = "bob"
PYTHON = "/opt/hpcbridge/venv/bin/python"
QOS_MAX_JOBS = 4  # QOS normal's MaxJobsPerUser on the testbed


@dataclass(frozen=True)
class Scenario:
    name: str
    workers: int
    cores: int
    processes: int
    arrays: bool

    @property
    def jobs(self) -> int:
        return self.workers // self.processes


SCENARIOS = (
    Scenario("n3", 3, 1, 1, False),
    Scenario("n4-array", 4, 1, 1, True),
    Scenario("n16-array", 16, 4, 4, True),
)


def largest_scenario(tb: Testbed) -> Scenario:
    """The most 1-core workers the testbed holds for one user: whole-node jobs."""
    jobs = min(QOS_MAX_JOBS, len(tb.info().nodes))
    per_job = config.CPUS_PER_NODE
    return Scenario(f"n{jobs * per_job}-array", jobs * per_job, per_job, per_job, True)


PLAIN = """
import json, sys, time
from dask_jobqueue import SLURMCluster
from distributed import Client
s = json.loads(sys.argv[1])
cluster = SLURMCluster(cores=s["cores"], processes=s["processes"], memory=f"{s['cores']}GB",
                       queue="debug", walltime="00:05:00", python=sys.executable,
                       scheduler_options={"host": s["host"], "dashboard_address": ":0"})
client = Client(cluster)
time.sleep(s["delay"])
t0 = time.monotonic()
cluster.scale(s["workers"])
client.wait_for_workers(s["workers"], timeout=s["timeout"])
elapsed = time.monotonic() - t0
cluster.close()
print(json.dumps({"seconds": elapsed, "submissions": s["workers"] // s["processes"]}))
"""


def _timeout(s: Scenario) -> int:
    # many workers start on 2 shared cores: a nanny and a worker interpreter each
    return 180 + 5 * s.workers


def wait_for_empty_queue(tb: Testbed, timeout: float = 90) -> None:
    """Jobs of the previous run may still be completing; they count against QOS limits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = tb.login_exec(USER, ["squeue", "--noheader", f"--user={USER}"])
        if proc.returncode == 0 and not proc.stdout.strip():
            return
        time.sleep(1)
    raise RuntimeError(f"{USER} still has jobs; is someone else using {USER}?")


def run_ours(tb: Testbed, site: Site, profile, s: Scenario,  # type: ignore[no-untyped-def]
             delay: float = 0.0) -> dict:
    """One hpcbridge run; ``delay`` seconds pass between set-up and ``scale``."""
    wait_for_empty_queue(tb)
    cluster = hd.cluster(profile, user=USER, site=site, scheduler_host=tb.info().gateway_ip,
                         cores=s.cores, memory=f"{s.cores}G", processes=s.processes,
                         walltime="00:05:00", arrays=s.arrays, poll_interval=5.0)
    try:
        with Client(cluster) as client:
            time.sleep(delay)
            t0 = time.monotonic()
            cluster.scale(s.workers)
            client.wait_for_workers(s.workers, timeout=_timeout(s))
            return {"seconds": time.monotonic() - t0, "submissions": cluster.submissions}
    finally:
        cluster.close()


def run_plain(tb: Testbed, s: Scenario, delay: float = 0.0) -> dict:
    """One dask-jobqueue run on the login node; ``delay`` as for :func:`run_ours`."""
    wait_for_empty_queue(tb)
    spec = {"cores": s.cores, "processes": s.processes, "workers": s.workers,
            "host": tb.info().login_ip, "timeout": _timeout(s), "delay": delay}
    proc = tb.login_exec(USER, [PYTHON, "-c", PLAIN, json.dumps(spec)],
                         timeout=_timeout(s) + 120)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-2000:])
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def scenarios_for(tb: Testbed, quick: bool, only: list[str] | None = None) -> list[Scenario]:
    every = [*SCENARIOS, largest_scenario(tb)]
    if only:
        return [s for s in every if s.name in only]
    return [every[0]] if quick else every


def phase(i: int) -> float:
    """The ``i``-th of a low-discrepancy sequence in [0, 1): any first n spread evenly."""
    return (0.5 + i * 0.6180339887) % 1.0


def measure_scenario(tb: Testbed, site: Site, profile, s: Scenario,  # type: ignore[no-untyped-def]
                     repeat: int, warmup: bool = True) -> dict:
    """``repeat`` runs of each tool, alternating which goes first, after one warm-up each.

    slurmctld starts pending jobs on a one-second tick, so how long a job waits depends on
    when in that second it was submitted. Each tool's set-up takes its own, nearly fixed
    time after the previous run's jobs left the queue, which would put its ``scale`` at
    nearly the same point of the tick every run: a bias of up to a second either way.
    So run ``i`` of *both* tools waits ``phase(i)`` seconds before ``scale``: the phases
    spread evenly over the second, the same for both tools.
    """
    from bench import dask_bench as db

    def ours(delay: float) -> dict:
        return db._timed(tb, lambda: run_ours(tb, site, profile, s, delay))

    def plain(delay: float) -> dict:
        return db._timed(tb, lambda: run_plain(tb, s, delay))

    if warmup:
        ours(0.0), plain(0.0)
    runs: dict[str, list[dict]] = {db.OURS: [], db.PLAIN: []}
    for i in range(repeat):
        order = [(db.OURS, ours), (db.PLAIN, plain)]
        for name, one in order if i % 2 == 0 else reversed(order):
            runs[name].append({**one(phase(i)), "delay": round(phase(i), 3)})
    row: dict[str, Any] = {"scenario": s.name, "workers": s.workers, "jobs": s.jobs,
                           "processes": s.processes}
    for name, rows in runs.items():
        row[name] = {k: db._median(rows, k) for k in ("seconds", "submissions", "rpcs",
                                                      "submit_rpcs")}
        row[name]["runs"] = rows
    # each run against the other tool's run next to it: robust to the load of other
    # testbeds drifting during the scenario
    paired = zip(runs[db.OURS], runs[db.PLAIN], strict=False)
    pairs = [o["seconds"] / p["seconds"] for o, p in paired]
    row["time_ratio_paired_median"] = round(statistics.median(pairs), 2)
    if s.arrays:
        # the goal at large N: at most N/8 submissions with arrays
        row["submissions_goal_max"] = s.workers / 8
        row["submissions_goal_met"] = row[db.OURS]["submissions"] <= s.workers / 8
    db._print(row)
    return row


NOTES = [
    ("Each tool: one warm-up run per scenario (discarded), then the runs alternate which "
     "tool goes first; the figures are medians, and the paired ratio is the median of "
     "each run's time over the other tool's run next to it. Limits read by an earlier cluster "
     "of the same process (QOS, association, partition: 300 s) are reused, as in a notebook."),
    ("slurmctld starts pending jobs on a one-second tick: run i of both tools waits the "
     "same fraction of a second (spread evenly over the runs) between set-up and scale(), "
     "so that neither tool's fixed set-up time puts its submissions at a lucky or unlucky "
     "point of that tick every time."),
    ("Largest scenario: as many whole-node jobs as QOS normal (4 jobs per user; each array "
     "task counts as a job) and the testbed's nodes allow, one 1-core worker per core."),
]


def run(testbed: Testbed, quick: bool = False, repeat: int | None = None,
        only: list[str] | None = None) -> dict:
    """Every scenario (quick: n3 only, 3 runs each), as ``python -m bench all`` wants it:
    the contents of ``docs/benchmarks/dask_scale.json`` (not written here)."""
    from bench import dask_bench as db

    repeat = repeat or (3 if quick else 5)
    profile, site = db._profile(testbed)
    results = [measure_scenario(testbed, site, profile, s, repeat)
               for s in scenarios_for(testbed, quick, only)]
    ratios = db.ratios(results)
    for r in results:
        ratios[f"time {r['scenario']} {db.OURS}/{db.PLAIN}, median of paired runs"] = \
            r["time_ratio_paired_median"]
    return {"user": USER, "repeat": repeat, "warmup_runs": 1, "alternated": True,
            "results": results, "ratios": ratios, "summary": db.table(results),
            "notes": [*db.NOTES, *NOTES], "quick": quick}


def main(argv: list[str] | None = None) -> int:
    from bench._common import ratio_line, testbed_session, write_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=None, help="runs per tool (default 5)")
    parser.add_argument("--only", nargs="+", default=None, help="scenarios by name")
    parser.add_argument("--quick", action="store_true", help="n3 only, 3 runs per tool")
    parser.add_argument("--no-write", action="store_true", help="print, write no JSON")
    args = parser.parse_args(argv)
    with testbed_session() as tb:
        data = run(tb, args.quick, args.repeat, args.only)
    for label, value in data["ratios"].items():
        print(ratio_line(label, value))
    if not args.no_write:
        print(f"wrote {write_results('dask_scale', data).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time to N Dask workers and submit commands: hpcbridge.dask vs plain dask-jobqueue.

Runs on the testbed as bob (``hpcbridge testbed up`` first):

    python bench/dask_scale.py [--repeat 2]

Plain dask-jobqueue runs where its ``sbatch`` works, on the login node (it shells out
locally); hpcbridge runs here and submits over SSH, as a notebook or hub would. Each
scenario prints one line per tool and its ratios on their own lines:

    ratio time <scenario> ours/plain 0.93
    ratio submissions <scenario> ours/plain 0.25

QOS normal allows 4 jobs per user, so the large N uses several processes per job
(4 jobs × 4 processes: 16 of the 24 testbed cores, leaving room for other users).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass

from distributed import Client

import hpcbridge.dask as hd
from hpcbridge.profiles import DaskCaps, load_bundled_profile
from hpcbridge.site import Site
from slurm_testbed.cluster import Testbed

USER = "bob"
PYTHON = "/opt/hpcbridge/venv/bin/python"


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

PLAIN = """
import json, sys, time
from dask_jobqueue import SLURMCluster
from distributed import Client
s = json.loads(sys.argv[1])
cluster = SLURMCluster(cores=s["cores"], processes=s["processes"], memory=f"{s['cores']}GB",
                       queue="debug", walltime="00:05:00", python=sys.executable,
                       scheduler_options={"host": s["host"], "dashboard_address": ":0"})
client = Client(cluster)
t0 = time.monotonic()
cluster.scale(s["workers"])
client.wait_for_workers(s["workers"], timeout=180)
elapsed = time.monotonic() - t0
cluster.close()
print(json.dumps({"seconds": elapsed, "submissions": s["workers"] // s["processes"]}))
"""


def wait_for_empty_queue(tb: Testbed, timeout: float = 60) -> None:
    """Jobs of the previous run may still be completing; they count against QOS limits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = tb.login_exec(USER, ["squeue", "--noheader", f"--user={USER}"])
        if proc.returncode == 0 and not proc.stdout.strip():
            return
        time.sleep(1)
    raise RuntimeError(f"{USER} still has jobs; is someone else using {USER}?")


def run_ours(tb: Testbed, site: Site, profile, s: Scenario) -> dict:  # type: ignore[no-untyped-def]
    wait_for_empty_queue(tb)
    cluster = hd.cluster(profile, user=USER, site=site, scheduler_host=tb.info().gateway_ip,
                         cores=s.cores, memory=f"{s.cores}G", processes=s.processes,
                         walltime="00:05:00", arrays=s.arrays, poll_interval=5.0)
    try:
        with Client(cluster) as client:
            t0 = time.monotonic()
            cluster.scale(s.workers)
            client.wait_for_workers(s.workers, timeout=180)
            return {"seconds": time.monotonic() - t0, "submissions": cluster.submissions}
    finally:
        cluster.close()


def run_plain(tb: Testbed, s: Scenario) -> dict:
    wait_for_empty_queue(tb)
    spec = {"cores": s.cores, "processes": s.processes, "workers": s.workers,
            "host": tb.info().login_ip}
    proc = tb.login_exec(USER, [PYTHON, "-c", PLAIN, json.dumps(spec)], timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-2000:])
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", default=None, help="one scenario by name")
    args = parser.parse_args()
    tb = Testbed()
    profile = load_bundled_profile("testbed", {**os.environ, **tb.profile_env()})
    # the bundled caps (8 cores per user) are for notebooks; the bench measures the tools
    profile = profile.model_copy(update={"dask": profile.dask.model_copy(
        update={"per_user": DaskCaps()})})
    site = Site(profile)
    for s in SCENARIOS:
        if args.only and s.name != args.only:
            continue
        ours = [run_ours(tb, site, profile, s) for _ in range(args.repeat)]
        plain = [run_plain(tb, s) for _ in range(args.repeat)]
        o_t = statistics.median(r["seconds"] for r in ours)
        p_t = statistics.median(r["seconds"] for r in plain)
        o_n, p_n = ours[0]["submissions"], plain[0]["submissions"]
        print(f"{s.name}: {s.workers} workers in {s.jobs} jobs of {s.processes} processes; "
              f"hpcbridge {o_t:.2f} s, {o_n} submissions; dask-jobqueue {p_t:.2f} s, "
              f"{p_n} submissions")
        print(f"ratio time {s.name} ours/plain {o_t / p_t:.2f}")
        print(f"ratio submissions {s.name} ours/plain {o_n / p_n:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

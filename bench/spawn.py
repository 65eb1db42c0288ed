"""Spawning notebooks: hpcbridge vs stock batchspawner ``SlurmSpawner``, one testbed, one run.

Two real JupyterHubs (with configurable-http-proxy) run side by side on the testbed named
by HPCBRIDGE_TESTBED_NAME: hpcbridge's (:class:`hpcbridge.hubrun.Hub`, public port 8200,
hub 8281) and a stock batchspawner hub (:mod:`bench.stock_hub`, 8300/8381), both
submitting over SSH as the user, both with the same request (partition debug, 1 core,
2G, 30 min). Measured, in this order:

1. **floor**: ``sbatch`` over SSH as alice → the batch script runs (both stamped with the
   wall clock, which host and containers share), plus JupyterLab's own start-up on that
   node (``jupyter-lab`` started in the job until its ``/api`` answers); median of runs.
2. **cold spawns**, idle cluster: REST ``POST`` → the hub reports the server ready,
   alternating the two hubs, the server stopped and the queue empty between spawns.
3. **concurrent spawns**: 8 at once (named servers of alice, bob, carol within QOS
   MaxJobsPerUser=4; carol at most one, her account's core-minute budget allows no more).
4. **scheduler load**: slurmctld RPCs (``sdiag``) of the hub's accounts over a window
   with 1 and then 10 running servers (QOS raised for 10); stock batchspawner polls each
   server every ``Spawner.poll_interval`` (30 s), hpcbridge runs one query per
   ``status_interval`` (15 s, hubrun's default) for every server.
5. **hub restart** with those 10 servers: SIGKILL, start again, time until every server is
   reported ready, and slurmctld RPCs in that time.
6. **50 concurrent spawns**, hpcbridge only: QOS lets every job be submitted but still runs
   4 per user; how many are ready within a bound, how many wait queued, none failed.

Run: ``python -m bench.spawn [--quick]``; writes ``docs/benchmarks/spawn.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench._common import ratio_line, testbed_session, write_results
from bench.spawn_client import Driver, percentile, queue, slots, summary, wait_queue_empty
from bench.spawn_summary import NOTES, OURS, STOCK, print_table, ratios, settings, table
from bench.stock_hub import StockHub
from hpcbridge.hubrun import Hub
from hpcbridge.site import Site
from slurm_testbed import config, faults
from slurm_testbed.cluster import Testbed

HUB_ACCOUNTS = ("hpcbridge", *config.USERS)  # whose RPCs are the hubs' (not root's)
FLOOR_USER = "alice"
#: HpcSpawner.status_interval, as hubrun configures it by default
STATUS_INTERVAL = 15.0
VENV = "/opt/hpcbridge/venv/bin"
FLOOR_PY = r'''
import socket, subprocess, sys, time, urllib.request
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
server = subprocess.Popen([sys.argv[1], "--no-browser", "--ip=127.0.0.1", f"--port={port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2).read()
        break
    except OSError:
        if server.poll() is not None:
            sys.exit(f"jupyter-lab exited with {server.returncode}")
        time.sleep(0.05)
print("ready", repr(time.time()), flush=True)
server.terminate()
server.wait(30)
'''
FLOOR_SCRIPT = f"""#!/bin/bash
#SBATCH --job-name=hpcb-bench-floor
#SBATCH --partition=debug
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
#SBATCH --time=00:05:00
#SBATCH --output=/home/{FLOOR_USER}/hpcb-bench-floor-%j.out
#SBATCH --chdir=/tmp
echo "running $(date +%s.%N)"
exec {VENV}/python - {VENV}/jupyter-lab <<'PY'
{FLOOR_PY}
PY
"""


# -- 1. floor -------------------------------------------------------------------------

def _floor_marks(tb: Testbed, job_id: str, timeout: float = 120) -> dict[str, float]:
    path = f"/home/{FLOOR_USER}/hpcb-bench-floor-{job_id}.out"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = tb.login_exec(FLOOR_USER, ["cat", path]).stdout.decode()
        marks = dict(line.split(None, 1) for line in text.splitlines() if " " in line)
        if "ready" in marks:
            tb.login_exec(FLOOR_USER, ["rm", "-f", path])
            return {k: float(marks[k]) for k in ("running", "ready")}
        time.sleep(0.3)
    raise TimeoutError(f"floor job {job_id} did not report in {timeout:.0f} s: {text!r}")


async def _floor_runs(tb: Testbed, runs: int) -> list[dict]:
    site = Site.for_testbed(tb)
    client = site.client()
    try:
        await client.transport.run(["true"], user=FLOOR_USER)  # connected, as a running hub is
        rows = []
        for _ in range(runs):
            submit = time.time()
            job_id = await client.submit(FLOOR_USER, FLOOR_SCRIPT)
            submitted = time.time()
            marks = await asyncio.to_thread(_floor_marks, tb, job_id)
            rows.append({"job_id": job_id, "sbatch_s": round(submitted - submit, 3),
                         "sbatch_to_running_s": round(marks["running"] - submit, 3),
                         "server_startup_s": round(marks["ready"] - marks["running"], 3),
                         "total_s": round(marks["ready"] - submit, 3)})
            await asyncio.to_thread(wait_queue_empty, tb)
        return rows
    finally:
        await site.close()


def phase_floor(tb: Testbed, runs: int) -> dict:
    rows = asyncio.run(_floor_runs(tb, runs))

    def med(key: str) -> float | None:
        return percentile([r[key] for r in rows], 50)

    result = {"runs": rows, "startup_measured": "jupyter-lab on the node until /api answers",
              "sbatch_to_running_s": med("sbatch_to_running_s"),
              "server_startup_s": med("server_startup_s"), "total_s": med("total_s")}
    print(f"floor: sbatch→running {result['sbatch_to_running_s']} s + JupyterLab start-up "
          f"{result['server_startup_s']} s = {result['total_s']} s (median of {runs})",
          flush=True)
    return result


# -- 2. cold spawns, 3. concurrent spawns -----------------------------------------------

def phase_cold(tb: Testbed, drivers: dict[str, Driver], n: int) -> dict:
    """``n`` spawns of alice's default server per hub, alternating hubs."""
    spawns: dict[str, list] = {name: [] for name in drivers}
    for i in range(n):
        for name, driver in drivers.items():
            s = driver.spawn("alice", "", timeout=180)
            spawns[name].append(s)
            print(f"cold {name} #{i + 1}: {s.outcome} {s.seconds} s {s.message}", flush=True)
            driver.stop_all(tb, [("alice", "")])
    return {name: {**summary(rows), "runs": [s.row() for s in rows]}
            for name, rows in spawns.items()}


def caps_for(n: int) -> dict[str, int]:
    """Servers per user for ``n`` at once: carol one (her budget), the rest alice and bob."""
    rest = max(0, n - 1)
    return {"alice": max(1, -(-rest // 2)), "bob": rest // 2, "carol": 1 if n > 1 else 0}


@contextlib.contextmanager
def qos_for(tb: Testbed, running: int = 0, submitted: int = 0) -> Iterator[None]:
    """Raise the QOS limits only as far as ``running`` and ``submitted`` jobs per user
    need; the testbed's values come back afterwards."""
    limits = {}
    if running > config.QOS_MAX_JOBS_PER_USER:
        limits["MaxJobsPerUser"] = running
    if max(running, submitted) > config.QOS_MAX_SUBMIT_PER_USER:
        limits["MaxSubmitJobsPerUser"] = max(running, submitted)
    with faults.qos_limits(tb, **limits) if limits else contextlib.nullcontext():
        yield


def phase_concurrent(tb: Testbed, drivers: dict[str, Driver], n: int) -> dict:
    pairs = slots(n, caps_for(n), "c")
    out = {"n": n, "servers": [f"{u}/{s}" for u, s in pairs]}
    with qos_for(tb, max(caps_for(n).values())):
        for name, driver in drivers.items():
            spawns = driver.spawn_many(pairs, timeout=240)
            out[name] = {**summary(spawns), "runs": [s.row() for s in spawns]}
            print(f"{n} concurrent {name}: {out[name]['outcomes']}, p50 {out[name]['p50_s']} s,"
                  f" p95 {out[name]['p95_s']} s", flush=True)
            driver.stop_all(tb, pairs)
    return out


# -- 4. scheduler load, 5. hub restart ---------------------------------------------------

def hub_uids(tb: Testbed) -> dict[str, int]:
    """uids of the hubs' accounts (slurmctld may know ``hpcbridge`` only by uid)."""
    return {u: int(tb.exec("login", ["id", "-u", u], check=True).stdout)
            for u in HUB_ACCOUNTS}


def rpc_window(tb: Testbed, seconds: float, uids: dict[str, int]) -> dict:
    """slurmctld RPCs of the hub accounts (and all) over ``seconds`` of steady state."""
    faults.reset_rpc_stats(tb)
    time.sleep(seconds)
    return _rpcs(faults.rpc_stats(tb), seconds, uids)


def _rpcs(stats: faults.RpcStats, seconds: float, uids: dict[str, int]) -> dict:
    per = {u: n for u in HUB_ACCOUNTS if (n := stats.user(u, uids[u]))}
    hub = sum(per.values())
    return {"seconds": round(seconds, 1), "hub_rpcs": hub,
            "rpc_per_min": round(hub * 60 / seconds, 1) if seconds else None,
            "hub_rpcs_by_account": per,
            "all_rpcs": stats.total - stats.by_type.get("REQUEST_STATS_INFO", 0),
            "by_type": {k: v for k, v in stats.by_type.items() if k != "REQUEST_STATS_INFO"}}


def measure_restart(tb: Testbed, driver: Driver, hub: Hub, pairs: list[tuple[str, str]],
                    uids: dict[str, int]) -> dict:
    hub.kill(signal.SIGKILL)
    faults.reset_rpc_stats(tb)
    started = time.monotonic()
    hub.restart()
    answering = time.monotonic() - started
    driver.wait_all_ready(pairs, timeout=300)
    seconds = time.monotonic() - started
    rpcs = _rpcs(faults.rpc_stats(tb), seconds, uids)
    result = {"n": len(pairs), "hub_answers_s": round(answering, 2),
              "all_ready_s": round(seconds, 2), "hub_rpcs": rpcs["hub_rpcs"],
              "hub_rpcs_by_account": rpcs["hub_rpcs_by_account"], "by_type": rpcs["by_type"]}
    print(f"restart {driver.name} with {len(pairs)} servers: all ready after "
          f"{result['all_ready_s']} s (hub answered at {result['hub_answers_s']} s), "
          f"{result['hub_rpcs']} slurmctld RPCs", flush=True)
    return result


def phase_load(tb: Testbed, driver: Driver, hub: Hub, sizes: list[int], window: float,
               settle: float, uids: dict[str, int]) -> dict:
    """Windows with ``sizes`` running servers, then the hub restart with the last size."""
    caps = caps_for(max(sizes))
    pairs = slots(max(sizes), caps, "l")
    running: list[tuple[str, str]] = []
    windows = []
    with qos_for(tb, max(caps.values())):
        try:
            for n in sorted(sizes):
                spawns = driver.spawn_many(pairs[len(running):n], timeout=240)
                running = pairs[:n]
                driver.wait_all_ready(running, timeout=120)
                time.sleep(settle)
                rpcs = rpc_window(tb, window, uids)
                windows.append({"n": n, "spawn": summary(spawns), **rpcs})
                print(f"load {driver.name} n={n}: {rpcs['hub_rpcs']} RPCs in {window:.0f} s = "
                      f"{rpcs['rpc_per_min']}/min {rpcs['by_type']}", flush=True)
            restart = measure_restart(tb, driver, hub, running, uids)
        finally:
            driver.stop_all(tb, running or pairs)
    return {"windows": windows, "restart": restart}


# -- 6. many concurrent spawns ---------------------------------------------------------

def phase_many(tb: Testbed, driver: Driver, n: int, timeout: float) -> dict:
    per_user = -(-n // len(config.USERS))
    pairs = slots(n, dict.fromkeys(config.USERS, per_user), "m")
    with qos_for(tb, submitted=per_user):
        try:
            spawns = driver.spawn_many(pairs, timeout=timeout)
            jobs = queue(tb)
        finally:
            driver.stop_all(tb, pairs, timeout=120)
    reasons: dict[str, int] = {}
    for line in jobs:
        _, state, reason, _ = line.split(" ", 3)
        key = f"{state} ({reason})" if state == "PENDING" else state
        reasons[key] = reasons.get(key, 0) + 1
    wrong = [s.row() for s in spawns if s.outcome in ("failed", "refused")]
    result = {"n": n, "bound_s": timeout, **summary(spawns), "jobs_at_bound": reasons,
              "wrong_failures": wrong, "qos": {"MaxJobsPerUser": config.QOS_MAX_JOBS_PER_USER,
                                               "MaxSubmitJobsPerUser": max(
                                                   per_user, config.QOS_MAX_SUBMIT_PER_USER)}}
    print(f"{n} concurrent {driver.name}: {result['outcomes']} within {timeout:.0f} s, "
          f"jobs {reasons}, ready p50 {result['p50_s']} s p95 {result['p95_s']} s", flush=True)
    return result


# -- the run ---------------------------------------------------------------------------

def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def hubs(tb: Testbed) -> Iterator[tuple[dict[str, Driver], dict[str, Hub]]]:
    """Both hubs on the testbed; on the way out, both down and every job cancelled."""
    base = Path(tempfile.mkdtemp(prefix="hpcb-bench-spawn-"))
    runners: dict[str, Hub] = {OURS: Hub(base / OURS, public_port=8200, hub_port=8281),
                               STOCK: StockHub(base / STOCK, public_port=8300, hub_port=8381)}
    busy = [p for p in (8200, 8201, 8281, 8300, 8301, 8381) if not _port_free(p)]
    if busy:
        raise SystemExit(f"ports {busy} are in use: is an earlier bench.spawn still running?")
    print(f"hub directories (logs): {base}", flush=True)
    drivers: dict[str, Driver] = {}
    try:
        for name, runner in runners.items():
            st = runner.up_on_testbed(tb, users=list(config.USERS), interval=STATUS_INTERVAL)
            drivers[name] = Driver(name, st["hub_url"], st["admin_token"],
                                   {"preset": "debug"} if name == OURS else {})
        yield drivers, runners
    finally:
        for runner in runners.values():
            runner.down()
        faults.cancel_all(tb)


def run(tb: Testbed, args: argparse.Namespace, save) -> dict:
    data: dict = {"settings": settings(args, STATUS_INTERVAL)}
    wait_queue_empty(tb)
    data["floor"] = phase_floor(tb, args.floor_runs)
    save(data)
    with hubs(tb) as (drivers, runners):
        data["cold"] = phase_cold(tb, drivers, args.spawns)
        save(data)
        data["concurrent"] = phase_concurrent(tb, drivers, args.concurrent)
        save(data)
        uids = hub_uids(tb)
        data["load"] = {name: phase_load(tb, driver, runners[name], args.load_sizes,
                                         args.window, args.settle, uids)
                        for name, driver in drivers.items()}
        save(data)
        if args.many:
            data["many"] = phase_many(tb, drivers[OURS], args.many, args.many_timeout)
    data["ratios"] = ratios(data)
    data["summary"] = table(data)
    data["notes"] = NOTES
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true",
                   help="small sizes: 2 floor runs, 4 spawns, 4 concurrent, load 1 and 4 with "
                        "40 s windows, no 50-spawn phase")
    p.add_argument("--floor-runs", type=int, default=3)
    p.add_argument("--spawns", type=int, default=10, help="cold spawns per hub")
    p.add_argument("--concurrent", type=int, default=8)
    p.add_argument("--load-sizes", type=int, nargs="+", default=[1, 10],
                   help="running servers per load window; the hub restart uses the largest")
    p.add_argument("--window", type=float, default=60.0, help="seconds per load window")
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--many", type=int, default=50, help="concurrent hpcbridge spawns; 0: skip")
    p.add_argument("--many-timeout", type=float, default=90.0)
    args = p.parse_args(argv)
    if args.quick:
        args.floor_runs, args.spawns, args.concurrent = 2, 4, 4
        args.load_sizes, args.window, args.many = [1, 4], 40.0, 0
    started = time.monotonic()
    with testbed_session() as tb:
        data = run(tb, args, lambda d: write_results("spawn", {**d, "complete": False}))
    data["elapsed_s"] = round(time.monotonic() - started, 1)
    path = write_results("spawn", {**data, "complete": True})
    print_table(data["summary"])
    for label, value in data["ratios"].items():
        print(ratio_line(f"{label} =", value))
    print(f"wrote {path.name} in {data['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

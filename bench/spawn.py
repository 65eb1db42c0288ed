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
3. **concurrent spawns**: 8 at once (named servers of alice and bob, QOS MaxJobsPerUser
   raised to 4 of each).
4. **at scale** (:mod:`bench.spawn_scale`), one hub after the other: 50 spawned at once
   (QOS raised so all may run), slurmctld RPCs (``sdiag``) of the hub's accounts over a
   window with 50, 10 and 1 running servers, and a **hub restart** with 20 (SIGKILL, start
   again, until every server is reported ready; RPCs in that time). Stock batchspawner
   polls each server every ``Spawner.poll_interval`` (30 s), hpcbridge runs one query per
   ``status_interval`` (30 s, its default; the run records it) for every server.
5. **over QOS limits**: 50 spawns at once with QOS normal as configured (4 running per
   user; only the submit limit raised): how many are ready within a bound, how many wait
   queued, how many failed, and what the hub told the user.
6. **stages**: hpcbridge's per-stage times, from the ``spawn stages:`` lines of its hub log.

Run: ``python -m bench.spawn [--quick]``; writes ``docs/benchmarks/spawn.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import stages
from bench._common import ratio_line, testbed_session, write_results
from bench.spawn_client import Driver, percentile, slots, summary, wait_queue_empty
from bench.spawn_scale import caps_for, hub_uids, phase_over_qos, phase_scale, qos_for
from bench.spawn_summary import NOTES, OURS, STOCK, print_table, ratios, settings, table
from bench.stages import LogTail
from bench.stock_hub import StockHub
from hpcbridge.hubrun import Hub
from slurm_testbed import config, faults
from slurm_testbed.cluster import Testbed
from slurm_testbed.hub import up_hub
from slurm_testbed.profiles import site_on_testbed

FLOOR_USER = "alice"
#: HpcSpawner.status_interval, as hubrun configures it by default
STATUS_INTERVAL = 30.0
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
    site = site_on_testbed(tb)
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
            users = list(config.USERS)
            st = (runner.up_on_testbed(tb, users=users, interval=STATUS_INTERVAL)
                  if isinstance(runner, StockHub)
                  else up_hub(runner, tb, users=users, interval=STATUS_INTERVAL))
            drivers[name] = Driver(name, st["hub_url"], st["admin_token"],
                                   {"preset": "debug"} if name == OURS else {})
        yield drivers, runners
    finally:
        for runner in runners.values():
            runner.down()
        faults.cancel_all(tb)


def _stages(tail: LogTail) -> dict:
    out = stages.summarize(tail.read())
    tail.mark()
    return out


def run(tb: Testbed, args: argparse.Namespace, save) -> dict:
    data: dict = {"settings": settings(args, STATUS_INTERVAL)}
    wait_queue_empty(tb)
    data["floor"] = phase_floor(tb, args.floor_runs)
    save(data)
    with hubs(tb) as (drivers, runners):
        tail = LogTail(runners[OURS].dir / "jupyterhub.log")
        data["stages"] = {}
        data["cold"] = phase_cold(tb, drivers, args.spawns)
        data["stages"]["cold"] = _stages(tail)
        save(data)
        data["concurrent"] = phase_concurrent(tb, drivers, args.concurrent)
        data["stages"][f"concurrent {args.concurrent}"] = _stages(tail)
        save(data)
        uids = hub_uids(tb)
        data["scale"] = {}
        for name, driver in drivers.items():
            data["scale"][name] = phase_scale(
                tb, driver, runners[name], top=max(args.load_sizes), sizes=args.load_sizes,
                restart_n=args.restart, window=args.window, settle=args.settle,
                spawn_timeout=args.scale_timeout, uids=uids)
            if name == OURS:
                data["stages"][f"concurrent {max(args.load_sizes)}"] = _stages(tail)
            save(data)
        if args.over_qos:
            data["over_qos"] = {name: phase_over_qos(tb, driver, args.over_qos, args.qos_bound)
                                for name, driver in drivers.items()}
    data["ratios"] = ratios(data)
    data["summary"] = table(data)
    data["notes"] = NOTES
    return data


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true",
                   help="small sizes: 1 floor run, 3 spawns, 4 concurrent, 6 at once with load "
                        "windows at 1 and 6 (30 s) and the restart with 3, 12 over QOS")
    p.add_argument("--floor-runs", type=int, default=3)
    p.add_argument("--spawns", type=int, default=10, help="cold spawns per hub")
    p.add_argument("--concurrent", type=int, default=8)
    p.add_argument("--load-sizes", type=int, nargs="+", default=[1, 10, 50],
                   help="running servers per load window; the largest are spawned at once")
    p.add_argument("--restart", type=int, default=20, help="running servers at the restart")
    p.add_argument("--window", type=float, default=60.0, help="seconds per load window")
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--scale-timeout", type=float, default=300.0,
                   help="bound for each of the largest number of concurrent spawns")
    p.add_argument("--over-qos", type=int, default=50,
                   help="concurrent spawns with QOS normal as configured; 0: skip")
    p.add_argument("--qos-bound", type=float, default=90.0)
    return p


def nodes_for(args: argparse.Namespace) -> int:
    """Testbed nodes for the largest number of 1-core servers (8 CPUs a node), one spare."""
    return max(3, -(-max(args.load_sizes) // config.CPUS_PER_NODE) + 1)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    if args.quick:
        args.floor_runs, args.spawns, args.concurrent = 1, 3, 4
        args.load_sizes, args.restart, args.window = [1, 6], 3, 30.0
        args.over_qos, args.qos_bound, args.scale_timeout = 12, 40.0, 180.0
    return args


def bench(tb: Testbed, args: argparse.Namespace) -> dict:
    """Every phase on a running testbed; writes ``spawn.json`` (also after each phase)."""
    started = time.monotonic()
    data = run(tb, args, lambda d: write_results("spawn", {**d, "complete": False}))
    data["elapsed_s"] = round(time.monotonic() - started, 1)
    path = write_results("spawn", {**data, "complete": True})
    print_table(data["summary"])
    for label, value in data["ratios"].items():
        print(ratio_line(f"{label} =", value), flush=True)
    print(f"wrote {path.name} in {data['elapsed_s']:.0f} s")
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with testbed_session(nodes=nodes_for(args)) as tb:
        bench(tb, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One hub at scale: ``python -m bench scale [--quick]`` (writes ``docs/benchmarks/scale.json``).

Brings up a testbed of its own (``<HPCBRIDGE_TESTBED_NAME>-scale``, never the test
session's), with compute nodes that declare more CPUs than the machine has (64 each by
default), and one hpcbridge hub whose jobs run the benchmarks' stand-in server
(``HpcSpawner.bench_standin_server``, ``hpcbridge/spawner/standin.py``) instead of
JupyterLab, so that hundreds of running servers fit in a few GB. Every other part is the
product's: REST spawns, ``sbatch`` over SSH as the user, the port report, the batched
status poller, the proxy, the database.

The run ramps the running servers 50 → 100 → 250 → 500 (``--quick``: 50 → 100), spawned
in chunks of at most JupyterHub's ``concurrent_spawn_limit`` (100), and at each step,
over a window of steady state, records: slurmctld RPCs/min of the hub's accounts
(``sdiag``), the hub's RSS and CPU % (over the window, between status rounds, during
them), event-loop lag p50/p99 measured inside the hub (:mod:`bench.hub_probe`), the
proxy's route count and RSS, the database size, the compute nodes' memory, and
batchspawner's load at that N: its per-server ``squeue -j`` round
(:func:`bench.poller_load.per_job_round`) measured up to ``--batchspawner-max`` servers
and computed (labelled so) beyond from the per-server rate measured. Then every server
is stopped and a burst of 100 concurrent spawns is timed (all ready? time to all ready,
p50/p95, the per-stage breakdown from the hub log's ``spawn stages:`` lines).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import scale_measure as m
from bench import stages
from bench._common import write_results
from bench.spawn_client import Driver, left_after, percentile, slots, summary, wait_queue_empty
from bench.spawn_scale import ORPHAN_WAIT, caps_for, hub_uids, qos_for
from hpcbridge.hubrun import Hub
from slurm_testbed.cluster import Testbed, testbed_name
from slurm_testbed.engine import REPO
from slurm_testbed.hub import up_hub

SIZES = (50, 100, 250, 500)
QUICK_SIZES = (50, 100)
#: JupyterHub's default ``concurrent_spawn_limit``, set explicitly on the benchmark's hub
BURST = 100
STATUS_INTERVAL = 30.0
#: a request the testbed profile allows for hours (debug's limit is 30 minutes)
OPTIONS = {"partition": "regular", "cores": 1, "memory": "1G", "walltime": "02:00:00"}
USERS = ("alice", "bob")
PUBLIC_PORT, HUB_PORT = 8500, 8581
PROBE_CONFIG = '''
# bench/scale.py: measuring inside the hub, stand-in servers (benchmarks only)
import sys as _sys
_sys.path.insert(0, {repo!r})
from bench import hub_probe as _probe
_probe.start({probe!r})
c.HpcSpawner.bench_standin_server = True
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.JupyterHub.concurrent_spawn_limit = {limit!r}
'''


@contextlib.contextmanager
def scale_testbed(args: argparse.Namespace) -> Iterator[Testbed]:
    """The benchmark's own testbed, with enough declared CPUs for the largest step."""
    name = args.testbed or f"{testbed_name()}-scale"
    tb = Testbed(name=name, cpus_per_node=args.cpus_per_node)
    need = max(max(args.sizes), args.burst)
    nodes = max(1, -(-need // args.cpus_per_node))
    if tb.reusable() and (len(tb.info().nodes) < nodes or _declared_cpus(tb) < args.cpus_per_node):
        tb.progress("up with fewer nodes or CPUs than this run needs; starting it again")
        tb.down()
    tb.up(nodes=nodes)
    try:
        yield tb
    finally:
        if not args.keep:
            tb.down()


def _declared_cpus(tb: Testbed) -> int:
    out = tb.exec("ctl", ["sinfo", "-h", "-N", "-o", "%c"], timeout=30).stdout.decode()
    return min((int(v) for v in out.split() if v.isdigit()), default=0)


def _offset() -> int:
    return int(os.environ.get("HPCBRIDGE_TEST_PORT_OFFSET", "0"))


class ScaleHub:
    """The benchmark's hub, with the probe and what is read from it."""

    def __init__(self, tb: Testbed, folder: Path) -> None:
        self.hub = Hub(folder / "hub", public_port=PUBLIC_PORT + _offset(),
                       hub_port=HUB_PORT + _offset())
        self.probe = folder / "probe.log"
        self.proxy_token = secrets.token_hex(32)
        extra = PROBE_CONFIG.format(repo=str(REPO), probe=str(self.probe),
                                    proxy_token=self.proxy_token, limit=BURST)
        status = up_hub(self.hub, tb, users=list(USERS), interval=STATUS_INTERVAL,
                        extra_config=extra)
        self.driver = Driver("hpcbridge", status["hub_url"], status["admin_token"], OPTIONS)
        pid = m.pid_in(self.hub.pidfile)
        assert pid is not None, "the hub runs (up_hub waited for it)"
        self.pid = pid

    def facts(self) -> dict:
        proxy = m.pid_in(self.hub.dir / "jupyterhub-proxy.pid")
        return {"hub_rss_mib": m.rss_mib(self.pid),
                "proxy_rss_mib": m.rss_mib(proxy) if proxy else None,
                "proxy_routes": m.route_count(self.hub.proxy_api_url, self.proxy_token),
                "db_kib": m.file_kib(self.hub.dir / "jupyterhub.sqlite")}


def spawn_chunks(driver: Driver, pairs: list[tuple[str, str]], timeout: float) -> list:
    """Spawn ``pairs``, at most ``BURST`` at once (JupyterHub answers 429 beyond)."""
    out = []
    for i in range(0, len(pairs), BURST):
        out += driver.spawn_many(pairs[i:i + BURST], timeout=timeout)
    return out


def step(tb: Testbed, sh: ScaleHub, n: int, args: argparse.Namespace,
         uids: dict[str, int], per_server: list[float]) -> dict:
    """One step's figures with ``n`` servers running (``per_server``: batchspawner's
    measured RPC/min per server, filled by the measured steps)."""
    time.sleep(args.settle)
    jobs = m.server_jobs(tb)
    window = m.hub_window(tb, sh.pid, sh.probe, args.window, uids)
    row = {"n": n, "running_jobs": len(jobs), "load_avg_1m": round(os.getloadavg()[0], 2),
           **sh.facts(), "nodes": m.node_memory_mib(tb), **window}
    if len(jobs) < n:  # a server that was ready has gone: say which job ended, and how
        row["ended_jobs"] = m.ended_server_jobs(tb)
        row["ended_jobs_hub_log"] = m.log_lines_about(
            sh.hub.dir / "jupyterhub.log", [r["job"] for r in row["ended_jobs"]])
        print(f"n={n}: {n - len(jobs)} fewer jobs running than servers spawned; ended: "
              f"{row['ended_jobs']}", flush=True)
    if len(jobs) <= args.batchspawner_max:
        row["batchspawner"] = m.batchspawner_round(tb, jobs, uids)
        per_server.append(row["batchspawner"]["rpc_per_server_per_min"] or 0.0)
    elif per_server:
        row["batchspawner"] = m.batchspawner_computed(len(jobs), max(per_server))
    _print_step(row)
    return row


def burst(tb: Testbed, sh: ScaleHub, caps: dict[str, int], n: int, timeout: float) -> dict:
    """``n`` spawns at once on a hub with no server running."""
    pairs = slots(n, caps, "b")
    tail = stages.LogTail(sh.hub.dir / "jupyterhub.log")
    started = time.monotonic()
    spawns = sh.driver.spawn_many(pairs, timeout=timeout)
    rows = stages.parse(tail.read())
    names = list(dict.fromkeys(name for r in rows for name in r["stages"]))
    per_stage = {name: {"p50_s": percentile([r["stages"][name] for r in rows
                                             if name in r["stages"]], 50),
                        "p95_s": percentile([r["stages"][name] for r in rows
                                             if name in r["stages"]], 95)} for name in names}
    result = {**summary(spawns), "concurrent_spawn_limit": BURST, "bound_s": timeout,
              "all_ready": all(s.outcome == "ready" for s in spawns),
              "time_to_all_ready_s": round(time.monotonic() - started, 1)
              if all(s.outcome == "ready" for s in spawns) else None,
              "stages_logged": len(rows), "stages": per_stage,
              "not_ready": [s.row() for s in spawns if s.outcome != "ready"][:10],
              "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(f"burst of {n}: {result['outcomes']}, all ready after "
          f"{result['time_to_all_ready_s']} s, p50 {result['p50_s']} s, p95 "
          f"{result['p95_s']} s; stages {per_stage}", flush=True)
    return {**result, "after_stop": stop_every_server(tb, sh, pairs)}


def run(tb: Testbed, args: argparse.Namespace) -> dict:
    uids = hub_uids(tb)
    caps = caps_for(max(max(args.sizes), args.burst))
    per_server: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        sh = ScaleHub(tb, Path(folder))
        try:
            time.sleep(args.settle)
            idle = {**sh.facts(), **m.hub_window(tb, sh.pid, sh.probe, args.window / 2, uids)}
            steps, running = [], []
            pairs = slots(max(args.sizes), caps, "s")
            with qos_for(tb, running=max(caps.values())):
                try:
                    for n in sorted(args.sizes):
                        new = pairs[len(running):n]
                        spawns = spawn_chunks(sh.driver, new, args.spawn_timeout)
                        running += new
                        steps.append({**step(tb, sh, n, args, uids, per_server),
                                      "spawned": {**summary(spawns), "not_ready": [
                                          r.row() for r in spawns if r.outcome != "ready"
                                      ][:10]}})
                finally:
                    after_ramp = stop_every_server(tb, sh, running)
                burst_result = burst(tb, sh, caps, args.burst, args.spawn_timeout)
        finally:
            errors = log_errors(sh.hub.dir / "jupyterhub.log")
            sh.hub.down()
    return {"idle": idle, "steps": steps, "after_ramp": after_ramp, "burst": burst_result,
            "hub_log_errors": errors}


def stop_every_server(tb: Testbed, sh: ScaleHub, pairs: list[tuple[str, str]]) -> dict:
    """Stop ``pairs`` through the hub; what is left: servers the hub still lists, and jobs
    still queued or running once the hub answered every stop (then cancelled by hand)."""
    stuck = sh.driver.stop_servers(pairs, timeout=600)
    left = left_after(tb, ORPHAN_WAIT)
    wait_queue_empty(tb, 5)  # cancels them
    if left:
        print(f"{len(left)} jobs still queued or running after every stop: {left}", flush=True)
    return {"servers_not_stopped": len(stuck), "jobs_left_after_stop": left}


def log_errors(log: Path, keep: int = 12) -> dict:
    """How many ERROR lines the hub logged, and the first few (the log itself goes away
    with the run's folder)."""
    lines = [line for line in log.read_text(errors="replace").splitlines()
             if line.startswith("[E ")] if log.exists() else []
    return {"count": len(lines), "first": [line[:300] for line in lines[:keep]]}


def derived(data: dict) -> dict:
    """Per-server growth of the hub's RSS (from no server to the largest step)."""
    steps = [s for s in data["steps"] if s.get("hub_rss_mib")]
    base = data["idle"].get("hub_rss_mib")
    if not steps or not base:
        return {}
    top = steps[-1]
    return {"hub_rss_per_server_mib": round((top["hub_rss_mib"] - base) / top["n"], 3),
            "node_rss_per_server_mib": round(top["nodes"]["rss_mib"] / top["n"], 1)}


NOTES = (
    "Stand-in servers (hpcbridge/spawner/standin.py) instead of JupyterLab: everything the "
    "hub does is the product's (REST spawn, sbatch over SSH as the user, port report, "
    "batched status poller, proxy, SQLite database); what a real JupyterLab costs on its "
    "node is not in these figures.",
    "slurmctld RPCs/min: sdiag counters of the hub's accounts over each step's window "
    "(status interval 30 s, as the product's default).",
    "Hub CPU %: the hub process's CPU time (/proc) over the window; 'during polls' is its "
    "CPU time inside StatusPoller.poll_once over that call's wall time, and 'between "
    "polls' the rest. Event-loop lag: a task inside the hub asks to run every 20 ms and "
    "records how late it runs (bench/hub_probe.py), over the window and during polls.",
    "batchspawner: one round of its per-server query (squeue -j ID as the owner, "
    "bench/poller_load.py's per_job_round) for every running server, x2 for its 30 s "
    "poll_interval; measured up to --batchspawner-max servers, computed (labelled "
    "computed) beyond from the highest per-server rate measured.",
    "Burst: JupyterHub's concurrent_spawn_limit (default 100, set explicitly) answers 429 "
    "to spawns beyond it while 100 are pending, so the ramp spawns in chunks of 100 and "
    "the burst is exactly 100.",
    "The machine is small and shared: the 1-minute load average is recorded at each step.",
)


def _running(step: dict) -> str:
    n, jobs = step["n"], step.get("running_jobs", step["n"])
    return f"{n} running" if jobs == n else f"{n} ({jobs}) running"


def summary_rows(data: dict) -> list[dict]:
    """Rows for docs/benchmarks.md's overview: per step and for the burst."""
    rows: list[dict] = []
    for s in data["steps"]:
        ours = s["slurmctld"]["rpc_per_min"]
        bs = s.get("batchspawner") or {}
        theirs = bs.get("rpc_per_min_at_30s")
        label = " (batchspawner computed)" if bs.get("computed") else ""
        rows.append({"measure": f"scale: slurmctld RPCs/min, {_running(s)}{label}",
                     "hpcbridge": ours, "batchspawner": theirs,
                     "ratio": round(theirs / ours, 1) if ours and theirs else None,
                     "ratio_is": "batchspawner/hpcbridge"})
    for s in data["steps"]:
        lag = s["loop_lag"]
        rows.append({"measure": f"scale: {_running(s)}: hub RSS MiB / CPU % during a "
                                f"poll / loop lag p99 ms (during polls)",
                     "hpcbridge": f"{s['hub_rss_mib']} / "
                                  f"{s['hub_cpu_percent']['during_polls']} / "
                                  f"{lag['all']['p99_ms']} ({lag['during_polls']['p99_ms']})"})
    b = data["burst"]
    ready = b["outcomes"].get("ready", 0)
    others = ", ".join(f"{v} {k}" for k, v in b["outcomes"].items() if k != "ready")
    rows.append({"measure": f"scale: burst of {b['n']} spawns: ready / time to all ready s "
                            f"/ p95 s of those ready",
                 "hpcbridge": f"{ready} of {b['n']}{f' ({others})' if others else ''} / "
                              f"{b['time_to_all_ready_s'] or 'not all'} / {b['p95_s']}"})
    return rows


def _print_step(r: dict) -> None:
    bs = r.get("batchspawner", {})
    print(f"n={r['n']} ({r['running_jobs']} jobs): {r['slurmctld']['rpc_per_min']} RPC/min; "
          f"hub RSS {r['hub_rss_mib']} MiB, CPU {r['hub_cpu_percent']}; loop lag "
          f"{r['loop_lag']['all']['p50_ms']}/{r['loop_lag']['all']['p99_ms']} ms "
          f"(p50/p99); routes {r['proxy_routes']}; db {r['db_kib']} KiB; nodes "
          f"{r['nodes']['rss_mib']} MiB; batchspawner {bs.get('rpc_per_min_at_30s')}/min"
          f"{' (computed)' if bs.get('computed') else ''}; load {r['load_avg_1m']}",
          flush=True)
    stalls = r.get("stalls", {})
    for s in stalls.get("longest", [])[:3]:
        print(f"  loop away {s['ms']} ms ({s['cpu_ms']} ms CPU after it was seen; "
              f"{stalls['count']} stalls in all): {s['stack'][:200]}", flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="50 and 100 servers (≤ 10 minutes)")
    p.add_argument("--sizes", type=int, nargs="+", help="running servers at each step")
    p.add_argument("--burst", type=int, default=BURST,
                   help=f"concurrent spawns of the burst (at most {BURST})")
    p.add_argument("--cpus-per-node", type=int, default=64)
    p.add_argument("--window", type=float, help="seconds of steady state measured per step")
    p.add_argument("--settle", type=float, default=10.0)
    p.add_argument("--spawn-timeout", type=float, default=600.0)
    p.add_argument("--batchspawner-max", type=int, default=100,
                   help="measure batchspawner's queries up to this many servers, compute beyond")
    p.add_argument("--testbed", help="testbed name (default: <HPCBRIDGE_TESTBED_NAME>-scale)")
    p.add_argument("--keep", action="store_true", help="leave the testbed up afterwards")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    args.window = args.window or (45.0 if args.quick else 60.0)
    started = time.monotonic()
    with scale_testbed(args) as tb:
        facts = {"testbed_nodes": len(tb.info().nodes), "cpus_per_node": args.cpus_per_node,
                 "load_avg_1m_at_start": round(os.getloadavg()[0], 2)}
        data = run(tb, args)
    data = {**facts, "quick": args.quick, "sizes": args.sizes,
            "status_interval_s": STATUS_INTERVAL, "window_s": args.window,
            "options": OPTIONS, "summary": summary_rows(data), "notes": list(NOTES),
            **data, "derived": derived(data),
            "elapsed_s": round(time.monotonic() - started, 1)}
    path = write_results("scale", data)
    print(f"wrote {path.name} in {data['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

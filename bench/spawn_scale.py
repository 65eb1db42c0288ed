"""Many servers on one hub (for :mod:`bench.spawn`): 50 spawned at once, the scheduler
load with 50, 10 and 1 running, a hub restart with 20, and 50 spawns over QOS limits.

Per hub, one sequence that reuses the servers it starts: 50 concurrent spawns (QOS raised
so every one may run; that many 1-core servers need ≥7 testbed nodes), a window of
slurmctld RPCs with all of them running, then servers are stopped down to 20 for the hub
restart (SIGKILL, start again, until all 20 are ready again) and down to 10 and 1 for
the other windows. Stopping is settled before each window, so a window counts only the
hub's steady-state queries.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator

from bench.spawn_client import Driver, left_after, queue, slots, summary, wait_queue_empty
from hpcbridge.hubrun import Hub
from slurm_testbed import config, faults
from slurm_testbed.cluster import Testbed

HUB_ACCOUNTS = ("hpcbridge", *config.USERS)  # whose RPCs are the hubs' (not root's)
#: seconds for the hub to stop every server, and then for their jobs to leave the queue
STOP_BOUND = 120.0
ORPHAN_WAIT = 30.0


def caps_for(n: int) -> dict[str, int]:
    """Servers per user for ``n`` at once, alice and bob (carol's small core-minute budget
    would run out over a few benchmark runs and leave her server queued)."""
    return {"alice": -(-n // 2), "bob": n // 2}


@contextlib.contextmanager
def qos_for(tb: Testbed, running: int = 0, submitted: int = 0) -> Iterator[None]:
    """Raise QOS normal only as far as ``running`` and ``submitted`` jobs per user need;
    the testbed's values come back afterwards."""
    limits = {}
    if running > config.QOS_MAX_JOBS_PER_USER:
        limits["MaxJobsPerUser"] = running
    if max(running, submitted) > config.QOS_MAX_SUBMIT_PER_USER:
        limits["MaxSubmitJobsPerUser"] = max(running, submitted)
    with faults.qos_limits(tb, **limits) if limits else contextlib.nullcontext():
        yield


def hub_uids(tb: Testbed) -> dict[str, int]:
    """uids of the hubs' accounts (slurmctld may know ``hpcbridge`` only by uid)."""
    return {u: int(tb.exec("login", ["id", "-u", u], check=True).stdout)
            for u in HUB_ACCOUNTS}


def rpcs(stats: faults.RpcStats, seconds: float, uids: dict[str, int]) -> dict:
    per = {u: n for u in HUB_ACCOUNTS if (n := stats.user(u, uids[u]))}
    hub = sum(per.values())
    return {"seconds": round(seconds, 1), "hub_rpcs": hub,
            "rpc_per_min": round(hub * 60 / seconds, 1) if seconds else None,
            "hub_rpcs_by_account": per,
            "all_rpcs": stats.total - stats.by_type.get("REQUEST_STATS_INFO", 0),
            "by_type": {k: v for k, v in stats.by_type.items() if k != "REQUEST_STATS_INFO"}}


def rpc_window(tb: Testbed, seconds: float, uids: dict[str, int]) -> dict:
    """slurmctld RPCs of the hub accounts (and all) over ``seconds`` of steady state."""
    faults.reset_rpc_stats(tb)
    time.sleep(seconds)
    return rpcs(faults.rpc_stats(tb), seconds, uids)


def measure_restart(tb: Testbed, driver: Driver, hub: Hub, pairs: list[tuple[str, str]],
                    uids: dict[str, int]) -> dict:
    hub.kill(signal.SIGKILL)
    faults.reset_rpc_stats(tb)
    started = time.monotonic()
    hub.restart()
    answering = time.monotonic() - started
    driver.wait_all_ready(pairs, timeout=300)
    seconds = time.monotonic() - started
    r = rpcs(faults.rpc_stats(tb), seconds, uids)
    result = {"n": len(pairs), "hub_answers_s": round(answering, 2),
              "all_ready_s": round(seconds, 2), "hub_rpcs": r["hub_rpcs"],
              "hub_rpcs_by_account": r["hub_rpcs_by_account"], "by_type": r["by_type"]}
    print(f"restart {driver.name} with {len(pairs)} servers: all ready after "
          f"{result['all_ready_s']} s (hub answered at {result['hub_answers_s']} s), "
          f"{result['hub_rpcs']} slurmctld RPCs", flush=True)
    return result


def _ready_pairs(driver: Driver, pairs: list[tuple[str, str]], wait: float
                 ) -> list[tuple[str, str]]:
    """Those of ``pairs`` ready, after waiting up to ``wait`` s for late ones."""
    deadline = time.monotonic() + wait
    while True:
        models = {u: driver.api.request("GET", f"/users/{u}").json()
                  for u in {u for u, _ in pairs}}
        ready = [(u, s) for u, s in pairs
                 if models[u].get("servers", {}).get(s, {}).get("ready")]
        if len(ready) == len(pairs) or time.monotonic() > deadline:
            return ready
        time.sleep(1)


def phase_scale(tb: Testbed, driver: Driver, hub: Hub, *, top: int, sizes: list[int],
                restart_n: int, window: float, settle: float, spawn_timeout: float,
                uids: dict[str, int]) -> dict:
    """``top`` concurrent spawns, then windows at ``sizes`` and the restart at
    ``restart_n``, stopping servers on the way down."""
    caps = caps_for(top)
    pairs = slots(top, caps, "l")
    out: dict = {"windows": [], "restart": None}
    with qos_for(tb, max(caps.values())):
        running = pairs
        try:
            spawns = driver.spawn_many(pairs, timeout=spawn_timeout)
            out["concurrent"] = {"n": top, "bound_s": spawn_timeout, **summary(spawns),
                                 "runs": [s.row() for s in spawns]}
            c = out["concurrent"]
            print(f"{top} concurrent {driver.name}: {c['outcomes']}, p50 {c['p50_s']} s, "
                  f"p95 {c['p95_s']} s", flush=True)
            running = _ready_pairs(driver, pairs, wait=120)
            late = [p for p in pairs if p not in running]
            if late:  # never ready: out of the way, so the windows count steady servers
                driver.stop_all(tb, late, leave=len(running))
            for nominal in sorted({*sizes, restart_n}, reverse=True):
                n = min(nominal, len(running))
                if n < len(running):
                    driver.stop_all(tb, running[n:], leave=n)
                    running = running[:n]
                time.sleep(settle)
                if nominal == restart_n:
                    out["restart"] = {**measure_restart(tb, driver, hub, running, uids),
                                      "n": nominal, "running": n}
                    time.sleep(settle)
                if nominal in sizes:
                    w = rpc_window(tb, window, uids)
                    out["windows"].append({"n": nominal, "running": n, **w})
                    print(f"load {driver.name} n={n}: {w['hub_rpcs']} RPCs in {window:.0f} s"
                          f" = {w['rpc_per_min']}/min {w['by_type']}", flush=True)
        finally:
            driver.stop_all(tb, pairs, timeout=180)
    out["windows"].sort(key=lambda w: w["n"])
    return out


def phase_over_qos(tb: Testbed, driver: Driver, n: int, timeout: float) -> dict:
    """``n`` spawns at once with QOS normal as configured (4 running per user); only the
    submit limit is raised, so every job is accepted and the rest wait queued."""
    per_user = -(-n // len(config.USERS))
    pairs = slots(n, dict.fromkeys(config.USERS, per_user), "m")
    left: list[str] = []
    stuck: list[tuple[str, str]] = []
    with qos_for(tb, submitted=per_user):
        try:
            spawns = driver.spawn_many(pairs, timeout=timeout)
            jobs = queue(tb)
        finally:
            stuck = driver.stop_servers(pairs, timeout=STOP_BOUND)
            # jobs still queued or running after the hub was told to stop every server
            left = left_after(tb, ORPHAN_WAIT)
            wait_queue_empty(tb, 5)  # cancels them
    reasons: dict[str, int] = {}
    for line in jobs:
        _, state, reason, _ = line.split(" ", 3)
        key = f"{state} ({reason})" if state == "PENDING" else state
        reasons[key] = reasons.get(key, 0) + 1
    wrong = [s.row() for s in spawns if s.outcome in ("failed", "refused")]
    messages: dict[str, int] = {}
    for s in spawns:
        if s.outcome != "ready" and s.message:
            messages[s.message[:120]] = messages.get(s.message[:120], 0) + 1
    result = {"n": n, "bound_s": timeout, **summary(spawns), "jobs_at_bound": reasons,
              "servers_not_stopped": len(stuck), "jobs_left_after_stop": len(left),
              "stop_bound_s": STOP_BOUND, "wrong_failures": wrong,
              "last_messages_not_ready": messages,
              "qos": {"MaxJobsPerUser": config.QOS_MAX_JOBS_PER_USER,
                      "MaxSubmitJobsPerUser": max(per_user, config.QOS_MAX_SUBMIT_PER_USER)}}
    print(f"{n} over QOS {driver.name}: {result['outcomes']} within {timeout:.0f} s, "
          f"jobs {reasons}, ready p50 {result['p50_s']} s p95 {result['p95_s']} s, "
          f"{len(stuck)} servers not stopped in {STOP_BOUND:.0f} s, {len(left)} jobs left",
          flush=True)
    return result

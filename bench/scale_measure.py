"""What :mod:`bench.scale` reads at each step: the hub's process, its proxy, its database,
the compute nodes' memory, slurmctld's RPCs, and batchspawner's per-server queries.

Hub CPU and memory come from ``/proc`` (the hub runs on this host): CPU % over a window
is the process's user+system time over the window's wall time; RSS is ``VmRSS``. Loop
lag and each status round's CPU come from inside the hub (:mod:`bench.hub_probe`).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import requests

from bench import hub_probe
from bench.poller_load import per_job_round
from bench.spawn_client import percentile
from bench.spawn_scale import rpcs
from slurm_testbed import config, faults
from slurm_testbed.cluster import Testbed
from slurm_testbed.profiles import site_on_testbed

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def pid_in(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def route_count(proxy_api: str, token: str) -> int | None:
    """Routes of configurable-http-proxy (one per running server, plus the hub's)."""
    try:
        r = requests.get(f"{proxy_api}/api/routes", timeout=30,
                         headers={"Authorization": f"token {token}"})
        r.raise_for_status()
        return len(r.json())
    except (requests.RequestException, ValueError):
        return None


def file_kib(path: Path) -> float | None:
    try:
        return round(path.stat().st_size / 1024, 1)
    except OSError:
        return None


def node_memory_mib(tb: Testbed) -> dict:
    """RSS of everything on the compute nodes (stand-in servers, slurmstepd, slurmd)."""
    total, processes = 0, 0
    for node in tb.info().nodes:
        out = tb.exec(node, ["ps", "-e", "-o", "rss="], timeout=60).stdout.decode()
        values = [int(v) for v in out.split() if v.isdigit()]
        total += sum(values)
        processes += len(values)
    return {"rss_mib": round(total / 1024, 1), "processes": processes}


def lag_summary(lags: list[float]) -> dict:
    return {"p50_ms": percentile(lags, 50), "p99_ms": percentile(lags, 99),
            "max_ms": round(max(lags), 2) if lags else None, "samples": len(lags)}


def hub_window(tb: Testbed, hub_pid: int, probe: Path, seconds: float,
               uids: dict[str, int]) -> dict:
    """Over ``seconds`` of steady state: slurmctld RPCs of the hub's accounts, hub CPU %
    (all of it, between polls, during polls), loop lag (all, during polls), the polls."""
    faults.reset_rpc_stats(tb)
    since, cpu0, wall0 = time.time(), cpu_seconds(hub_pid), time.monotonic()
    time.sleep(seconds)
    cpu, wall, until = cpu_seconds(hub_pid) - cpu0, time.monotonic() - wall0, time.time()
    load = rpcs(faults.rpc_stats(tb), wall, uids)
    lags, polls = hub_probe.read(probe, since, until)
    in_poll = [lag for at, lag in lags
               if any(p["at"] <= at <= p["at"] + p["wall_s"] for p in polls)]
    poll_wall = sum(p["wall_s"] for p in polls)
    poll_cpu = sum(p["cpu_s"] for p in polls)
    idle_wall = wall - poll_wall
    return {
        "seconds": round(wall, 1),
        "slurmctld": {k: load[k] for k in ("hub_rpcs", "rpc_per_min", "hub_rpcs_by_account",
                                           "by_type")},
        "hub_cpu_percent": {
            "window": round(100 * cpu / wall, 1),
            "between_polls": round(100 * (cpu - poll_cpu) / idle_wall, 1)
            if idle_wall > 0 else None,
            "during_polls": round(100 * poll_cpu / poll_wall, 1) if poll_wall else None},
        "loop_lag": {"all": lag_summary([lag for _, lag in lags]),
                     "during_polls": lag_summary(in_poll)},
        "polls": [{k: round(v, 4) if isinstance(v, float) else v for k, v in p.items()
                   if k != "at"} for p in polls],
        "stalls": stall_summary(hub_probe.read_stalls(probe, since, until)),
    }


def stall_summary(stalls: list[dict], keep: int = 5) -> dict:
    """How often the loop stayed away over 100 ms, and the longest times with where it was
    and how much CPU the hub used meanwhile."""
    longest = sorted(stalls, key=lambda s: -s["ms"])[:keep]
    return {"count": len(stalls), "total_ms": round(sum(s["ms"] for s in stalls), 1),
            "longest": [{"ms": s["ms"], "cpu_ms": s["cpu_ms"], "stack": s["stack"][:400]}
                        for s in longest]}


def server_jobs(tb: Testbed) -> dict[str, str]:
    """job id -> owner of the hub's running notebook jobs."""
    out = tb.exec("ctl", ["squeue", "-h", "-t", "RUNNING", "-o", "%i %u %j"],
                  timeout=60).stdout.decode()
    return {job: user for job, user, name in (line.split(maxsplit=2)
                                              for line in out.splitlines() if line.strip())
            if name.startswith("hpcb-nb")}


def ended_server_jobs(tb: Testbed, keep: int = 10) -> list[dict]:
    """The hub's notebook jobs accounting has as ended, each with its state, exit code,
    node and run time: why a server that was ready is no longer running."""
    out = tb.exec("ctl", ["sacct", "-a", "-X", "-n", "-P", "-S", "now-2hours", "-o",
                          "JobID,User,JobName,State,ExitCode,NodeList,Elapsed"],
                  timeout=60).stdout.decode()
    rows = [dict(zip(("job", "user", "name", "state", "exit", "node", "elapsed"),
                     line.split("|"), strict=False)) for line in out.splitlines() if line]
    return [r for r in rows if r.get("name", "").startswith("hpcb-nb")
            and r.get("state") not in ("RUNNING", "PENDING")][:keep]


def log_lines_about(log: Path, job_ids: list[str], keep: int = 20) -> list[str]:
    """The last ``keep`` lines of the hub's log that name one of ``job_ids``."""
    if not job_ids:
        return []
    named = re.compile(r"\b(?:job |job_id=)(?:" + "|".join(map(re.escape, job_ids)) + r")\b")
    lines = log.read_text(errors="replace").splitlines()
    return [line[:300] for line in lines if named.search(line)][-keep:]


def batchspawner_round(tb: Testbed, jobs: dict[str, str], uids: dict[str, int]) -> dict:
    """One round of batchspawner's per-server query (``squeue -j ID`` as the owner, as
    :mod:`bench.poller_load` measures it) for every running server: slurmctld RPCs of
    the owners, and per minute at its 30 s ``poll_interval``."""
    async def run() -> None:
        site = site_on_testbed(tb)
        try:
            await per_job_round(site.client("tb"), jobs)
        finally:
            await site.close()

    faults.reset_rpc_stats(tb)
    started = time.monotonic()
    asyncio.run(run())
    seconds = time.monotonic() - started
    stats = faults.rpc_stats(tb)
    owners = sum(stats.user(u, uids[u]) for u in config.USERS if u in uids)
    return {"n": len(jobs), "measured": True, "round_s": round(seconds, 1),
            "rpcs_per_round": owners, "rpc_per_min_at_30s": owners * 2,
            "rpc_per_server_per_min": round(owners * 2 / len(jobs), 2) if jobs else None}


def batchspawner_computed(n: int, per_server: float) -> dict:
    """batchspawner at ``n`` servers, computed from the per-server rate measured below."""
    return {"n": n, "measured": False, "computed": True,
            "rpc_per_min_at_30s": round(per_server * n, 1), "rpc_per_server_per_min": per_server}


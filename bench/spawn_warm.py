"""Warm-pool spawn latency: a spawn handed a pre-started job vs a cold spawn, same hub.

One hpcbridge hub runs the bundled testbed profile with a warm pool for the ``debug``
preset. Each round, alternating users:

- **cold**: the admin API spawns ``{"preset": "debug"}`` for a user who has not logged
  in since her last server (no warm job exists): submit, queue, node start-up, imports;
- **warm**: the user logs in (which starts her warm job), the job is waited for until
  its launcher waits at the hub, then the same spawn is timed.

A spawn is timed from the ``POST`` to the hub reporting the server ready (see
:mod:`bench.spawn_client`), the same clock as bench/spawn.py's stock batchspawner
figures. Goal (issue D): warm p50 ≤ 1 s. Per-stage times come from the hub log.

    python -m bench.spawn_warm [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import stages
from bench._common import ratio_line, testbed_session, write_results
from bench.spawn_client import Driver, percentile, wait_queue_empty
from slurm_testbed.cluster import Testbed
from slurm_testbed.hub import up_hub

USERS = ("alice", "bob")  # carol's small core-minute budget is for limit tests
PRESET = "debug"
PORTS = (8600, 8681)


def warm_profile(directory: Path, max_idle: str = "00:05:00", presets: str = PRESET) -> Path:
    """The bundled testbed profile with a warm pool, written into ``directory``."""
    from slurm_testbed.profiles import bundled_profile_text

    text = bundled_profile_text("testbed")
    head, sep, tail = text.partition("\nhub:\n")
    if not sep:
        raise ValueError("the bundled profile has no hub section")
    first, _, rest = tail.partition("\n")
    pool = (f"  warm_pool:\n    presets: [{presets}]\n    per_user: 1\n    max_jobs: 4\n"
            f"    max_idle: \"{max_idle}\"\n")
    path = directory / "testbed-warm.yaml"
    path.write_text(f"{head}{sep}{first}\n{pool}{rest}")
    return path


def login(url: str, user: str, password: str) -> requests.Session:
    """Log in through the hub's login form, as a browser would (starts warm jobs)."""
    session = requests.Session()
    session.get(f"{url}/hub/login", timeout=30)
    r = session.post(f"{url}/hub/login", timeout=60, allow_redirects=False, data={
        "username": user, "password": password, "_xsrf": session.cookies.get("_xsrf", "")})
    if r.status_code != 302:
        raise RuntimeError(f"login of {user} failed: HTTP {r.status_code}")
    return session


def warm_jobs(tb: Testbed, user: str) -> list[list[str]]:
    out = tb.login_exec(user, ["squeue", "-h", "-u", user, "-o", "%i|%j|%T"]).stdout.decode()
    return [row.split("|") for row in out.splitlines()
            if row.split("|")[1].startswith("hpcb-warm-")]


def wait_warm_ready(tb: Testbed, user: str, timeout: float = 120) -> str:
    """The id of the user's running warm job once its launcher waits at the hub."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job_id, name, state in warm_jobs(tb, user):
            log = f"/home/{user}/.hpcbridge/logs/{name}-{job_id}.log"
            text = tb.login_exec(user, ["cat", log]).stdout.decode(errors="replace")
            if state == "RUNNING" and "waiting for its user's spawn" in text:
                return job_id
        time.sleep(0.5)
    raise RuntimeError(f"no warm job of {user} ready in {timeout} s: {warm_jobs(tb, user)}")


def _spawn_once(driver: Driver, tb: Testbed, user: str) -> tuple[float | None, str]:
    result = driver.spawn(user, timeout=180)
    job = driver.api.server(user).get("state", {}).get("job_id", "")
    driver.stop_servers([(user, "")])
    wait_queue_empty(tb, timeout=120)
    return (result.seconds if result.outcome == "ready" else None), job


def run(tb: Testbed, rounds: int) -> dict:
    from hpcbridge.hubrun import Hub
    from slurm_testbed import config

    cold: list[float] = []
    warm: list[float] = []
    misses = 0
    with tempfile.TemporaryDirectory(prefix="hpcb-warm-bench-") as tmp:
        directory = Path(tmp)
        hub = Hub(directory / "hub", public_port=PORTS[0], hub_port=PORTS[1])
        status = up_hub(hub, tb, users=list(config.USERS), interval=30.0,
                                   site=str(warm_profile(directory)))
        log = stages.LogTail(directory / "hub" / "jupyterhub.log")
        try:
            driver = Driver("hpcbridge-warm", status["hub_url"], status["admin_token"],
                            {"preset": PRESET})
            wait_queue_empty(tb, timeout=120)
            cold_log, warm_log = [], []
            for i in range(rounds):
                user = USERS[i % len(USERS)]
                log.mark()
                seconds, _ = _spawn_once(driver, tb, user)
                cold_log.append(log.read())
                if seconds is not None:
                    cold.append(seconds)
                login(status["hub_url"], user, status["users"][user])
                job = wait_warm_ready(tb, user)
                log.mark()
                seconds, served_by = _spawn_once(driver, tb, user)
                warm_log.append(log.read())
                if served_by != job:
                    misses += 1  # not handed the warm job: not a warm figure
                elif seconds is not None:
                    warm.append(seconds)
                print(f"round {i + 1}/{rounds} ({user}): cold {cold[-1] if cold else '-'} s, "
                      f"warm {warm[-1] if warm else '-'} s", flush=True)
        finally:
            hub.down()
            for user in USERS:
                tb.login_exec(user, ["scancel", "-u", user])
    p50 = {name: percentile(values, 50) for name, values in (("cold", cold), ("warm", warm))}
    return {
        "rounds": rounds, "preset": PRESET, "misses": misses,
        "cold": {"n": len(cold), "p50_s": p50["cold"], "p95_s": percentile(cold, 95),
                 "seconds": cold, "stages": stages.summarize("".join(cold_log))},
        "warm": {"n": len(warm), "p50_s": p50["warm"], "p95_s": percentile(warm, 95),
                 "seconds": warm, "stages": stages.summarize("".join(warm_log))},
        "ratio_warm_over_cold": (round(p50["warm"] / p50["cold"], 3)
                                 if p50["warm"] and p50["cold"] else None),
        "goal": "warm p50 <= 1 s",
        "goal_met": bool(p50["warm"] is not None and p50["warm"] <= 1.0),
        "mean_warm_s": round(statistics.mean(warm), 3) if warm else None,
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.spawn_warm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=10, help="cold+warm spawn pairs (10)")
    p.add_argument("--quick", action="store_true", help="4 rounds")
    return p


def bench(tb: Testbed, args: argparse.Namespace) -> dict:
    rounds = 4 if args.quick else args.rounds
    data = run(tb, rounds)
    path = write_results("spawn_warm", data)
    print(f"warm p50 {data['warm']['p50_s']} s p95 {data['warm']['p95_s']} s; "
          f"cold p50 {data['cold']['p50_s']} s p95 {data['cold']['p95_s']} s "
          f"({data['misses']} misses); results in {path.name}", flush=True)
    print(ratio_line("spawn p50 warm/cold =", data["ratio_warm_over_cold"]), flush=True)
    return data


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with testbed_session() as tb:
        data = bench(tb, args)
    return 0 if data["warm"]["n"] else 1


if __name__ == "__main__":
    sys.exit(main())

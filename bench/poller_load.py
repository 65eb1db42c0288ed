"""slurmctld RPCs per minute: one batched poller vs one ``squeue -j ID`` per job.

For N = 1, 10, 50 tracked jobs (tiny ``sleep`` jobs of alice, bob and carol, running or
pending), both ways of watching them run side by side in the same rounds:

* **ours**: :class:`hpcbridge.poller.StatusPoller`, one query per interval for every
  tracked job, as the hub's status account (``hpcbridge``), over SSH;
* **per-job**: what batchspawner's ``SlurmSpawner`` does for each server, one
  ``squeue -h -j ID -o '%T %B'`` per job per interval, as the job's owner.

slurmctld's own counters (``sdiag``, by user) attribute each RPC to one side. Rounds
run every ``--interval`` seconds (5 by default, to keep the run short); the per-minute
figures are given at that interval and at 30 s (both tools' default) by scaling the
RPCs per round. Run: ``python -m bench.poller_load`` (uses HPCBRIDGE_TESTBED_NAME).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import asdict, dataclass

from bench._common import cli, ratio_line, write_results
from hpcbridge.client import SchedulerClient
from hpcbridge.poller import StatusPoller
from slurm_testbed import config, faults
from slurm_testbed.cluster import Testbed
from slurm_testbed.profiles import site_on_testbed

STATUS_USER = "hpcbridge"
#: batchspawner 1.3's SlurmSpawner.batch_query_cmd, as an argv
PER_JOB_QUERY = ("squeue", "-h", "-j", "{job_id}", "-o", "%T %B")
SIZES = (1, 10, 50)
DEFAULT_INTERVAL = 30.0


@dataclass
class Side:
    rpcs: int
    queries: int
    seconds_per_round: float
    rpc_per_round: float
    rpc_per_min: float
    rpc_per_min_at_30s: float


def _side(rpcs: int, queries: int, rounds: int, busy: float, interval: float) -> Side:
    per_round = rpcs / rounds
    return Side(rpcs, queries, round(busy / rounds, 3), round(per_round, 2),
                round(per_round * 60 / interval, 1), round(per_round * 60 / DEFAULT_INTERVAL, 1))


async def per_job_round(client: SchedulerClient, jobs: dict[str, str]) -> int:
    async def one(job_id: str, user: str) -> None:
        argv = [a.format(job_id=job_id) for a in PER_JOB_QUERY]
        await client.transport.run(argv, user=user, timeout=60)

    await asyncio.gather(*(one(j, u) for j, u in jobs.items()))
    return len(jobs)


async def measure(tb: Testbed, client: SchedulerClient, jobs: dict[str, str],
                  rounds: int, interval: float, uids: dict[str, int]) -> dict:
    poller = StatusPoller(client, interval=interval, query_as=STATUS_USER)
    for job_id, user in jobs.items():
        poller.track(job_id, user, wake=False)
    busy = {"ours": 0.0, "per_job": 0.0}
    queries = 0

    async def timed(side: str, coro):  # type: ignore[no-untyped-def]
        started = time.monotonic()
        result = await coro
        busy[side] += time.monotonic() - started
        return result

    faults.reset_rpc_stats(tb)
    for i in range(rounds):
        tick = time.monotonic()
        _, n = await asyncio.gather(timed("ours", poller.poll_once()),
                                    timed("per_job", per_job_round(client, jobs)))
        queries += n
        if i < rounds - 1:
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))
    stats = faults.rpc_stats(tb)
    ours = stats.user(STATUS_USER, uids[STATUS_USER])
    theirs = sum(stats.user(u, uids[u]) for u in config.USERS)
    states = sorted({i.state.value for i in map(poller.info, jobs) if i is not None})
    return {
        "n": len(jobs), "job_states": states,
        "ours": asdict(_side(ours, poller.queries, rounds, busy["ours"], interval)),
        "per_job": asdict(_side(theirs, queries, rounds, busy["per_job"], interval)),
        "ratio_per_job_over_ours": round(theirs / ours, 2) if ours else None,
        "rpc_types": stats.by_type,
    }


def _uids(tb: Testbed) -> dict[str, int]:
    return {u: int(tb.exec("login", ["id", "-u", u], check=True).stdout)
            for u in (STATUS_USER, *config.USERS)}


async def run(tb: Testbed, sizes: tuple[int, ...], rounds: int, interval: float) -> dict:
    site = site_on_testbed(tb)
    client = site.client("tb")
    uids = _uids(tb)
    per_user = -(-max(sizes) // len(config.USERS))
    jobs: dict[str, str] = {}
    results = []
    try:
        with faults.qos_limits(tb, MaxSubmitJobsPerUser=max(per_user,
                                                            config.QOS_MAX_SUBMIT_PER_USER)):
            jobs = await faults.submit_spread(client, max(sizes))
            ordered = list(jobs.items())
            for n in sizes:
                result = await measure(tb, client, dict(ordered[:n]), rounds, interval, uids)
                results.append(result)
                _print(result)
    finally:
        faults.cancel_jobs(tb, list(jobs))
        await site.close()
    return {"interval_s": interval, "rounds": rounds, "default_interval_s": DEFAULT_INTERVAL,
            "status_user": STATUS_USER, "per_job_command": " ".join(PER_JOB_QUERY),
            "results": results, "summary": summary(results),
            "ratios": {f"rpc/min n={r['n']} per-job/ours": r["ratio_per_job_over_ours"]
                       for r in results}}


def summary(results: list[dict]) -> list[dict]:
    """Rows for the report: RPCs per minute at the tools' default 30 s interval."""
    return [{"measure": f"status queries, {r['n']} tracked jobs: slurmctld RPCs/min at 30 s",
             "hpcbridge": r["ours"]["rpc_per_min_at_30s"],
             "per-job squeue (batchspawner)": r["per_job"]["rpc_per_min_at_30s"],
             "ratio": r["ratio_per_job_over_ours"], "ratio_is": "per-job/hpcbridge"}
            for r in results]


def _print(r: dict) -> None:
    ours, theirs = r["ours"], r["per_job"]
    print(f"n={r['n']:<3} ours: {ours['rpcs']} RPCs in {ours['queries']} queries, "
          f"{ours['rpc_per_min']}/min ({ours['rpc_per_min_at_30s']}/min at 30 s); "
          f"per-job squeue: {theirs['rpcs']} RPCs in {theirs['queries']} queries, "
          f"{theirs['rpc_per_min']}/min ({theirs['rpc_per_min_at_30s']}/min at 30 s); "
          f"jobs {','.join(r['job_states'])}", flush=True)
    print(ratio_line(f"rpc/min n={r['n']} per-job/ours", r["ratio_per_job_over_ours"]),
          flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="2 rounds per N")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between rounds")
    p.add_argument("--rounds", type=int, default=4, help="rounds per N")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    return p


def bench(tb: Testbed, args: argparse.Namespace) -> dict:
    if args.quick:
        args.rounds = 2
    data = asyncio.run(run(tb, tuple(args.sizes), args.rounds, args.interval))
    path = write_results("poller_load", data)
    print(f"wrote {path.name}")
    return data


def main(argv: list[str] | None = None) -> int:
    return cli(parser, bench, argv)


if __name__ == "__main__":
    raise SystemExit(main())

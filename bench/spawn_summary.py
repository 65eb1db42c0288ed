"""The figures of :mod:`bench.spawn` side by side: ratios, a summary table, its print-out."""

from __future__ import annotations

import argparse

OURS, STOCK = "hpcbridge", "batchspawner"


def settings(args: argparse.Namespace, status_interval: float) -> dict:
    return {"request": "partition debug, 1 core, 2G, 00:30:00 (hpcbridge preset 'debug')",
            "hpcbridge_status_interval_s": status_interval, "batchspawner_poll_interval_s": 30.0,
            "stock": "batchspawner 1.3 MultiSlurmSpawner over ssh (bench/stock_hub.py)",
            "spawns": args.spawns, "concurrent": args.concurrent, "load_sizes": args.load_sizes,
            "restart": args.restart, "window_s": args.window, "settle_s": args.settle,
            "scale_bound_s": args.scale_timeout, "floor_runs": args.floor_runs,
            "over_qos": args.over_qos, "over_qos_bound_s": args.qos_bound, "quick": args.quick}


NOTES = [
    ("Spawn time: REST POST until the hub reports the server ready (its URL answers and the "
     "proxy routes it); the idle cluster is restored (server stopped, queue empty) between "
     "cold spawns."),
    ("Floor: sbatch over SSH as alice until the batch script runs, plus jupyter-lab started "
     "in that job until its /api answers (JupyterLab's own start-up, without a hub)."),
    ("Both hubs request partition debug, 1 core, 2G, 30 min; both submit over SSH as the "
     "user. Stock: batchspawner MultiSlurmSpawner, ssh exec_prefix, poll_interval 30 s; "
     "hpcbridge: preset 'debug', one batched status query per status_interval for all "
     "servers."),
    ("At scale, one hub after the other: the largest number of servers spawned at once "
     "(QOS raised so all may run, alice and bob), then stopped down to each smaller size."),
    ("Scheduler load: slurmctld RPCs (sdiag) of the hub accounts (hpcbridge's status user "
     "and the test users), over a window of steady state with that many servers running."),
    ("Hub restart: SIGKILL, start again; seconds from the start until every server is "
     "reported ready again, and the slurmctld RPCs in that time."),
    ("Over QOS limits: QOS normal as configured (4 running jobs per user), only its submit "
     "limit raised so that every job is accepted; ready / still queued / failed at the bound."),
    ("Stages: medians of hpcbridge's own 'spawn stages:' log lines (one per spawn) over each "
     "phase; the stock hub logs no such breakdown."),
    ("The stock hub differs from a stock install only off the measured path: its squeue "
     "format is quoted once more (the stock one breaks under an ssh prefix), USER/HOME/SHELL "
     "come from the testbed's layout (the users do not exist on the hub's host), and "
     "http_timeout is 120 s as in hpcbridge."),
    ("The machine is shared and small (2 CPUs for the hubs, the proxy and every JupyterLab "
     "of the testbed): spawn times vary by 2x between runs; the RPC counts do not."),
]


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


T_RATIO = f"{OURS}/{STOCK}"  # times: below 1 is faster
L_RATIO = f"{STOCK}/{OURS}"  # scheduler load: above 1 is fewer RPCs


def ratios(d: dict) -> dict[str, float | None]:
    cold, floor = d["cold"], d["floor"]["total_s"]
    out = {
        f"spawn_p50 {T_RATIO}": _div(cold[OURS]["p50_s"], cold[STOCK]["p50_s"]),
        f"spawn_p95 {T_RATIO}": _div(cold[OURS]["p95_s"], cold[STOCK]["p95_s"]),
        f"spawn_p50 {OURS}/floor": _div(cold[OURS]["p50_s"], floor),
        f"spawn_p50 {STOCK}/floor": _div(cold[STOCK]["p50_s"], floor),
    }
    for label, block in _concurrent(d):
        n = block[OURS]["n"]
        for q in ("p50", "p95"):
            out[f"{label}{n}_{q} {T_RATIO}"] = _div(block[OURS][f"{q}_s"],
                                                    block[STOCK][f"{q}_s"])
        out[f"{label}{n}_ready {T_RATIO}"] = _div(_count(block[OURS], "ready"),
                                                  _count(block[STOCK], "ready"))
    scale = d.get("scale", {})
    if OURS in scale and STOCK in scale:
        for ours, theirs in zip(scale[OURS]["windows"], scale[STOCK]["windows"], strict=True):
            out[f"rpc/min n={ours['n']} {L_RATIO}"] = _div(theirs["rpc_per_min"],
                                                          ours["rpc_per_min"])
        ro, rt = scale[OURS]["restart"], scale[STOCK]["restart"]
        if ro and rt:
            out[f"restart n={ro['n']} seconds {T_RATIO}"] = _div(ro["all_ready_s"],
                                                                rt["all_ready_s"])
            out[f"restart n={ro['n']} rpcs {L_RATIO}"] = _div(rt["hub_rpcs"], ro["hub_rpcs"])
    return out


def _count(block: dict, outcome: str) -> int:
    return block.get("outcomes", {}).get(outcome, 0)


def _concurrent(d: dict) -> list[tuple[str, dict]]:
    """(label, {hub: figures}) of every concurrent-spawn measurement of both hubs."""
    out = [("concurrent", d["concurrent"])]
    scale = d.get("scale", {})
    if all(scale.get(h, {}).get("concurrent") for h in (OURS, STOCK)):
        out.append(("concurrent", {h: scale[h]["concurrent"] for h in (OURS, STOCK)}))
    return out


def _row(measure: str, ours: object, stock: object, ratio: float | None = None,
         ratio_is: str | None = None) -> dict:
    return {"measure": measure, OURS: ours, STOCK: stock, "ratio": ratio,
            "ratio_is": ratio_is if ratio is not None else None}


def table(d: dict) -> list[dict]:
    """One row per figure: hpcbridge, batchspawner, ratio (rendered by bench.report)."""
    cold, r = d["cold"], d["ratios"]
    rows = [_row("floor: sbatch→running + JupyterLab start-up (s)", d["floor"]["total_s"],
                 d["floor"]["total_s"])]
    for q in ("p50", "p95"):
        rows.append(_row(f"cold spawn, idle cluster, {q} (s)", cold[OURS][f"{q}_s"],
                         cold[STOCK][f"{q}_s"], r[f"spawn_{q} {T_RATIO}"], T_RATIO))
    for label, block in _concurrent(d):
        n = block[OURS]["n"]
        for q in ("p50", "p95"):
            rows.append(_row(f"{n} concurrent spawns {q} (s)", block[OURS][f"{q}_s"],
                             block[STOCK][f"{q}_s"], r[f"{label}{n}_{q} {T_RATIO}"], T_RATIO))
        rows.append(_row(f"{n} concurrent spawns: ready of {n}", _count(block[OURS], "ready"),
                         _count(block[STOCK], "ready"), r[f"{label}{n}_ready {T_RATIO}"],
                         T_RATIO))
    scale = d.get("scale", {})
    if OURS in scale and STOCK in scale:
        for ours, theirs in zip(scale[OURS]["windows"], scale[STOCK]["windows"], strict=True):
            rows.append(_row(f"slurmctld RPCs/min, {ours['n']} running servers",
                             ours["rpc_per_min"], theirs["rpc_per_min"],
                             r[f"rpc/min n={ours['n']} {L_RATIO}"], L_RATIO))
        ro, rt = scale[OURS]["restart"], scale[STOCK]["restart"]
        if ro and rt:
            rows.append(_row(f"hub restart, {ro['n']} servers: all ready again (s)",
                             ro["all_ready_s"], rt["all_ready_s"],
                             r[f"restart n={ro['n']} seconds {T_RATIO}"], T_RATIO))
            rows.append(_row(f"hub restart, {ro['n']} servers: slurmctld RPCs",
                             ro["hub_rpcs"], rt["hub_rpcs"],
                             r[f"restart n={ro['n']} rpcs {L_RATIO}"], L_RATIO))
    if over := d.get("over_qos"):
        n, bound = over[OURS]["n"], over[OURS]["bound_s"]
        rows.append(_row(f"{n} spawns over QOS limits: ready / queued / failed within "
                         f"{bound:.0f} s", *(_over(over[h]) for h in (OURS, STOCK))))
        if all("servers_not_stopped" in over[h] for h in (OURS, STOCK)):
            bound = over[OURS].get("stop_bound_s", 120)
            rows.append(_row(f"{n} spawns over QOS limits, then stop all: servers the hub "
                             f"still lists after {bound:.0f} s",
                             *(over[h]["servers_not_stopped"] for h in (OURS, STOCK))))
        if all("jobs_left_after_stop" in over[h] for h in (OURS, STOCK)):
            rows.append(_row(f"{n} spawns over QOS limits, then stop all: jobs still queued "
                             "or running after that",
                             *(over[h]["jobs_left_after_stop"] for h in (OURS, STOCK))))
    for phase, st in d.get("stages", {}).items():
        for stage, seconds in st.get("median_s", {}).items():
            rows.append(_row(f"{OURS} spawn stage '{stage}', {phase}, median (s)",
                             seconds, None))
    return rows


def _over(block: dict) -> str:
    text = " / ".join(str(_count(block, k)) for k in ("ready", "pending", "failed"))
    if refused := _count(block, "refused"):
        text += f" ({refused} refused)"
    return text


def print_table(rows: list[dict]) -> None:
    def cell(v: object) -> str:
        return "-" if v is None else str(v)

    width = max(len(r["measure"]) for r in rows)
    print(f"\n{'measure':<{width}}  {OURS:>12}  {STOCK:>12}  {'ratio':>6}")
    for r in rows:
        print(f"{r['measure']:<{width}}  {cell(r[OURS]):>12}  {cell(r[STOCK]):>12}  "
              f"{cell(r['ratio']):>6}  {cell(r.get('ratio_is'))}")

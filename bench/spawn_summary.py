"""The figures of :mod:`bench.spawn` side by side: ratios, a summary table, its print-out."""

from __future__ import annotations

import argparse

OURS, STOCK = "hpcbridge", "batchspawner"


def settings(args: argparse.Namespace, status_interval: float) -> dict:
    return {"request": "partition debug, 1 core, 2G, 00:30:00 (hpcbridge preset 'debug')",
            "hpcbridge_status_interval_s": status_interval, "batchspawner_poll_interval_s": 30.0,
            "stock": "batchspawner 1.3 MultiSlurmSpawner over ssh (bench/stock_hub.py)",
            "spawns": args.spawns, "concurrent": args.concurrent, "load_sizes": args.load_sizes,
            "window_s": args.window, "floor_runs": args.floor_runs, "many": args.many,
            "many_bound_s": args.many_timeout, "quick": args.quick}


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
    ("Scheduler load: slurmctld RPCs (sdiag) of the hub accounts (hpcbridge's status user "
     "and the test users), over a window of steady state with that many servers running."),
    ("Hub restart: SIGKILL, start again; seconds from the start until every server is "
     "reported ready again, and the slurmctld RPCs in that time."),
    ("The stock hub differs from a stock install only off the measured path: its squeue "
     "format is quoted once more (the stock one breaks under an ssh prefix), USER/HOME/SHELL "
     "come from the testbed's layout (the users do not exist on the hub's host), and "
     "http_timeout is 120 s as in hpcbridge."),
    ("The machine is shared and small (2 CPUs for the hubs, the proxy and every JupyterLab "
     "of the testbed): spawn times vary by 2x between runs; the RPC counts do not."),
]


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def ratios(d: dict) -> dict[str, float | None]:
    cold, conc, floor = d["cold"], d["concurrent"], d["floor"]["total_s"]
    out = {
        "spawn_p50 hpcbridge/batchspawner": _div(cold[OURS]["p50_s"], cold[STOCK]["p50_s"]),
        "spawn_p95 hpcbridge/batchspawner": _div(cold[OURS]["p95_s"], cold[STOCK]["p95_s"]),
        "spawn_p50 hpcbridge/floor": _div(cold[OURS]["p50_s"], floor),
        "spawn_p50 batchspawner/floor": _div(cold[STOCK]["p50_s"], floor),
        f"concurrent{conc['n']}_p50 hpcbridge/batchspawner":
            _div(conc[OURS]["p50_s"], conc[STOCK]["p50_s"]),
        f"concurrent{conc['n']}_p95 hpcbridge/batchspawner":
            _div(conc[OURS]["p95_s"], conc[STOCK]["p95_s"]),
    }
    load = d["load"]
    for ours, theirs in zip(load[OURS]["windows"], load[STOCK]["windows"], strict=True):
        out[f"rpc/min n={ours['n']} batchspawner/hpcbridge"] = _div(
            theirs["rpc_per_min"], ours["rpc_per_min"])
    r_ours, r_theirs = load[OURS]["restart"], load[STOCK]["restart"]
    out[f"restart n={r_ours['n']} seconds hpcbridge/batchspawner"] = _div(
        r_ours["all_ready_s"], r_theirs["all_ready_s"])
    out[f"restart n={r_ours['n']} rpcs batchspawner/hpcbridge"] = _div(
        r_theirs["hub_rpcs"], r_ours["hub_rpcs"])
    return out


def table(d: dict) -> list[dict]:
    """One row per figure: hpcbridge, batchspawner, ratio (rendered by bench.report)."""
    cold, conc, load = d["cold"], d["concurrent"], d["load"]
    r = d["ratios"]
    n = conc["n"]
    rows = [{"measure": "floor: sbatch→running + JupyterLab start-up (s)",
             OURS: d["floor"]["total_s"], STOCK: d["floor"]["total_s"], "ratio": None}]
    for q in ("p50", "p95"):
        rows.append({"measure": f"cold spawn {q} (s)", OURS: cold[OURS][f"{q}_s"],
                     STOCK: cold[STOCK][f"{q}_s"],
                     "ratio": r[f"spawn_{q} hpcbridge/batchspawner"]})
    for q in ("p50", "p95"):
        rows.append({"measure": f"{n} concurrent spawns {q} (s)", OURS: conc[OURS][f"{q}_s"],
                     STOCK: conc[STOCK][f"{q}_s"],
                     "ratio": r[f"concurrent{n}_{q} hpcbridge/batchspawner"]})
    rows.append({"measure": f"{n} concurrent spawns ready",
                 OURS: conc[OURS]["outcomes"].get("ready", 0),
                 STOCK: conc[STOCK]["outcomes"].get("ready", 0), "ratio": None})
    for ours, theirs in zip(load[OURS]["windows"], load[STOCK]["windows"], strict=True):
        rows.append({"measure": f"slurmctld RPCs/min, {ours['n']} running",
                     OURS: ours["rpc_per_min"], STOCK: theirs["rpc_per_min"],
                     "ratio": r[f"rpc/min n={ours['n']} batchspawner/hpcbridge"]})
    ro, rt = load[OURS]["restart"], load[STOCK]["restart"]
    rows.append({"measure": f"hub restart, {ro['n']} servers: all ready (s)",
                 OURS: ro["all_ready_s"], STOCK: rt["all_ready_s"],
                 "ratio": r[f"restart n={ro['n']} seconds hpcbridge/batchspawner"]})
    rows.append({"measure": f"hub restart, {ro['n']} servers: slurmctld RPCs",
                 OURS: ro["hub_rpcs"], STOCK: rt["hub_rpcs"],
                 "ratio": r[f"restart n={ro['n']} rpcs batchspawner/hpcbridge"]})
    if many := d.get("many"):
        rows.append({"measure": f"{many['n']} concurrent spawns: ready / queued / failed "
                                f"within {many['bound_s']:.0f} s",
                     OURS: "{} / {} / {}".format(*(many["outcomes"].get(k, 0) for k in (
                         "ready", "pending", "failed"))), STOCK: None, "ratio": None})
        if refused := many["outcomes"].get("refused"):
            rows[-1][OURS] += f" ({refused} refused)"
    return rows


def print_table(rows: list[dict]) -> None:
    def cell(v: object) -> str:
        return "-" if v is None else str(v)

    width = max(len(r["measure"]) for r in rows)
    print(f"\n{'measure':<{width}}  {OURS:>12}  {STOCK:>12}  {'ratio':>6}")
    for r in rows:
        print(f"{r['measure']:<{width}}  {cell(r[OURS]):>12}  {cell(r[STOCK]):>12}  "
              f"{cell(r['ratio']):>6}")



"""Dask figures for ``python -m bench all``: :mod:`bench.dask_scale`'s scenarios, with
slurmctld's RPC counts around each run and the results written as JSON.

:mod:`bench.dask_scale` times hpcbridge.dask and plain dask-jobqueue to N workers;
``bench`` here calls its ``run`` (warm-up, tools alternating) where it has one, else runs
its ``run_ours`` / ``run_plain`` per scenario itself (:func:`measure`). Either way each
run is bracketed with ``sdiag`` (RPCs of every user but root and slurm, from ``scale`` to
``close``; submit RPCs by type, :func:`_timed`) and the result is written to
``docs/benchmarks/dask_scale.json``. Run: ``python -m bench.dask_bench [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable

from bench import dask_scale
from bench._common import cli, ratio_line, write_results
from slurm_testbed import faults
from slurm_testbed.cluster import Testbed

OURS, PLAIN = "hpcbridge", "dask-jobqueue"
SUBMIT = "REQUEST_SUBMIT_BATCH_JOB"
DAEMONS = ("root", "slurm")  # sdiag itself, slurmd's job bookkeeping: the same for both
NOTES = [
    ("Time to N workers: cluster.scale(N) until the client sees N workers "
     "(client.wait_for_workers). Plain dask-jobqueue runs on the login node (it shells out "
     "to a local sbatch), hpcbridge on the host, submitting over SSH as a notebook would."),
    ("RPCs: slurmctld's sdiag counters of every user but root and slurm, from scale() to "
     "close(); submit RPCs are the REQUEST_SUBMIT_BATCH_JOB messages among them."),
    ("Scenarios: n3 = 3 workers of 1 core; n4-array = 4 workers, hpcbridge as one job array; "
     "n16-array = 16 workers as 4 jobs of 4 processes (QOS normal runs 4 jobs per user)."),
]


def _timed(tb: Testbed, run: Callable[[], dict]) -> dict:
    faults.reset_rpc_stats(tb)
    result = run()
    stats = faults.rpc_stats(tb)
    users = {u: n for u, n in stats.by_user.items() if u not in DAEMONS}
    return {"seconds": round(result["seconds"], 2), "submissions": result["submissions"],
            "rpcs": sum(users.values()), "submit_rpcs": stats.by_type.get(SUBMIT, 0),
            "rpcs_by_user": users}


def _median(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 2)


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def measure(tb: Testbed, repeat: int, only: list[str] | None = None) -> dict:
    profile, site = _profile(tb)
    results = []
    for s in dask_scale.SCENARIOS:
        if only and s.name not in only:
            continue
        ours = [_timed(tb, lambda s=s: dask_scale.run_ours(tb, site, profile, s))
                for _ in range(repeat)]
        plain = [_timed(tb, lambda s=s: dask_scale.run_plain(tb, s)) for _ in range(repeat)]
        row = {"scenario": s.name, "workers": s.workers, "jobs": s.jobs,
               "processes": s.processes}
        for name, runs in ((OURS, ours), (PLAIN, plain)):
            row[name] = {k: _median(runs, k) for k in ("seconds", "submissions", "rpcs",
                                                       "submit_rpcs")}
            row[name]["runs"] = runs
        results.append(row)
        _print(row)
    return {"user": dask_scale.USER, "repeat": repeat, "results": results,
            "ratios": ratios(results), "summary": table(results), "notes": NOTES}


def _profile(tb: Testbed):  # type: ignore[no-untyped-def]
    """As dask_scale's main: the bundled testbed profile without per-user Dask caps."""
    from hpcbridge.profiles import DaskCaps
    from slurm_testbed.profiles import load_bundled_profile
    from hpcbridge.site import Site

    profile = load_bundled_profile("testbed", {**os.environ, **tb.profile_env()})
    profile = profile.model_copy(update={"dask": profile.dask.model_copy(
        update={"per_user": DaskCaps()})})
    return profile, Site(profile)


def ratios(results: list[dict]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for r in results:
        o, p = r[OURS], r[PLAIN]
        out[f"time {r['scenario']} {OURS}/{PLAIN}"] = _div(o["seconds"], p["seconds"])
        out[f"submit RPCs {r['scenario']} {OURS}/{PLAIN}"] = _div(o["submit_rpcs"],
                                                                 p["submit_rpcs"])
        out[f"RPCs {r['scenario']} {OURS}/{PLAIN}"] = _div(o["rpcs"], p["rpcs"])
    return out


def table(results: list[dict]) -> list[dict]:
    rows = []
    label = f"{OURS}/{PLAIN}"
    for r in results:
        o, p, name = r[OURS], r[PLAIN], r["scenario"]
        what = f"Dask {r['workers']} workers ({name})"
        rows += [
            {"measure": f"{what}: time to all workers (s)", OURS: o["seconds"],
             PLAIN: p["seconds"], "ratio": _div(o["seconds"], p["seconds"]),
             "ratio_is": label},
            {"measure": f"{what}: submit RPCs", OURS: o["submit_rpcs"],
             PLAIN: p["submit_rpcs"], "ratio": _div(o["submit_rpcs"], p["submit_rpcs"]),
             "ratio_is": label},
            {"measure": f"{what}: slurmctld RPCs, scale to close", OURS: o["rpcs"],
             PLAIN: p["rpcs"], "ratio": _div(o["rpcs"], p["rpcs"]), "ratio_is": label},
        ]
    return rows


def _print(row: dict) -> None:
    o, p = row[OURS], row[PLAIN]
    print(f"dask {row['scenario']}: {OURS} {o['seconds']} s, {o['submit_rpcs']} submit RPCs, "
          f"{o['rpcs']} RPCs; {PLAIN} {p['seconds']} s, {p['submit_rpcs']} submit RPCs, "
          f"{p['rpcs']} RPCs", flush=True)
    for label, value in ratios([row]).items():
        print(ratio_line(label, value), flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="the n3 scenario only, fewer runs")
    p.add_argument("--repeat", type=int, default=None,
                   help="runs per tool and scenario (median); dask_scale's default if unset")
    p.add_argument("--only", nargs="+", default=None, help="scenarios by name")
    return p


def bench(tb: Testbed, args: argparse.Namespace) -> dict:
    """dask_scale's own ``run`` (warm-up, alternating tools) where it has one; else
    :func:`measure` here."""
    if hasattr(dask_scale, "run"):
        data = dask_scale.run(tb, args.quick, args.repeat, args.only)
    else:
        repeat = args.repeat or (1 if args.quick else 2)
        data = measure(tb, repeat, args.only or (["n3"] if args.quick else None))
    path = write_results("dask_scale", {**data, "quick": args.quick})
    print(f"wrote {path.name}")
    return data


def main(argv: list[str] | None = None) -> int:
    return cli(parser, bench, argv)


if __name__ == "__main__":
    raise SystemExit(main())

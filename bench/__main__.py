"""Every benchmark in one run: ``python -m bench all [--quick]``.

Measures the testbed's own up/down first (it cycles the testbed), then brings the testbed
named by HPCBRIDGE_TESTBED_NAME up once, with enough nodes for 50 one-core servers, and
runs each benchmark on it for hpcbridge and the stock tool side by side: status-query
load (:mod:`bench.poller_load`), spawning (:mod:`bench.spawn`: stock batchspawner),
Dask (:mod:`bench.dask_bench`: plain dask-jobqueue), and the warm pool
(``bench/spawn_warm.py``) when that module exists. Each writes its JSON into
``docs/benchmarks/``; then the PNG plots (:mod:`bench.plots`) and ``docs/benchmarks.md``
(:mod:`bench.report`) are generated from them, with the run's facts in ``run.json``.
A benchmark that fails is recorded as failed and the others still run.

``python -m bench report`` regenerates plots and ``docs/benchmarks.md`` only.
``python -m bench scale [--quick]`` runs one hub at scale on a testbed of its own
(:mod:`bench.scale`; not part of ``all``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata

from bench import dask_bench, plots, poller_load, report, spawn, testbed_up
from bench._common import RESULTS, environment, ratio_line, testbed_session, write_results
from slurm_testbed.cluster import Testbed

STEPS = ("testbed_up", "poller_load", "spawn", "dask_scale", "spawn_warm")
WARM = "bench.spawn_warm"
PACKAGES = ("jupyterhub", "batchspawner", "dask-jobqueue", "distributed", "matplotlib")


def _flag(quick: bool) -> list[str]:
    return ["--quick"] if quick else []


def run_warm(tb: Testbed, quick: bool) -> dict | None:
    """bench/spawn_warm.py (another engineer's), through whatever it offers: a
    ``bench(tb, args)`` like the others, else ``main(argv)``. None: it does not exist."""
    if importlib.util.find_spec(WARM) is None:
        return None
    module = importlib.import_module(WARM)
    if hasattr(module, "bench") and hasattr(module, "parser"):
        return module.bench(tb, module.parser().parse_args(_flag(quick)))
    if hasattr(module, "main"):
        try:
            code = module.main(_flag(quick))
        except SystemExit as exc:  # argparse without --quick, or sys.exit(main())
            code = exc.code
        if code not in (0, None):
            raise RuntimeError(f"{WARM}.main returned {code}")
        return {}
    raise RuntimeError(f"{WARM} has neither bench(tb, args) nor main(argv)")


def machine(tb: Testbed | None) -> dict:
    """The run's facts, without host names or paths."""
    facts: dict = {**environment(), "system": platform.system(),
                   "kernel": platform.release()}
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        facts["memory_gib"] = round(kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    facts["versions"] = {}
    for name in PACKAGES:
        try:
            facts["versions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    if tb is not None:
        try:
            facts["testbed_nodes"] = len(tb.info().nodes)
            out = tb.exec("ctl", ["sinfo", "-V"], timeout=30).stdout.decode().split()
            facts["versions"]["slurm"] = out[-1] if out else None
            out = tb.engine.run("--version", timeout=30).stdout.decode().split()
            facts["versions"]["container engine"] = " ".join(out[:1] + out[-1:])
        except Exception as exc:  # noqa: BLE001 -- facts are best effort
            facts["facts_error"] = str(exc)[:200]
    return facts


class Run:
    """The steps of one run, each timed and recorded, a failure not stopping the rest."""

    def __init__(self, only: set[str]) -> None:
        self.only = only
        self.steps: dict[str, dict] = {}
        self.after_step: Callable[[], None] = lambda: None

    def save(self, facts: dict, quick: bool, started: float) -> None:
        """run.json as far as the run got (a partial run keeps the others' record)."""
        steps = self.steps
        previous = RESULTS / "run.json"
        if self.only != set(STEPS) and previous.exists():
            steps = {**json.loads(previous.read_text()).get("steps", {}), **self.steps}
        command = ["python -m bench all", *(["--quick"] if quick else [])]
        if self.only != set(STEPS):
            command.append(f"--only {' '.join(s for s in STEPS if s in self.only)}")
        write_results("run", {**facts, "quick": quick, "command": " ".join(command),
                              "steps": steps,
                              "elapsed_s": round(time.monotonic() - started, 1)})

    def step(self, name: str, fn: Callable[[], object]) -> None:
        if name not in self.only:
            return
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        try:
            result = fn()
            status = "not measured" if result is None else "ok"
            self.steps[name] = {"status": status}
        except Exception as exc:  # noqa: BLE001 -- recorded, and the run goes on
            traceback.print_exc()
            self.steps[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
        self.steps[name]["seconds"] = round(time.monotonic() - started, 1)
        print(f"=== {name}: {self.steps[name]['status']} in "
              f"{self.steps[name]['seconds']:.0f} s ===", flush=True)
        self.after_step()


def run_all(args: argparse.Namespace) -> int:
    started = time.monotonic()
    quick = args.quick
    only = set(args.only or STEPS) - set(args.skip or ())
    run = Run(only)
    run.step("testbed_up", lambda: testbed_up.bench(testbed_up.parser().parse_args(
        _flag(quick))))
    spawn_args = spawn.parse(_flag(quick))
    facts: dict = {}
    with testbed_session(nodes=spawn.nodes_for(spawn_args)) as tb:
        facts = machine(tb)
        run.after_step = lambda: run.save(facts, quick, started)
        run.step("poller_load", lambda: poller_load.bench(
            tb, poller_load.parser().parse_args(_flag(quick))))
        run.step("spawn", lambda: spawn.bench(tb, spawn_args))
        run.step("dask_scale", lambda: dask_bench.bench(
            tb, dask_bench.parser().parse_args(_flag(quick))))
        run.step("spawn_warm", lambda: run_warm(tb, quick))
    run.save(facts, quick, started)
    finish()
    failed = [n for n, s in run.steps.items() if s["status"] == "failed"]
    print(f"\nbench all: {len(run.steps)} steps in {time.monotonic() - started:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def finish() -> None:
    """Plots, docs/benchmarks.md, and every ratio of the results, one a line."""
    for path in plots.draw_all():
        print(f"wrote {path.name}")
    report.main([])
    for stem, data in sorted(_results().items()):
        for label, value in (data.get("ratios") or {}).items():
            print(ratio_line(f"{stem}: {label}", value))


def _results() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["scale"]:  # its own options (python -m bench scale --help)
        from bench import scale

        os.environ.setdefault("MPLBACKEND", "Agg")
        return scale.main(args_in[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_all = sub.add_parser("all", help="every benchmark, then plots and docs/benchmarks.md")
    p_all.add_argument("--quick", action="store_true",
                       help="fewer repetitions and smaller sizes (minutes, not half an hour)")
    p_all.add_argument("--only", nargs="+", choices=STEPS, help="run only these steps")
    p_all.add_argument("--skip", nargs="+", choices=STEPS, help="leave these steps out")
    sub.add_parser("report", help="plots and docs/benchmarks.md from the results only")
    sub.add_parser("scale", help="one hub at 50 to 500 servers, on a testbed of its own")
    args = parser.parse_args(argv)
    if args.command == "report":
        finish()
        return 0
    os.environ.setdefault("MPLBACKEND", "Agg")
    return run_all(args)


if __name__ == "__main__":
    raise SystemExit(main())

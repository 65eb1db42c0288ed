"""Benchmark figures to tables, ratios, plots and docs/benchmarks.md, from small recorded
results (no testbed): bench/spawn_summary.py, bench/dask_bench.py, bench/report.py,
bench/plots.py and the tolerant warm-pool step of bench/__main__.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import dask_bench, report, spawn_summary
from bench.spawn_summary import OURS, STOCK


def _spawns(*seconds: float, pending: int = 0) -> dict:
    runs = [{"user": "alice", "outcome": "ready", "seconds": s} for s in seconds]
    runs += [{"user": "bob", "outcome": "pending"}] * pending
    ready = sorted(seconds)
    outcomes = {"ready": len(seconds), **({"pending": pending} if pending else {})}
    return {"n": len(runs), "outcomes": outcomes, "p50_s": ready[len(ready) // 2],
            "p95_s": ready[-1], "runs": runs}


def _scale(rpm: tuple[float, float, float], restart_s: float, restart_rpcs: int,
           conc: dict) -> dict:
    windows = [{"n": n, "running": n, "rpc_per_min": r, "hub_rpcs": r}
               for n, r in zip((1, 10, 50), rpm, strict=True)]
    return {"concurrent": conc, "windows": windows,
            "restart": {"n": 20, "running": 20, "all_ready_s": restart_s,
                        "hub_rpcs": restart_rpcs}}


def spawn_data() -> dict:
    """A spawn.json as bench.spawn writes it, with made-up round figures."""
    d = {
        "floor": {"total_s": 2.0},
        "cold": {OURS: _spawns(3.0, 4.0, 5.0), STOCK: _spawns(4.0, 6.0, 8.0)},
        "concurrent": {"n": 8, OURS: _spawns(*[10.0] * 8), STOCK: _spawns(*[12.0] * 8)},
        "scale": {
            OURS: _scale((12, 8, 8), 6.0, 2, {**_spawns(*[20.0] * 50), "n": 50}),
            STOCK: _scale((6, 60, 300), 12.0, 60, {**_spawns(*[40.0] * 48, pending=2)}),
        },
        "over_qos": {OURS: {"n": 50, "bound_s": 90.0, "outcomes": {"ready": 8, "pending": 42},
                            "servers_not_stopped": 0, "jobs_left_after_stop": 0},
                     STOCK: {"n": 50, "bound_s": 90.0, "outcomes": {"ready": 8, "failed": 42},
                             "servers_not_stopped": 26, "jobs_left_after_stop": 3}},
        "stages": {"cold": {"spawns": 3, "median_s": {"submit": 0.1, "port": 2.0}}},
    }
    d["ratios"] = spawn_summary.ratios(d)
    d["summary"] = spawn_summary.table(d)
    return d


def test_spawn_ratios_point_the_stated_way() -> None:
    r = spawn_data()["ratios"]
    assert r[f"spawn_p50 {OURS}/{STOCK}"] == 0.67  # 4 / 6: times ours over theirs
    assert r[f"spawn_p50 {OURS}/floor"] == 2.0
    assert r[f"concurrent8_p50 {OURS}/{STOCK}"] == 0.83
    assert r[f"concurrent50_p50 {OURS}/{STOCK}"] == 0.5
    assert r[f"concurrent50_ready {OURS}/{STOCK}"] == round(50 / 48, 2)
    # load: theirs over ours
    assert r[f"rpc/min n=1 {STOCK}/{OURS}"] == 0.5
    assert r[f"rpc/min n=50 {STOCK}/{OURS}"] == 37.5
    assert r[f"restart n=20 seconds {OURS}/{STOCK}"] == 0.5
    assert r[f"restart n=20 rpcs {STOCK}/{OURS}"] == 30.0


def test_spawn_table_has_a_row_per_figure() -> None:
    rows = {r["measure"]: r for r in spawn_data()["summary"]}
    assert rows["slurmctld RPCs/min, 50 running servers"][STOCK] == 300
    assert rows["slurmctld RPCs/min, 50 running servers"]["ratio_is"] == f"{STOCK}/{OURS}"
    assert rows["50 concurrent spawns: ready of 50"][OURS] == 50
    assert rows["50 concurrent spawns: ready of 50"][STOCK] == 48
    assert rows["hub restart, 20 servers: slurmctld RPCs"]["ratio"] == 30.0
    over = rows["50 spawns over QOS limits: ready / queued / failed within 90 s"]
    assert (over[OURS], over[STOCK]) == ("8 / 42 / 0", "8 / 0 / 42")
    left = rows["50 spawns over QOS limits, then stop all: jobs still queued or running after "
                "that"]
    assert (left[OURS], left[STOCK]) == (0, 3)
    stuck = rows["50 spawns over QOS limits, then stop all: servers the hub still lists after "
                 "120 s"]
    assert (stuck[OURS], stuck[STOCK]) == (0, 26)
    assert rows["hpcbridge spawn stage 'port', cold, median (s)"][OURS] == 2.0


def dask_data() -> dict:
    def tool(seconds: float, submits: int, rpcs: int) -> dict:
        return {"seconds": seconds, "submissions": submits, "rpcs": rpcs,
                "submit_rpcs": submits, "runs": [{"seconds": seconds}]}

    results = [{"scenario": "n3", "workers": 3, "jobs": 3, "processes": 1,
                dask_bench.OURS: tool(6.0, 3, 20), dask_bench.PLAIN: tool(5.0, 3, 6)},
               {"scenario": "n4-array", "workers": 4, "jobs": 4, "processes": 1,
                dask_bench.OURS: tool(5.0, 1, 10), dask_bench.PLAIN: tool(5.0, 4, 8)}]
    return {"results": results, "ratios": dask_bench.ratios(results),
            "summary": dask_bench.table(results)}


def test_dask_ratios() -> None:
    r = dask_data()["ratios"]
    assert r["time n3 hpcbridge/dask-jobqueue"] == 1.2
    assert r["submit RPCs n4-array hpcbridge/dask-jobqueue"] == 0.25


def _write(results: Path, **files: dict) -> None:
    results.mkdir(parents=True, exist_ok=True)
    for stem, data in files.items():
        (results / f"{stem}.json").write_text(json.dumps(data))


def test_report_overview_has_every_figure_with_its_ratio(tmp_path: Path) -> None:
    results = tmp_path / "benchmarks"
    _write(results, spawn=spawn_data(), dask_scale=dask_data(),
           spawn_warm={"warm": {"p50_s": 1.5, "p95_s": 2.0}, "cold": {"p50_s": 4.0,
                                                                      "p95_s": 5.0}},
           run={"command": "python -m bench all", "cpus": 2, "memory_gib": 23.4,
                "versions": {"slurm": "25.05.0"}, "testbed_nodes": 8,
                "steps": {"spawn": {"status": "ok", "seconds": 900.0}}})
    (results / "rpc_per_min.png").write_bytes(b"\x89PNG")
    text = report.render(results)
    overview = text.split("## Every figure", 1)[1].split("\n## ", 1)[0]
    assert "not measured" not in overview
    assert "| slurmctld RPCs/min, 50 running servers | 8 | batchspawner | 300 | 37.5 |" in overview
    assert "| warm pool spawn p50 (s); hpcbridge cold in that run 4 | 1.5 | " \
           "batchspawner (cold, no pool) | 6 | 0.25 |" in overview
    assert "| Dask 3 workers (n3): time to all workers (s) | 6 | dask-jobqueue | 5 | 1.2 |" \
        in overview
    assert "![slurmctld RPCs per minute against running notebook servers]" \
           "(benchmarks/rpc_per_min.png)" in text
    assert "spawn_latency.png" not in text  # not drawn: not embedded
    assert "25.05.0" in text and "8 compute nodes" in text
    assert "## This run" in text and "\n## run\n" not in text


def test_report_says_what_was_not_measured(tmp_path: Path) -> None:
    results = tmp_path / "benchmarks"
    _write(results, spawn=spawn_data())
    overview = report.render(results).split("## Every figure", 1)[1]
    assert "| warm pool spawn p50 (`spawn_warm`) | not measured |" in overview
    assert "| time to all workers (`dask_scale`) | not measured |" in overview
    assert "RPCs/min, 50 running (`spawn`)" not in overview


def test_plots_render_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib",
                        reason="matplotlib is not installed: pip install -e '.[bench]'")
    from bench import plots

    results = tmp_path / "benchmarks"
    _write(results, spawn=spawn_data(), dask_scale=dask_data(),
           spawn_warm={"warm": {"p50": 1.5, "p95": 2.0}, "cold": {"p50": 4.0, "p95": 5.0}})
    (results / "stale.png").write_bytes(b"")
    drawn = {p.name for p in plots.draw_all(results)}
    assert drawn == {"spawn_latency.png", "rpc_per_min.png", "dask_time.png", "spawn_warm.png"}
    for name in drawn:
        data = (results / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    groups = dict(plots.spawn_groups(spawn_data()))
    assert set(groups) == {"cold, idle cluster", "8 at once", "50 at once"}
    assert len(groups["50 at once"][STOCK]) == 48  # only ready spawns have a time
    assert plots.rpc_series(spawn_data())[STOCK] == [(1, 6), (10, 60), (50, 300)]


def test_plot_dropped_when_its_figures_are_gone(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench import plots

    results = tmp_path / "benchmarks"
    _write(results, spawn_warm={"warm": {"p50": None}})
    (results / "spawn_warm.png").write_bytes(b"old")
    assert plots.draw_all(results) == []
    assert not (results / "spawn_warm.png").exists()


def test_warm_step_without_its_module_is_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.__main__ as entry

    monkeypatch.setattr(entry, "WARM", "bench.no_such_module_here")
    assert entry.run_warm(None, quick=True) is None  # type: ignore[arg-type]
    run = entry.Run({"spawn_warm"})
    run.step("spawn_warm", lambda: entry.run_warm(None, quick=True))  # type: ignore[arg-type]
    assert run.steps["spawn_warm"]["status"] == "not measured"
    run.step("other", lambda: 1)  # not selected: not run
    assert "other" not in run.steps

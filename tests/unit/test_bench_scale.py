"""``python -m bench scale``'s pure parts (no testbed): the hub probe's record and its
reading, the timing of status rounds, summary rows, the report section and its plots."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from bench import hub_probe, report, scale, scale_measure
from hpcbridge.poller import StatusPoller


def _step(n: int, ours: float, theirs: float, computed: bool = False) -> dict:
    lag = {"p50_ms": 0.3, "p99_ms": 5.0, "max_ms": 30.0, "samples": 100}
    return {"n": n, "running_jobs": n, "hub_rss_mib": 140 + n / 10, "proxy_rss_mib": 60.0,
            "proxy_routes": n + 1, "db_kib": 100 + n, "nodes": {"rss_mib": n * 14.0},
            "slurmctld": {"rpc_per_min": ours}, "load_avg_1m": 3.0,
            "hub_cpu_percent": {"window": 1.0, "between_polls": 0.9, "during_polls": 20.0},
            "loop_lag": {"all": lag, "during_polls": {**lag, "p99_ms": 9.0}},
            "batchspawner": {"n": n, "rpc_per_min_at_30s": theirs, "computed": computed}}


def scale_data() -> dict:
    return {"idle": {"hub_rss_mib": 140.0},
            "steps": [_step(50, 2.5, 300), _step(100, 2.7, 600), _step(500, 2.7, 3000, True)],
            "burst": {"n": 100, "outcomes": {"ready": 100}, "time_to_all_ready_s": 40.0,
                      "p95_s": 39.0}}


def test_probe_lines_are_read_back_within_the_window(tmp_path: Path) -> None:
    probe = tmp_path / "probe.log"
    probe.write_text("L 100.000 0.50\nL 105.000 12.00\nP 104.500 1.0000 0.2000 50\n"
                     "L 200.000 99.0\nP 300.000 1.0 0.1 50\ngarbage\n")
    lags, polls = hub_probe.read(probe, 99.0, 150.0)
    assert lags == [(100.0, 0.5), (105.0, 12.0)]
    assert polls == [{"at": 104.5, "wall_s": 1.0, "cpu_s": 0.2, "jobs": 50}]
    assert hub_probe.read(tmp_path / "missing", 0, 1) == ([], [])


def test_status_rounds_are_timed_inside_the_hub(tmp_path: Path) -> None:
    class Source:
        async def status(self, job_ids, *, as_user=None):
            return {}

    original = StatusPoller.poll_once
    lines: list[str] = []
    try:
        hub_probe._wrap_polls(lines)
        hub_probe._wrap_polls(lines)  # twice: still one timing per round
        poller = StatusPoller(Source(), interval=30.0)
        poller.track("7", "alice", wake=False)
        asyncio.run(poller.poll_once())
    finally:
        StatusPoller.poll_once = original  # type: ignore[method-assign]
    assert len(lines) == 1 and lines[0].startswith("P ") and lines[0].split()[-1] == "1"


def test_summary_rows_label_computed_batchspawner() -> None:
    rows = scale.summary_rows(scale_data())
    rpc = [r for r in rows if "RPCs/min" in r["measure"]]
    assert [r["ratio"] for r in rpc] == [120.0, 222.2, 1111.1]
    assert "computed" in rpc[-1]["measure"] and "computed" not in rpc[0]["measure"]
    assert "burst of 100" in rows[-1]["measure"]
    assert scale.derived(scale_data())["hub_rss_per_server_mib"] == pytest.approx(0.1)


def test_scale_section_and_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from bench import plots

    results = tmp_path / "benchmarks"
    results.mkdir()
    (results / "scale.json").write_text(json.dumps(
        {**scale_data(), "summary": scale.summary_rows(scale_data())}))
    drawn = {p.name for p in plots.draw_all(results)}
    assert {"scale_rpc.png", "scale_rss.png", "scale_lag.png"} <= drawn
    monkeypatch.setattr(report, "RESULTS", results)
    text = report.render(results)
    assert "## Scale: one hub" in text and "benchmarks/scale_rpc.png" in text


def test_a_stall_of_the_hubs_loop_is_recorded_with_where_it_was_and_its_cpu(
        tmp_path: Path) -> None:
    probe = tmp_path / "probe.log"

    def waits_in_a_blocking_call() -> None:
        time.sleep(0.4)

    def keeps_the_loop_busy() -> None:
        end = time.process_time() + 0.4
        while time.process_time() < end:
            pass

    async def hub() -> None:
        hub_probe.start(str(probe), every=0.02, stall=0.1)
        await asyncio.sleep(0.1)
        waits_in_a_blocking_call()
        await asyncio.sleep(0.1)
        keeps_the_loop_busy()
        await asyncio.sleep(1.2)  # the ticker writes its lines about once a second
        for task in hub_probe._tasks:
            task.cancel()

    since = time.time()
    asyncio.run(hub())
    blocked, busy = hub_probe.read_stalls(probe, since, time.time())
    assert "waits_in_a_blocking_call" in blocked["stack"].split(" < ")[0]
    assert "keeps_the_loop_busy" in busy["stack"]
    assert blocked["ms"] >= 350 and busy["ms"] >= 350
    # CPU from when the watchdog saw the stall (after 120 ms) until the loop was back
    assert blocked["cpu_ms"] < 100 < 200 < busy["cpu_ms"]
    summary = scale_measure.stall_summary([blocked, busy], keep=1)
    assert summary["count"] == 2 and summary["longest"][0]["ms"] == max(blocked["ms"],
                                                                        busy["ms"])

"""PNG plots of the benchmark results (matplotlib, the ``bench`` extra):
``python -m bench.plots`` draws every plot its results allow into ``docs/benchmarks/``.

Each plot is a function of the parsed JSON and an output path, so it can be drawn from
recorded results without a testbed. A plot whose figures are missing is skipped.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from bench._common import RESULTS

OURS = "hpcbridge"
COLORS = {"hpcbridge": "#1f77b4", "batchspawner": "#d62728", "dask-jobqueue": "#d62728",
          "warm": "#2ca02c", "cold": "#7f7f7f"}


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _ready_seconds(block: dict) -> list[float]:
    return [r["seconds"] for r in block.get("runs", [])
            if r.get("outcome") == "ready" and r.get("seconds") is not None]


def spawn_groups(spawn: dict) -> list[tuple[str, dict[str, list[float]]]]:
    """(label, {hub: ready seconds}) per spawn measurement with runs of both hubs."""
    groups = []
    hubs = [h for h in spawn.get("cold", {}) if isinstance(spawn["cold"][h], dict)]
    if spawn.get("cold"):
        groups.append(("cold, idle cluster", {h: _ready_seconds(spawn["cold"][h]) for h in hubs}))
    if conc := spawn.get("concurrent"):
        groups.append((f"{conc['n']} at once", {h: _ready_seconds(conc[h]) for h in hubs
                                                if h in conc}))
    scale = spawn.get("scale", {})
    blocks = {h: scale[h]["concurrent"] for h in hubs if scale.get(h, {}).get("concurrent")}
    if blocks:
        n = next(iter(blocks.values()))["n"]
        groups.append((f"{n} at once", {h: _ready_seconds(b) for h, b in blocks.items()}))
    return [(label, g) for label, g in groups if any(g.values())]


def plot_spawn(spawn: dict, out: Path) -> Path | None:
    """Spawn latency distributions, ours vs stock, per measurement."""
    groups = spawn_groups(spawn)
    if not groups:
        return None
    plt = _pyplot()
    hubs = list(dict.fromkeys(h for _, g in groups for h in g))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(hubs)
    for j, hub in enumerate(hubs):
        pos = [i + (j - (len(hubs) - 1) / 2) * width for i in range(len(groups))]
        data = [g.get(hub, []) or [float("nan")] for _, g in groups]
        box = ax.boxplot(data, positions=pos, widths=width * 0.8, patch_artist=True,
                         showfliers=False, manage_ticks=False,
                         medianprops={"color": "black"})
        for patch in box["boxes"]:
            patch.set_facecolor(COLORS.get(hub, "#999999"))
            patch.set_alpha(0.35)
        for x, values in zip(pos, data, strict=True):
            ax.scatter([x] * len(values), values, s=10, color=COLORS.get(hub, "#999999"),
                       zorder=3, label=None)
        ax.plot([], [], "s", color=COLORS.get(hub, "#999999"), label=hub)
    ax.set_xticks(range(len(groups)), [f"{label}\n(n={max(map(len, g.values()))})"
                                       for label, g in groups])
    ax.set_ylabel("seconds to ready (REST POST → ready)")
    ax.set_ylim(bottom=0)
    ax.set_title("Spawn latency: hpcbridge vs stock batchspawner (same testbed, same run)")
    ax.legend(loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


def rpc_series(spawn: dict) -> dict[str, list[tuple[int, float]]]:
    """hub -> [(running servers, slurmctld RPCs/min)] from the load windows."""
    scale = spawn.get("scale", {})
    return {h: [(w["n"], w["rpc_per_min"]) for w in s.get("windows", [])
                if w.get("rpc_per_min") is not None]
            for h, s in scale.items() if s.get("windows")}


def plot_rpc(spawn: dict, out: Path) -> Path | None:
    """slurmctld RPCs per minute against running servers, ours vs stock."""
    series = rpc_series(spawn)
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for hub, points in series.items():
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, "o-", color=COLORS.get(hub, "#999999"), label=hub)
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(4, 6),
                        fontsize=8)
    _rpc_axes(ax, sorted({x for p in series.values() for x, _ in p}),
              "Scheduler load of the hub's status queries", "upper left")
    # a count of 0 is not drawn on the log scale: it falls below the axis
    values = [y for p in series.values() for _, y in p]
    ax.set_ylim(max(0.5, min((y for y in values if y > 0), default=1) / 2),
                max(values, default=1) * 3)
    return _save(fig, out)


def _rpc_axes(ax, xs: list, title: str, legend: str) -> None:  # type: ignore[no-untyped-def]
    """Log-log axes of slurmctld RPCs per minute against running servers, plain ticks."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.get_xaxis().set_major_formatter(_plain_ticks())
    ax.get_xaxis().set_minor_formatter(_plain_ticks(minor=True))
    ax.get_yaxis().set_major_formatter(_plain_ticks())
    ax.set_xlabel("running notebook servers")
    ax.set_ylabel("slurmctld RPCs per minute (sdiag)")
    ax.set_title(title)
    ax.legend(loc=legend)
    ax.grid(alpha=0.3)


def _plain_ticks(minor: bool = False):  # type: ignore[no-untyped-def]
    from matplotlib.ticker import FuncFormatter, NullFormatter

    return NullFormatter() if minor else FuncFormatter(lambda v, _: f"{v:g}")


def plot_dask(dask: dict, out: Path) -> Path | None:
    """Time to N Dask workers per scenario, ours vs plain dask-jobqueue, runs as dots."""
    results = dask.get("results") or []
    if not results:
        return None
    tools = [k for k in results[0] if isinstance(results[0][k], dict) and "seconds" in
             results[0][k]]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / len(tools)
    for j, tool in enumerate(tools):
        xs = [i + (j - (len(tools) - 1) / 2) * width for i in range(len(results))]
        ys = [r[tool]["seconds"] for r in results]
        ax.bar(xs, ys, width * 0.9, color=COLORS.get(tool, "#999999"), alpha=0.6, label=tool)
        for x, r in zip(xs, results, strict=True):
            runs = [run["seconds"] for run in r[tool].get("runs", [])]
            ax.scatter([x] * len(runs), runs, s=10, color="black", zorder=3)
    ax.set_xticks(range(len(results)), [f"{r['scenario']}\n{r['workers']} workers, "
                                        f"{r['jobs']} jobs" for r in results])
    ax.set_ylabel("seconds to all workers (median bar, runs as dots)")
    ax.set_title("Dask: time to N workers, hpcbridge vs dask-jobqueue")
    ax.legend(loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


def plot_warm(warm: dict, out: Path) -> Path | None:
    """Warm pool vs cold spawn, p50 and p95 (when bench/spawn_warm.py measured them)."""
    from bench.report import warm_figure

    kinds = [k for k in ("warm", "cold") if warm_figure(warm, k, "p50") is not None]
    if len(kinds) < 2:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for j, kind in enumerate(kinds):
        ys = [warm_figure(warm, kind, q) for q in ("p50", "p95")]
        ax.bar([i + (j - 0.5) * 0.4 for i in range(2)], [y or 0 for y in ys], 0.36,
               color=COLORS[kind], label=kind)
    ax.set_xticks(range(2), ["p50", "p95"])
    ax.set_ylabel("seconds to ready")
    ax.set_title("hpcbridge spawn: warm pool vs cold")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


def scale_series(scale: dict, pick: Callable[[dict], float | None]
                 ) -> list[tuple[int, float]]:
    """(running servers, figure) of each step (fewer than asked when spawns failed)."""
    return [(s.get("running_jobs", s["n"]), v) for s in scale.get("steps", [])
            if (v := pick(s)) is not None]


def plot_scale_rpc(scale: dict, out: Path) -> Path | None:
    """bench.scale: slurmctld RPCs/min against running servers (log), batchspawner's
    measured points solid and computed ones hollow."""
    ours = scale_series(scale, lambda s: s["slurmctld"]["rpc_per_min"])
    if not ours:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs, ys = zip(*ours, strict=True)
    ax.plot(xs, [max(y, 0.1) for y in ys], "o-", color=COLORS[OURS], label=OURS)
    for kind, marker in (("measured", "s-"), ("computed", "s--")):
        pts = [(s.get("running_jobs", s["n"]), bs["rpc_per_min_at_30s"]) for s in scale["steps"]
               if (bs := s.get("batchspawner"))
               and bool(bs.get("computed")) == (kind == "computed")]
        if pts:
            bx, by = zip(*pts, strict=True)
            ax.plot(bx, by, marker, color=COLORS["batchspawner"],
                    mfc="none" if kind == "computed" else None,
                    label=f"batchspawner ({kind})")
    ax.axhline(6, color="#2ca02c", lw=0.8, ls=":", label="goal: 6 per minute")
    _rpc_axes(ax, list(xs), "One hub at scale: scheduler load", "center right")
    return _save(fig, out)


def _scale_lines(scale: dict, out: Path, lines: dict[str, Callable[[dict], float | None]],
                 ylabel: str, title: str) -> Path | None:
    series = {label: pts for label, pick in lines.items() if (pts := scale_series(scale, pick))}
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pts in series.items():
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, "o-", label=label)
        for x, y in pts:
            ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(4, 6),
                        fontsize=8)
    ax.set_xticks(sorted({x for pts in series.values() for x, _ in pts}))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("running notebook servers")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, out)


def plot_scale_rss(scale: dict, out: Path) -> Path | None:
    """bench.scale: the hub's and the proxy's RSS against running servers."""
    return _scale_lines(scale, out, {"hub": lambda s: s.get("hub_rss_mib"),
                                     "proxy": lambda s: s.get("proxy_rss_mib")},
                        "resident memory (MiB)", "One hub at scale: memory")


def plot_scale_lag(scale: dict, out: Path) -> Path | None:
    """bench.scale: event-loop lag inside the hub against running servers."""
    lag = lambda w, q: lambda s: s["loop_lag"][w][f"{q}_ms"]  # noqa: E731
    return _scale_lines(scale, out, {"p50": lag("all", "p50"), "p99": lag("all", "p99"),
                                     "p99 during polls": lag("during_polls", "p99")},
                        "event-loop lag (ms)", "One hub at scale: event-loop lag")


def _save(fig, out: Path) -> Path:  # type: ignore[no-untyped-def]
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # no timestamp in the file: the same figures give the same bytes
    fig.savefig(out, dpi=110, metadata={"Software": None})
    fig.clf()
    _pyplot().close(fig)
    return out


#: file drawn -> (results file it reads, how)
PLOTS: dict[str, tuple[str, Callable[[dict, Path], Path | None]]] = {
    "spawn_latency.png": ("spawn", plot_spawn),
    "rpc_per_min.png": ("spawn", plot_rpc),
    "dask_time.png": ("dask_scale", plot_dask),
    "spawn_warm.png": ("spawn_warm", plot_warm),
    "scale_rpc.png": ("scale", plot_scale_rpc),
    "scale_rss.png": ("scale", plot_scale_rss),
    "scale_lag.png": ("scale", plot_scale_lag),
}


def draw_all(results: Path = RESULTS) -> list[Path]:
    drawn = []
    for name, (stem, draw) in PLOTS.items():
        source = results / f"{stem}.json"
        target = results / name
        if source.exists() and (path := draw(json.loads(source.read_text()), target)):
            drawn.append(path)
        elif target.exists():
            target.unlink()  # no figures for it any more: no stale picture
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for path in draw_all(args.results):
        print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

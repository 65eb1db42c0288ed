"""The testbed's own costs: image build, ``up`` to all nodes idle, ``down``, memory.

Run: ``python -m bench.testbed_up``. It works on the testbed named by
HPCBRIDGE_TESTBED_NAME and takes it down to time a cold ``up`` (with cached images), so
do not point it at a testbed someone else is using. A testbed that was up is brought up
again at the end. Images are built only when absent (the first build is timed then);
otherwise the build is reported as "cached" with the time the check took.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

from bench._common import write_results
from slurm_testbed import images
from slurm_testbed.cluster import Testbed

_SIZE = re.compile(r"^\s*([\d.]+)\s*([kKMGT]?i?B)\s*$")
_FACTORS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
            "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
BUILD_WORDS = ("building", "debootstrap", "downloading", "imported", "built")


def parse_size(text: str) -> int:
    """``15.54MB`` (podman, decimal) or ``15.5MiB`` (Docker) as bytes."""
    m = _SIZE.match(text)
    if not m or m.group(2) not in _FACTORS:
        raise ValueError(f"not a size: {text!r}")
    return int(float(m.group(1)) * _FACTORS[m.group(2)])


def build_images(tb: Testbed) -> dict:
    log: list[str] = []

    def progress(msg: str) -> None:
        log.append(msg)
        tb.progress(msg)

    started = time.monotonic()
    images.ensure_images(tb.engine, tb.generation, tb.shared_dir / "build", progress)
    seconds = round(time.monotonic() - started, 1)
    built = any(m.lstrip().lower().startswith(BUILD_WORDS) for m in log)
    return {"build": "built" if built else "cached", "build_seconds": seconds}


def memory(tb: Testbed) -> dict:
    """Memory of the testbed's containers, as ``podman stats`` reports it."""
    names = [tb.container_name(r) for r in ("db", "ctl", "login", *tb.info().nodes)]
    proc = tb.engine.run("stats", "--no-stream", "--format", "json", *names, timeout=120)
    rows = json.loads(proc.stdout)
    per = {r["name"].removeprefix(f"{tb.name}-"): parse_size(r["mem_usage"].split("/")[0])
           for r in rows}
    total = sum(per.values())
    return {"memory_bytes": per, "memory_total_mib": round(total / 2**20, 1),
            "memory_total_gib": round(total / 2**30, 3)}


def measure(tb: Testbed, nodes: int, settle: float, repeat: int) -> dict:
    result: dict = build_images(tb)  # before any up: a first build is what is timed
    if tb.leftovers()["containers"]:
        tb.down(quiet=True)
    ups, downs = [], []
    for i in range(repeat):
        started = time.monotonic()
        tb.up(nodes=nodes)
        ups.append(round(time.monotonic() - started, 1))
        if i == 0:
            time.sleep(settle)  # let the daemons finish starting before memory is read
            result.update(memory(tb))
        started = time.monotonic()
        tb.down(quiet=True)
        downs.append(round(time.monotonic() - started, 1))
    result.update({
        "up_seconds": statistics.median(ups), "up_seconds_runs": ups,
        "down_seconds": statistics.median(downs), "down_seconds_runs": downs,
        "leftovers_after_down": tb.leftovers(),
    })
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="one up/down cycle")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3, help="up/down cycles (median)")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds between all nodes idle and reading memory")
    return p


def bench(args: argparse.Namespace) -> dict:
    """Cycles of the testbed named by HPCBRIDGE_TESTBED_NAME; a testbed that was up is
    brought up again at the end (with as many nodes as it had)."""
    if args.quick:
        args.repeat = 1
    tb = Testbed()
    was_up = tb.reusable()
    nodes_before = len(tb.info().nodes) if was_up else 0
    data = {"nodes": args.nodes, **measure(tb, args.nodes, args.settle, args.repeat)}
    if was_up:
        tb.up(nodes=nodes_before)  # as it was found
    if data["build"] == "cached":
        print(f"image build: cached (checked in {data['build_seconds']} s)")
    else:
        print(f"image build: {data['build_seconds']} s (first build)")
    print(f"up (cached images, to all nodes idle): {data['up_seconds']} s median of "
          f"{data['up_seconds_runs']}")
    print(f"down: {data['down_seconds']} s median of {data['down_seconds_runs']}")
    print(f"memory: {data['memory_total_mib']} MiB ({data['memory_total_gib']} GiB) in "
          f"{len(data['memory_bytes'])} containers")
    path = write_results("testbed_up", data)
    print(f"wrote {path.name}")
    return data


def main(argv: list[str] | None = None) -> int:
    bench(parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

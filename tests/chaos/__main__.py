"""``python -m tests.chaos [--steps N] [--seed S] [--actions A,B] | --replay FILE``

Runs against the testbed named by HPCBRIDGE_TESTBED_NAME (brought up if needed, left up)
and a JupyterHub of its own on ports 8400/8481 + HPCBRIDGE_TEST_PORT_OFFSET. Prints the
seed first; on a broken invariant, the seed, the violations and the steps, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

from tests.chaos.machine import ACTIONS, replay, reproduction, run_seeded, write_log
from tests.chaos.observe import chromium_available
from tests.chaos.world import BROWSER_EVERY, SETTLE, InvariantBroken, World


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--actions", default=",".join(ACTIONS),
                        help=f"comma-separated subset of: {', '.join(ACTIONS)}")
    parser.add_argument("--replay", type=Path, help="a step log written by an earlier run")
    parser.add_argument("--settle", type=float, default=SETTLE,
                        help="seconds an eventual invariant may take to hold (default "
                             "%(default)s)")
    parser.add_argument("--browser-every", type=int, default=None,
                        help="open a ready server in Chromium every N steps (default 20 "
                             "when Chromium and playwright are installed; 0: never)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the step log and the hub (default /tmp/chaos-SEED)")
    args = parser.parse_args(argv)

    from slurm_testbed.cluster import Testbed

    recorded = json.loads(args.replay.read_text()) if args.replay else None
    seed = None if recorded else (args.seed if args.seed is not None
                                  else random.SystemRandom().randrange(2**32))
    actions = recorded["actions"] if recorded else args.actions.split(",")
    out = args.out or Path(f"/tmp/chaos-{seed if seed is not None else 'replay'}")
    out.mkdir(parents=True, exist_ok=True)
    what = f"replay of {args.replay}" if recorded else f"seed {seed}, {args.steps} steps"
    print(f"chaos: {what}; actions {','.join(actions)}; output in {out}", flush=True)

    tb = Testbed()
    tb.up(nodes=int(os.environ.get("HPCBRIDGE_TESTBED_NODES", "3")))
    world = World(tb, out / "hub", port_offset=int(os.environ.get(
        "HPCBRIDGE_TEST_PORT_OFFSET", "0")), settle=args.settle,
        log=lambda line: print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True),
        browser_every=(args.browser_every if args.browser_every is not None
                       else BROWSER_EVERY if chromium_available() else 0))
    started = time.time()
    log_path = out / "steps.json"
    broken = None
    world.up()
    try:
        if recorded:
            replay(world, recorded["steps"])
        else:
            run_seeded(world, seed, args.steps, actions)
    except InvariantBroken as exc:
        broken = exc
    finally:
        if broken is None:
            if found := world.down():
                broken = InvariantBroken(found)
        else:
            world.down(check=False)
        write_log(world, log_path, seed=seed, actions=actions, started=started, broken=broken)
    minutes = (time.time() - started) / 60
    if broken:
        print(reproduction(world, log_path, seed, actions, broken), flush=True)
        return 1
    counts = Counter(step["rule"] for step in world.steps)
    print(f"chaos: {len(world.steps)} steps, seed {seed}, {minutes:.1f} min, "
          f"0 invariant breaks; step log {log_path}\n"
          f"steps per action: {json.dumps(dict(counts.most_common()))}\n"
          f"as the users: {json.dumps(world.user_checks)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

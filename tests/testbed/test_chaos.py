"""A short seeded run of the chaos suite (tests/chaos/) against the testbed and a real
JupyterHub: random interleavings of the actions below, every invariant checked after
every step. Long runs: ``python -m tests.chaos --steps 500`` (docs/architecture.md)."""

from __future__ import annotations

import os
import time

import pytest

from tests.chaos.machine import ACTIONS, reproduction, run_seeded, write_log
from tests.chaos.observe import chromium_available
from tests.chaos.world import BROWSER_EVERY, InvariantBroken, World
from tests.testbed.hubtools import port_offset

# a slow module: in the second pytest of a split session (tests/generation_split.py)
pytestmark = [pytest.mark.testbed, pytest.mark.beside]

#: chosen so that the 40 steps hold every action of CI_ACTIONS (a unit test checks it)
SEED = 20261468
STEPS = 40
#: The actions of the CI run: every action (an action whose break is found stays out
#: until its fix lands; docs/architecture.md, "Invariants under faults").
CI_ACTIONS = ACTIONS


def test_chaos_short_seeded_run(testbed, tmp_path):
    print(f"chaos: seed {SEED}, {STEPS} steps, actions {','.join(CI_ACTIONS)}")
    # Chromium is there in CI (the browser tests need it); elsewhere it may be missing
    browser = chromium_available() or os.environ.get("CI") == "true"
    world = World(testbed, tmp_path / "hub", port_offset=port_offset(), log=print,
                  browser_every=BROWSER_EVERY if browser else 0)
    started = time.time()
    broken = None
    world.up()
    try:
        run_seeded(world, SEED, STEPS, CI_ACTIONS)
    except InvariantBroken as exc:
        broken = exc
    finally:
        if found := world.down(check=broken is None):
            broken = InvariantBroken(found)
        log = tmp_path / "steps.json"
        write_log(world, log, seed=SEED, actions=CI_ACTIONS, started=started, broken=broken)
    print(f"chaos: {len(world.steps)} steps in {(time.time() - started) / 60:.1f} min; as the "
          f"users: {world.user_checks}")
    assert broken is None, reproduction(world, log, SEED, CI_ACTIONS, broken)

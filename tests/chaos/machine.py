"""The chaos suite's state machine (hypothesis' RuleBasedStateMachine) and its runners.

A run is seeded: the seed picks every rule and argument, and no precondition reads the
live cluster (only the run's own step counts), so the same seed gives the same steps.
Hypothesis' shrinking would replay a failing run hundreds of times against a live
cluster; runs use the generate phase only, and a broken invariant is raised as
:class:`~tests.chaos.world.InvariantBroken` (a BaseException, which hypothesis lets
through). What reproduces a break is the step log: ``python -m tests.chaos --replay FILE``
runs the same steps again, without hypothesis.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar
from unittest import mock

import hypothesis
from hypothesis import HealthCheck, Phase, Verbosity, reject, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import providers
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.chaos.invariants import Violation
from tests.chaos.world import (
    ATTACKER,
    REFUSED_OPTIONS,
    REFUSED_SLOTS,
    SERVERS,
    USERS,
    InvariantBroken,
    World,
)

#: every action; COOLDOWN: steps that must pass before a costly one runs again
ACTIONS = ("spawn", "stop", "spawn_then_stop", "walltime", "hub_kill", "slurmctld_outage",
           "sshd_outage", "node_kill", "inject_forged", "inject_impostor", "refused",
           "refused_named")
COOLDOWN = {"hub_kill": 4, "slurmctld_outage": 6, "sshd_outage": 6, "node_kill": 12,
            "walltime": 3}
#: Steps per hypothesis run; a longer run is a chain of seeded runs on the same world.
#: Within one run hypothesis likes to repeat a choice (40 steps of one seed were 40
#: spawns); short runs mix the actions well (every action of a 7-action set in 40 steps
#: for most seeds).
SEGMENT = 10

users = st.sampled_from(USERS)
servers = st.sampled_from(SERVERS)


def _ready(action: str):
    """A precondition: the action is enabled and its cooldown has passed. It reads only
    the machine's own steps and what the segment began with: hypothesis replays the
    choices of a dropped example and requires the same rules to be open again."""
    def ready(machine: ChaosMachine) -> bool:
        if action not in machine.enabled:
            return False
        if action in machine.last:
            since = machine.count - machine.last[action]
        else:
            since = machine.carry.get(action, 10**6) + machine.count
        return since >= COOLDOWN.get(action, 0)
    return ready


def _since_last(steps: list[dict]) -> dict[str, int]:
    """Action -> how many steps before the next one it last ran (1: the step before)."""
    return {s["rule"]: len(steps) + 1 - s["step"] for s in steps}


class ChaosMachine(RuleBasedStateMachine):
    """Rules are the actions of tests/chaos/world.py; after each, the invariants."""

    world: World
    enabled: frozenset[str] = frozenset(ACTIONS)
    #: steps of the whole run; hypothesis may run a step more than asked (below)
    limit: int = 0
    #: action -> steps since it last ran, when this segment began
    carry: ClassVar[dict[str, int]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.last: dict[str, int] = {}

    @initialize(nonce=st.integers(0, 2**32 - 1))
    def begin(self, nonce: int) -> None:
        # Hypothesis first tries the simplest example (every choice zero): one rule over
        # and over. Skip it; the seeded random example is the run.
        if nonce == 0:
            reject()

    def step(self, action: str, **args) -> None:
        self.count += 1
        self.last[action] = self.count
        steps = self.world.steps
        # a dropped example's steps did run: the world's own log has the last word
        since = _since_last(steps).get(action, 10**6)
        if len(steps) >= self.limit or since < COOLDOWN.get(action, 0):
            return
        _step(self.world, action, args)

    @precondition(_ready("spawn"))
    @rule(user=users, server=servers)
    def spawn(self, user: str, server: str) -> None:
        self.step("spawn", user=user, server=server)

    @precondition(_ready("walltime"))
    @rule(user=users, server=servers)
    def walltime(self, user: str, server: str) -> None:
        self.step("walltime", user=user, server=server)

    @precondition(_ready("stop"))
    @rule(user=users, server=servers)
    def stop(self, user: str, server: str) -> None:
        self.step("stop", user=user, server=server)

    @precondition(_ready("spawn_then_stop"))
    @rule(user=users, server=servers, delay=st.sampled_from([0.0, 0.3, 1.0, 2.0, 4.0]))
    def spawn_then_stop(self, user: str, server: str, delay: float) -> None:
        self.step("spawn_then_stop", user=user, server=server, delay=delay)

    @precondition(_ready("hub_kill"))
    @rule(down_for=st.sampled_from([0.0, 2.0, 5.0]))
    def hub_kill(self, down_for: float) -> None:
        self.step("hub_kill", down_for=down_for)

    @precondition(_ready("slurmctld_outage"))
    @rule(seconds=st.sampled_from([5, 10, 20]))
    def slurmctld_outage(self, seconds: int) -> None:
        self.step("slurmctld_outage", seconds=seconds)

    @precondition(_ready("sshd_outage"))
    @rule(seconds=st.sampled_from([5, 10, 20]))
    def sshd_outage(self, seconds: int) -> None:
        self.step("sshd_outage", seconds=seconds)

    @precondition(_ready("node_kill"))
    @rule(node=st.sampled_from(["c1", "c2", "c3"]), seconds=st.sampled_from([5, 15]))
    def node_kill(self, node: str, seconds: int) -> None:
        self.step("node_kill", node=node, seconds=seconds)

    @precondition(_ready("inject_forged"))
    @rule(victim=users)
    def inject_forged(self, victim: str) -> None:
        self.step("inject_forged", victim=victim)

    @precondition(_ready("inject_impostor"))
    @rule(owner=st.sampled_from([*USERS, ATTACKER]), named=users, ours=st.booleans())
    def inject_impostor(self, owner: str, named: str, ours: bool) -> None:
        self.step("inject_impostor", owner=owner, named=named, ours=ours)

    @precondition(_ready("refused"))
    @rule(slot=st.sampled_from([s for s in REFUSED_SLOTS if not s[1]]),
          kind=st.sampled_from(sorted(REFUSED_OPTIONS)))
    def refused(self, slot: tuple[str, str], kind: str) -> None:
        self.step("refused", slot=list(slot), kind=kind)

    @precondition(_ready("refused_named"))
    @rule(slot=st.sampled_from([s for s in REFUSED_SLOTS if s[1]]),
          kind=st.sampled_from(sorted(REFUSED_OPTIONS)))
    def refused_named(self, slot: tuple[str, str], kind: str) -> None:
        self.step("refused_named", slot=list(slot), kind=kind)


def _settings(steps: int) -> settings:
    return settings(max_examples=1, stateful_step_count=steps, phases=[Phase.generate],
                    database=None, deadline=None, suppress_health_check=list(HealthCheck),
                    verbosity=Verbosity.quiet, print_blob=False)


def run_seeded(world: World, seed: int, steps: int, actions: Iterable[str] = ACTIONS) -> None:
    """``steps`` steps chosen by ``seed`` (a few seeded hypothesis runs of SEGMENT steps)."""
    unknown = set(actions) - set(ACTIONS)
    if unknown:
        raise ValueError(f"unknown actions {sorted(unknown)}; known: {', '.join(ACTIONS)}")
    ChaosMachine.world = world
    ChaosMachine.enabled = frozenset(actions)
    ChaosMachine.limit = steps
    segments = random.Random(seed)
    with _no_local_constants():
        while len(world.steps) < steps:
            before = len(world.steps)
            ChaosMachine.carry = _since_last(world.steps)
            machine = hypothesis.seed(segments.getrandbits(64))(ChaosMachine)
            # The initialize rule counts as one of hypothesis' steps. Hypothesis enables
            # a random subset of the rules per example (swarm testing); when cooldowns
            # block all of them it drops the example after a step and runs another: a
            # segment can hold a step more than asked (never the run: ``limit``).
            count = min(SEGMENT, steps - before) + 1
            run_state_machine_as_test(machine, settings=_settings(count))
            if len(world.steps) == before:
                raise RuntimeError("hypothesis ran no step")


@contextlib.contextmanager
def _no_local_constants() -> Iterator[None]:
    """Hypothesis draws now and then (5 %) one of the constants it finds in the source
    of every local module loaded so far: the same seed would choose other steps in a
    process that imported other modules (a unit test after others, pytest, the command
    line). A run draws from none; hypothesis' own constant pool does not change with
    imports. Internal to hypothesis (its conjecture providers): checked by a unit test."""
    cache = providers.CONSTANTS_CACHE.cache
    cache.clear()
    with mock.patch.object(providers, "_get_local_constants", providers.Constants):
        try:
            yield
        finally:
            cache.clear()


def replay(world: World, steps: list[dict]) -> None:
    """The steps of a step log, in order, each followed by the checks."""
    for step in steps:
        _step(world, step["rule"], step["args"])


def _step(world: World, action: str, args: dict) -> None:
    """One step and the checks. A step that fails (a fault helper timing out, the hub not
    starting again) ends the run like a broken invariant: any other exception would make
    hypothesis run the whole example again against the live cluster to report it."""
    try:
        world.do(action, **args)
    except Exception as exc:
        raise InvariantBroken([Violation("step-failed", f"{action} raised "
                                         f"{type(exc).__name__}: {exc}", permanent=True)]
                              ) from exc
    if found := world.check():
        raise InvariantBroken(found)


def write_log(world: World, path: Path, *, seed: int | None, actions: Iterable[str],
              started: float, broken: InvariantBroken | None) -> None:
    path.write_text(json.dumps({
        "seed": seed, "actions": sorted(actions), "steps": world.steps,
        "duration_s": round(time.time() - started, 1),
        "violations": [str(v) for v in broken.violations] if broken else [],
        "answers": world.answers, "hub_log": str(world.hub.dir / "jupyterhub.log"),
        "user_checks": getattr(world, "user_checks", {}),
    }, indent=1))


def reproduction(world: World, path: Path, seed: int | None, actions: Iterable[str],
                 broken: InvariantBroken, tail: int = 25) -> str:
    """What to print when an invariant breaks: the seed, the violations, the last steps
    and the two ways to run the same steps again."""
    shown = world.steps[-tail:]
    lines = [f"INVARIANT BROKEN after step {len(world.steps)} (seed {seed})",
             *(f"  {v}" for v in broken.violations),
             f"steps (last {len(shown)} of {len(world.steps)}; all in {path}):",
             *(f"  {s['step']:4d} {s['rule']} {json.dumps(s['args'])}" for s in shown),
             f"hub log: {world.hub.dir / 'jupyterhub.log'}",
             f"replay:  python -m tests.chaos --replay {path}"]
    if seed is not None:
        lines.append(f"or:      python -m tests.chaos --seed {seed} --steps {len(world.steps)}"
                     f" --actions {','.join(sorted(actions))}")
    return "\n".join(lines)

"""Shared pytest set-up: fast unit tests first, testbed tests after, `down` last.

The ``testbed`` fixture brings the containerized SLURM cluster up once per session (or
reuses one that is already up, and then leaves it up). Without a container engine,
testbed tests skip on a developer's machine and fail under ``CI=true``.

The test session never touches the demo (``./dev hub``): unless ``HPCBRIDGE_TESTBED_NAME``
names one, it runs its own testbed, ``hpcbridge-test``, with its own state folder and its
own homes, and its hubs listen on ports of their own (8100+, not the demo's 8000/8081).

Slurm generations (slurm_testbed/generations.py): tests run on one generation, picked
with ``--slurm VERSION`` or ``HPCBRIDGE_TESTBED_SLURM`` (default: the testbed's
default). Tests marked ``both_generations`` run once on each generation, the generation
in their id (``test_x[slurm-24.11]``); each generation's testbed has a name of its own
and stays up until the session ends, so the runs do not restart each other's.
"""

from __future__ import annotations

import os

import pytest

from tests import generation_split

#: the test session's own testbed when none is named (the demo's is ``hpcbridge-testbed``)
TEST_TESTBED = "hpcbridge-test"


def _own_testbed() -> None:
    if "HPCBRIDGE_TESTBED_NAME" not in os.environ:
        os.environ["HPCBRIDGE_TESTBED_NAME"] = TEST_TESTBED
        # a state folder exported for the demo's testbed is not this session's
        os.environ.pop("HPCBRIDGE_TESTBED_DIR", None)


_own_testbed()


def pytest_addoption(parser):
    group = parser.getgroup("hpcbridge testbed")
    group.addoption("--slurm", default=None, metavar="VERSION",
                    help="Slurm generation of the testbed (default: $HPCBRIDGE_TESTBED_SLURM, "
                         "else the testbed's default)")
    group.addoption("--slurm-generations", default=None, metavar="V1,V2",
                    help="generations the tests marked both_generations run on (default: "
                         "$HPCBRIDGE_TEST_SLURM_GENERATIONS, else every generation)")


@pytest.hookimpl(trylast=True)  # after pytest groups items by the generation they run on
def pytest_collection_modifyitems(config, items):
    default = _default_generation(config)

    def rank(item) -> int:
        if item.get_closest_marker("session_end"):
            return 4
        if item.get_closest_marker("testbed_last"):
            return 3
        if not item.get_closest_marker("testbed"):
            return 0
        if item.get_closest_marker("beside") and generation_split.may_split(config):
            return 2  # to the second pytest, with the other generation's tests
        # another generation's tests after the default's: its testbed and hub start late
        callspec = getattr(item, "callspec", None)
        other = callspec is not None and callspec.params.get("slurm_generation",
                                                             default) != default
        return 2 if other else 1

    items.sort(key=rank)  # stable: keeps file order inside each group
    generation_split.plan(config, items, {item.nodeid for item in items if rank(item) == 2})


def pytest_configure(config):
    config.pluginmanager.register(generation_split, "generation_split")
    if config.getoption("--slurm"):  # the CLI the tests run (`hpcbridge up`) starts it too
        os.environ["HPCBRIDGE_TESTBED_SLURM"] = config.getoption("--slurm")
    config.addinivalue_line("markers", "testbed_last: runs after every other testbed test")
    config.addinivalue_line(
        "markers", "session_end: runs last of all, after the session's testbed went down")
    config.addinivalue_line(
        "markers", "both_generations: runs once on every Slurm generation of the testbed")
    config.addinivalue_line(
        "markers", "beside: a slow module that runs in the second pytest of a split session, "
                   "on that one's own testbed of the default generation "
                   "(tests/generation_split.py)")


def _default_generation(config) -> str:
    from slurm_testbed import generations

    return generations.get(config.getoption("--slurm")).slurm


def _generations(config) -> list[str]:
    from slurm_testbed import generations

    default = _default_generation(config)
    wanted = (config.getoption("--slurm-generations")
              or os.environ.get("HPCBRIDGE_TEST_SLURM_GENERATIONS") or "")
    names = [generations.get(n.strip()).slurm for n in wanted.split(",") if n.strip()]
    names = names or list(generations.GENERATIONS)
    return sorted(set(names), key=lambda n: (n != default, n))  # the default one first


def pytest_generate_tests(metafunc):
    if (metafunc.definition.get_closest_marker("both_generations")
            and "slurm_generation" in metafunc.fixturenames):
        names = _generations(metafunc.config)
        metafunc.parametrize("slurm_generation", names, indirect=True, scope="session",
                             ids=[f"slurm-{n}" for n in names])


class TestbedPool:
    """One testbed per generation, started on first use, stopped at the session's end
    (unless it was up before, or HPCBRIDGE_TESTBED_KEEP=1)."""

    __test__ = False

    def __init__(self, default: str) -> None:
        self.default = default
        self.started: dict[str, tuple[object, bool]] = {}
        self.failed: dict[str, Exception] = {}

    def get(self, slurm: str):
        from slurm_testbed import generations
        from slurm_testbed.cluster import Testbed, testbed_name

        if slurm in self.failed:  # one attempt per generation and session
            raise self.failed[slurm]
        if slurm not in self.started:
            name = testbed_name()
            if slurm != self.default:
                name = f"{name}-{generations.get(slurm).slug}"
            tb = Testbed(name=name, slurm=slurm)
            was_up = tb.reusable()
            try:
                tb.up(nodes=int(os.environ.get("HPCBRIDGE_TESTBED_NODES", "3")))
            except Exception as exc:
                self.failed[slurm] = exc
                raise
            self.started[slurm] = (tb, was_up)
            if slurm == self.default:
                generation_split.default_testbed_up()
        return self.started[slurm][0]

    def close(self) -> None:
        if os.environ.get("HPCBRIDGE_TESTBED_KEEP") == "1":
            return
        for tb, was_up in self.started.values():
            if not was_up:
                tb.down()  # type: ignore[attr-defined]


@pytest.fixture(scope="session", autouse=True)
def demo_beside():
    """With HPCBRIDGE_TEST_BESIDE_DEMO=1 (CI): the demo of ``./dev hub``, started before
    the session's first test and stopped after its last (tests/testbed/demo.py)."""
    from tests.testbed import demo

    if not demo.enabled():
        yield None
        return
    watched = demo.Demo()
    if watched.running():
        pytest.fail(f"a demo runs here already; {demo.ENABLE}=1 starts one of its own")
    try:
        watched.start()
        yield watched
        # after every other fixture's teardown too (this one was set up first)
        problems = watched.before.differences(watched.snapshot())
        assert not problems, f"the session changed the demo beside it: {problems}"
    finally:
        watched.stop()


@pytest.fixture(scope="module", autouse=True)
def no_node_left_drained(testbed_pool):
    """Before each module: a node Slurm drained because a job's processes outlived
    UnkillableStepTimeout under the machine's load is put back (a drained node made
    later modules' jobs wait forever). Prints what it resumed."""
    from slurm_testbed import faults

    for tb, _ in testbed_pool.started.values():
        faults.resume_unkillable(tb)  # type: ignore[arg-type]
    yield


@pytest.fixture(scope="session")
def testbed_pool(request):
    pool = TestbedPool(_default_generation(request.config))
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def slurm_generation(request) -> str:
    """The Slurm generation of this test's testbed ("22.05", "24.11")."""
    return getattr(request, "param", None) or _default_generation(request.config)


@pytest.fixture(scope="session")
def testbed(testbed_pool, slurm_generation):
    from slurm_testbed.errors import TestbedError

    try:
        return testbed_pool.get(slurm_generation)
    except TestbedError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"testbed unavailable under CI: {exc}")
        pytest.skip(f"testbed unavailable: {exc}")

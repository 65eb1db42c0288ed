"""Shared pytest set-up: fast unit tests first, testbed tests after, `down` last.

The ``testbed`` fixture brings the containerized SLURM cluster up once per session (or
reuses one that is already up, and then leaves it up). Without a container engine,
testbed tests skip on a developer's machine and fail under ``CI=true``.

The test session never touches the demo (``./dev hub``): unless ``HPCBRIDGE_TESTBED_NAME``
names one, it runs its own testbed, ``hpcbridge-test``, with its own state folder and its
own homes, and its hubs listen on ports of their own (8100+, not the demo's 8000/8081).
"""

from __future__ import annotations

import os

import pytest

#: the test session's own testbed when none is named (the demo's is ``hpcbridge-testbed``)
TEST_TESTBED = "hpcbridge-test"


def _own_testbed() -> None:
    if "HPCBRIDGE_TESTBED_NAME" not in os.environ:
        os.environ["HPCBRIDGE_TESTBED_NAME"] = TEST_TESTBED
        # a state folder exported for the demo's testbed is not this session's
        os.environ.pop("HPCBRIDGE_TESTBED_DIR", None)


_own_testbed()


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        if item.get_closest_marker("testbed_last"):
            return 2
        return 1 if item.get_closest_marker("testbed") else 0

    items.sort(key=rank)  # stable: keeps file order inside each group


def pytest_configure(config):
    config.addinivalue_line("markers", "testbed_last: runs after every other testbed test")


@pytest.fixture(scope="session")
def testbed():
    from hpcbridge.errors import TestbedError
    from slurm_testbed.cluster import Testbed

    tb = Testbed()
    try:
        was_up = tb.reusable()
        tb.up(nodes=int(os.environ.get("HPCBRIDGE_TESTBED_NODES", "3")))
    except TestbedError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"testbed unavailable under CI: {exc}")
        pytest.skip(f"testbed unavailable: {exc}")
    yield tb
    if not was_up and os.environ.get("HPCBRIDGE_TESTBED_KEEP") != "1":
        tb.down()

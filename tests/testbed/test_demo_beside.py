"""``./dev test`` while ``./dev hub`` runs leaves the demo alone (issue 14 item 8).

With HPCBRIDGE_TEST_BESIDE_DEMO=1 (CI sets it), the session started the demo as
``./dev hub`` does before its first test (tests/testbed/demo.py). This test runs last of
all, after the session's own testbed went down: the demo's containers, network, volumes
and hub process are the ones recorded at its start, alice's home there is as it was, and
alice still spawns on the demo and her server answers.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import requests

from tests.testbed import demo

pytestmark = [pytest.mark.testbed, pytest.mark.session_end]


def test_the_demo_beside_the_session_is_untouched_and_alice_still_spawns(demo_beside):  # type: ignore[no-untyped-def]
    if demo_beside is None:
        message = f"the session ran without a demo beside it ({demo.ENABLE}=1 starts one)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert demo.cli("status").returncode == 0, "the demo's hub does not answer"
    after = demo_beside.snapshot()
    assert not demo_beside.before.differences(after), demo_beside.before.differences(after)

    api = demo_beside.api()
    r = api.spawn(demo.USER, {"preset": "debug"})
    assert r.status_code in (201, 202), r.text
    session_id = None
    try:
        state = api.wait_ready(demo.USER)["state"]
        job_id, session_id = state["job_id"], state["session"]["id"]
        token = api.user_token(demo.USER)
        status = requests.get(f"{demo.DEMO_URL}/user/{demo.USER}/api/status", timeout=30,
                              headers={"Authorization": f"token {token}"})
        assert status.status_code == 200, status.text
        # her server runs as a job of the demo's cluster, as her
        squeue = demo_beside.testbed.login_exec(
            demo.USER, ["squeue", "-h", "-j", job_id, "-o", "%u %T"]).stdout.decode().split()
        assert squeue == [demo.USER, "RUNNING"], squeue
    finally:
        api.stop(demo.USER)
        api.wait_stopped(demo.USER)
        if session_id:  # the hub writes the record's end after the stop (in the background)
            _wait_record_end(demo_beside.testbed, demo.USER, session_id)
        # her server wrote its log and record: what the session's own teardown must leave
        # from now on
        demo_beside.before = demo_beside.snapshot()


def _wait_record_end(testbed, user: str, session_id: str, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    """Until her session record has its end (docs/sessions.md: the hub writes it from the
    scheduler's accounting, waiting up to 35 s for the step's peak memory)."""
    path = f"/home/{user}/.hpcbridge/sessions/{session_id}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        read = testbed.login_exec(user, ["cat", path])
        if read.returncode == 0 and json.loads(read.stdout).get("end"):
            return
        time.sleep(2)
    raise AssertionError(f"{user}'s session record {session_id} got no end in {timeout} s")

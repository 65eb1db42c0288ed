"""``./dev test`` while ``./dev hub`` runs leaves the demo alone (issue 14 item 8).

With HPCBRIDGE_TEST_BESIDE_DEMO=1 (CI sets it), the session started the demo as
``./dev hub`` does before its first test (tests/testbed/demo.py). This test runs last of
all, after the session's own testbed went down: the demo's containers, network, volumes
and hub process are the ones recorded at its start, alice's home there is as it was, and
alice still spawns on the demo and her server answers.
"""

from __future__ import annotations

import os

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
    try:
        job_id = api.wait_ready(demo.USER)["state"]["job_id"]
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
        # her server wrote its log: what the session's own teardown must leave from now on
        demo_beside.before = demo_beside.snapshot()

"""A user's home runs out of space (issue F): the spawn is refused with the cause before
anything is submitted, and a running server is neither dropped nor left orphaned.

The testbed's ``dave`` (config.SMALL_HOME_USER, proj_a) has a home of its own: a small
tmpfs shared by the login and compute nodes, filled here with ``dd`` as dave.
"""

from __future__ import annotations

import time

import pytest
import requests

from slurm_testbed import config, faults
from tests.testbed.hubtools import squeue

pytestmark = pytest.mark.testbed

USER = config.SMALL_HOME_USER
HOME = f"/home/{USER}"
FILLER = f"{HOME}/filler"


def _as_dave(testbed, *argv: str):
    return testbed.login_exec(USER, list(argv))


def _fill_home(testbed) -> None:
    proc = _as_dave(testbed, "dd", "if=/dev/zero", f"of={FILLER}", "bs=64k")
    assert b"No space left on device" in proc.stderr, proc.stderr
    avail = _as_dave(testbed, "df", "--output=avail", HOME).stdout.split()[-1]
    assert avail == b"0"


def _env_files(testbed) -> list[str]:
    out = _as_dave(testbed, "find", HOME, "-name", "env.*").stdout.decode()
    return out.split()


def _wait_job_gone(testbed, job_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = _as_dave(testbed, "squeue", "-h", "-j", job_id, "-o", "%T").stdout.decode().strip()
        if state in ("", "CANCELLED", "COMPLETED") or time.monotonic() > deadline:
            return state
        time.sleep(1)


@pytest.fixture
def dave(hub, testbed):
    """dave as a hub user (not a login of the hub fixture: the admin API adds him), with
    a home that has room again and no job or server at the end."""
    r = hub.request("POST", f"/users/{USER}")
    assert r.status_code in (201, 409), r.text
    _as_dave(testbed, "rm", "-f", FILLER)
    yield USER
    _as_dave(testbed, "rm", "-f", FILLER)
    if hub.server(USER):
        hub.stop(USER)
        hub.wait_stopped(USER)
    faults.cancel_all(testbed, [USER])


def test_full_home_refuses_the_spawn_with_the_cause_and_submits_nothing(hub, testbed, dave):
    _fill_home(testbed)
    r = hub.spawn(USER, {"preset": "debug"})
    # the spawner writes the server's private environment file into the home first
    assert r.status_code == 507, (r.status_code, r.text)
    message = r.json()["message"]
    assert f"your home directory {HOME} is full" in message
    assert "No space left on device" in message and f"{HOME}/.hpcbridge/" in message
    assert hub.server(USER) == {}
    assert squeue(testbed, USER, "%i") == []
    assert _env_files(testbed) == []


def test_home_filling_up_under_a_running_server_drops_nothing_and_stop_cancels(
        hub, testbed, dave):
    if not hub.server(USER).get("ready"):
        r = hub.spawn(USER, {"preset": "debug"})
        assert r.status_code in (201, 202), r.text
    server = hub.wait_ready(USER)
    job_id = server["state"]["job_id"]
    token = hub.user_token(USER)
    headers = {"Authorization": f"token {token}"}
    _fill_home(testbed)
    # the server logs every request into its job log in the full home; four poll rounds
    # of the hub (status_interval 3 s) later it is still the same, reachable server
    for _ in range(4):
        status = requests.get(f"{hub.url}/user/{USER}/api/status", headers=headers, timeout=30)
        assert status.status_code == 200
        time.sleep(3)
    after = hub.server(USER)
    assert after.get("ready") and after["state"]["job_id"] == job_id
    log = (hub.runner.dir / "jupyterhub.log").read_text(errors="replace")
    assert f"job {job_id} ended" not in log
    assert [j for j in squeue(testbed, USER, "%i", "%T") if j[0] == job_id] == [
        [job_id, "RUNNING"]]
    # saving a new file fails (jupyter_server's atomic write then reports the backup it
    # never made, "[Errno 2] No such file or directory", not the full disk), and the
    # server stays up
    saved = requests.put(f"{hub.url}/user/{USER}/api/contents/notes.txt", headers=headers,
                         timeout=30, json={"type": "file", "format": "text",
                                           "content": "x" * 65536})
    assert saved.status_code == 500 and "Unexpected error while saving" in saved.text, saved.text
    assert requests.get(f"{hub.url}/user/{USER}/api/status", headers=headers,
                        timeout=30).status_code == 200
    r = hub.stop(USER)
    assert r.status_code in (202, 204)
    hub.wait_stopped(USER)
    assert _wait_job_gone(testbed, job_id) in ("", "CANCELLED")

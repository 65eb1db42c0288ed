"""What a user sees when the cluster cannot answer, or forgets her job (real hub, Chromium).

- An outage of the login node's sshd while her job starts is a wait, not a failure: the
  spawn goes on when the scheduler can be asked again, and the server opens.
- A job that leaves the queue with no record of how it ended (a controller's cold start,
  lost accounting) ends "reason unknown", not "completed", and her next visit to the
  spawn page says so, also after a hub restart.
"""

from __future__ import annotations

import time

import pytest

from slurm_testbed import faults
from tests.testbed.hubtools import log_in, squeue

pytestmark = pytest.mark.testbed

OUTAGE = 65.0  # seconds sshd stays down after the job runs (the old code gave up at 60)


def _hub_log(hub) -> str:
    return (hub.runner.dir / "jupyterhub.log").read_text(errors="replace")


def _stopped(hub, user: str) -> None:
    if hub.server(user):
        hub.stop(user)
        hub.wait_stopped(user)


def _job_state(tb, user: str, job_id: str) -> str | None:
    rows = [j for j in squeue(tb, user, "%i", "%T") if j[0] == job_id]
    return rows[0][1] if rows else None


def _wait_for(what: str, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _open_lab(browser, hub, user: str):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    log_in(page, hub, user, next_url=f"/user/{user}/lab")
    page.wait_for_url(f"**/user/{user}/lab**", timeout=180_000)
    page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
    return page


def test_a_spawn_waits_out_a_60_s_sshd_outage_and_the_server_opens(hub, testbed, browser):
    user = "alice"
    _stopped(hub, user)
    # the job waits in the queue until sshd is down, so that the hub learns neither
    # that it runs nor on which node before the outage
    faults.scontrol(testbed, "update", "partitionname=debug", "state=down")
    try:
        r = hub.spawn(user, {"preset": "debug"})
        assert r.status_code in (201, 202), r.text
        _wait_for("the job id", lambda: hub.server(user).get("state", {}).get("job_id"), 60)
        job_id = hub.server(user)["state"]["job_id"]
        with faults.sshd_stopped(testbed):
            faults.scontrol(testbed, "update", "partitionname=debug", "state=up")
            _wait_for("the job to run",
                      lambda: _job_state(testbed, user, job_id) == "RUNNING", 60)
            deadline = time.monotonic() + OUTAGE  # it reports its port meanwhile
            while time.monotonic() < deadline:
                server = hub.server(user)
                assert server and server.get("pending") == "spawn", \
                    f"the spawn did not wait out the outage: {server}\n{_hub_log(hub)[-3000:]}"
                time.sleep(2)
    finally:
        faults.scontrol(testbed, "update", "partitionname=debug", "state=up")
    server = hub.wait_ready(user, timeout=240)
    assert server["state"]["job_id"] == job_id
    page = _open_lab(browser, hub, user)
    page.close()
    hub.stop(user)
    hub.wait_stopped(user)


def test_a_job_gone_without_a_record_ends_reason_unknown_and_she_is_told(hub, testbed,
                                                                          browser):
    user = "alice"
    _stopped(hub, user)
    r = hub.spawn(user, {"preset": "debug"})
    assert r.status_code in (201, 202), r.text
    job_id = hub.wait_ready(user)["state"]["job_id"]
    faults.forget_job_records(testbed, job_id)
    faults.slurmctld_cold_start(testbed)
    hub.wait_stopped(user, timeout=180)
    log = _hub_log(hub)
    assert f"job {job_id} ended: ended, reason unknown" in log
    assert f"job {job_id} ended: completed" not in log

    hub.runner.kill()  # what she is told survives a hub restart
    hub.runner.restart()
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    log_in(page, hub, user, next_url="/hub/spawn")
    page.wait_for_selector("#hpcb-partition")
    notice = page.locator(".alert-warning").inner_text()
    assert "Your previous server ended: ended, reason unknown" in notice, notice
    page.close()

"""Servers while accounting is down (slurmdbd and its MariaDB stopped), real Slurm and hub.

slurmctld keeps scheduling from the associations it has cached and queues the accounting
records until slurmdbd is back: a running server must stay, a spawn and a stop must work,
and afterwards the accounting must know what happened meanwhile.
"""

from __future__ import annotations

import time

import pytest
import requests

from slurm_testbed import faults
from tests.testbed.hubtools import squeue

pytestmark = pytest.mark.testbed


def _running_server(hub, user: str) -> dict:
    if not hub.server(user).get("ready"):
        r = hub.spawn(user, {"preset": "debug"})
        assert r.status_code in (201, 202), r.text
    return hub.wait_ready(user)


def _login(hub, user: str) -> requests.Session:
    """A browser's session of ``user`` (HTML pages take no API token)."""
    session = requests.Session()
    session.get(f"{hub.url}/hub/login", timeout=30)
    r = session.post(f"{hub.url}/hub/login", timeout=60, data={
        "username": user, "password": hub.passwords[user],
        "_xsrf": session.cookies.get("_xsrf", "")})
    assert r.status_code == 200 and "/hub/login" not in r.url, r.url
    return session


def _accounting_answers(testbed) -> bool:
    return testbed.exec("db", ["sacctmgr", "-n", "list", "cluster"], timeout=30).returncode == 0


def _sacct_state(testbed, user: str, job_id: str) -> str:
    out = testbed.login_exec(user, ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"])
    return out.stdout.decode().strip().split(" ")[0]


def _wait(what: str, pred, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)
    return value


def test_accounting_down_drops_no_server_and_spawns_and_stops_go_on(hub, testbed):
    alice_job = _running_server(hub, "alice")["state"]["job_id"]
    carol_job = _running_server(hub, "carol")["state"]["job_id"]
    try:
        with faults.slurmdbd_stopped(testbed):  # MariaDB too
            assert not _accounting_answers(testbed)
            # the spawn form lists a user's accounts from sacctmgr: it still renders, with
            # the accounts it knew or a free-text account field
            page = _login(hub, "bob").get(f"{hub.url}/hub/spawn/bob", timeout=60)
            assert page.status_code == 200 and 'name="account"' in page.text, page.url
            r = hub.spawn("bob", {"preset": "debug"})
            assert r.status_code in (201, 202), r.text
            bob_job = hub.wait_ready("bob")["state"]["job_id"]
            r = hub.stop("carol")
            assert r.status_code in (202, 204)
            hub.wait_stopped("carol")
            _wait("carol's job to leave the queue", lambda: carol_job not in [
                j[0] for j in squeue(testbed, "carol", "%i", "%T") if j[1] != "CANCELLED"])
            # the servers' status comes from slurmctld (squeue): nothing to lose there
            time.sleep(9)  # three poll rounds of the hub (status_interval 3 s)
            for user, job in (("alice", alice_job), ("bob", bob_job)):
                server = hub.server(user)
                assert server.get("ready") and server["state"]["job_id"] == job, user
        assert _accounting_answers(testbed)
        time.sleep(6)  # two poll rounds with accounting back
        for user, job in (("alice", alice_job), ("bob", bob_job)):
            server = hub.server(user)
            assert server.get("ready") and server["state"]["job_id"] == job, user
        # slurmctld sent the records it held back: the cancel and the new job are known
        assert _wait("carol's cancel in the accounting",
                     lambda: _sacct_state(testbed, "carol", carol_job) == "CANCELLED")
        assert _wait("bob's job in the accounting",
                     lambda: _sacct_state(testbed, "bob", bob_job) == "RUNNING")
    finally:  # leave no server for the tests that come after (they share the hub)
        for user in ("alice", "bob", "carol"):
            hub.stop(user)
        for user in ("alice", "bob", "carol"):
            hub.wait_stopped(user)

"""Servers under node crashes and walltime ends (real Slurm, real hub); a slurmctld outage
under a running server: test_scheduler_faults.py, over the poller's outage."""

from __future__ import annotations


import pytest

from slurm_testbed import faults
from tests.testbed.hubtools import squeue

pytestmark = pytest.mark.testbed


def _hub_log(hub) -> str:
    return (hub.runner.dir / "jupyterhub.log").read_text(errors="replace")


def _running_server(hub, user: str, options: dict) -> dict:
    if not hub.server(user).get("ready"):
        r = hub.spawn(user, options)
        assert r.status_code in (201, 202), r.text
    return hub.wait_ready(user)


def test_killed_compute_node_stops_the_server_with_the_reason(hub, testbed):
    server = _running_server(hub, "carol", {"preset": "debug"})
    job_id = server["state"]["job_id"]
    (node,) = [j[1] for j in squeue(testbed, "carol", "%i", "%N") if j[0] == job_id]
    with faults.node_killed(testbed, node):
        hub.wait_stopped("carol", timeout=180)
    assert f"job {job_id} ended: node fail" in _hub_log(hub)


def test_walltime_end_warns_then_stops_the_server(hub, testbed):
    server = _running_server(hub, "bob", {"partition": "debug", "walltime": "00:01:00"})
    job_id = server["state"]["job_id"]
    hub.wait_stopped("bob", timeout=180)
    log = _hub_log(hub)
    assert f"job {job_id} reaches its walltime" in log
    assert f"job {job_id} ended: timeout" in log

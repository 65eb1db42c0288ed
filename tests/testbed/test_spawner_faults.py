"""Servers under node crashes and walltime ends (real Slurm, real hub); a slurmctld outage
under a running server: test_scheduler_faults.py, over the poller's outage."""

from __future__ import annotations


import pytest

from slurm_testbed import faults
from tests.testbed.hubtools import squeue
from tests.testbed.test_sessions_live import wait_record

pytestmark = pytest.mark.testbed


def _hub_log(hub) -> str:
    return (hub.runner.dir / "jupyterhub.log").read_text(errors="replace")


def _node(testbed, user: str, job_id: str) -> str:
    (node,) = [j[1] for j in squeue(testbed, user, "%i", "%N") if j[0] == job_id]
    return node


def test_node_kill_and_walltime_end_stop_their_servers_with_the_reason(hub, testbed):
    """alice's GPU server loses its node (killed) while bob's 1-minute debug server reaches
    its walltime: both are stopped, each with its own reason in the log. The two waits
    overlap (CI pays one); if the two jobs share a node, the kill waits for bob's end."""
    # both spawned at once; bob's server must be ready within its minute
    r = hub.spawn("bob", {"partition": "debug", "walltime": "00:01:00"})
    assert r.status_code in (201, 202), r.text
    r = hub.spawn("alice", {"preset": "gpu"}, server="gpu")  # on the GPU node, not c1
    assert r.status_code in (201, 202), r.text
    bob_state = hub.wait_ready("bob")["state"]
    alice_state = hub.wait_ready("alice", "gpu")["state"]
    bob, alice = bob_state["job_id"], alice_state["job_id"]
    node = _node(testbed, "alice", alice)
    if node == _node(testbed, "bob", bob):
        hub.wait_stopped("bob", timeout=180)
    with faults.node_killed(testbed, node):
        hub.wait_stopped("alice", "gpu", timeout=180)
        hub.wait_stopped("bob", timeout=180)
    log = _hub_log(hub)
    assert f"job {alice} ended: node fail" in log
    assert f"job {bob} reaches its walltime" in log
    assert f"job {bob} ended: timeout" in log
    # the sessions' records say so: their ends come from accounting, not from the node
    for user, state, word, slurm in (("alice", alice_state, "node_fail", "NODE_FAIL"),
                                     ("bob", bob_state, "timeout", "TIMEOUT")):
        record = wait_record(testbed, user, state["session"]["id"],
                             lambda rec: rec.get("end"), timeout=60)
        assert record["job_id"] == state["job_id"], record
        assert record["end"]["state"] == word, record
        assert record["end"]["scheduler_state"] == slurm, record
    assert record["end"]["nodes"] and alice_state["session"]["server_name"] == "gpu"

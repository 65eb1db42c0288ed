"""One hub, two clusters (site_profiles/testbed-two-clusters.yaml): what is per cluster
in the pure parts. The live behaviour is tests/testbed/test_two_clusters.py."""

from __future__ import annotations

import asyncio

from hpcbridge.client import SchedulerClient
from hpcbridge.errors import Unreachable
from hpcbridge.schedulers import SlurmDialect
from hpcbridge.site import Site
from hpcbridge.spawner.reattach import sweep_orphans
from slurm_testbed.profiles import load_bundled_profile
from tests.unit.test_hostile_parts import LoginNode


class DownLoginNode(LoginNode):
    """A login node whose sshd does not answer."""

    async def run(self, argv, **kw):  # type: ignore[no-untyped-def,override]
        self.calls.append((tuple(argv), kw.get("user")))
        raise Unreachable("login node: connection refused")


def two_clusters(tb: LoginNode, tb22: LoginNode) -> Site:
    site = Site(load_bundled_profile("testbed-two-clusters", {}))
    site._clients["tb"] = SchedulerClient(SlurmDialect(), tb)
    site._clients["tb22"] = SchedulerClient(SlurmDialect(), tb22)
    return site


def test_the_sweep_tells_a_clusters_job_from_the_same_id_on_the_other() -> None:
    # both clusters count job ids from 1: bob's server runs job 1 on tb; job 1 on tb22
    # is an orphan of his other server's name there, and is cancelled there only
    tb = LoginNode([("1", "bob", "hpcb-nb-bob")])
    tb22 = LoginNode([("1", "bob", "hpcb-nb-bob-old")])
    users = [{"name": "bob", "servers": {
        "": {"state": {"job_id": "1", "cluster": "tb"}}, "old": {"state": {}}}}]
    cancelled = asyncio.run(sweep_orphans(two_clusters(tb, tb22), users, lambda: users))
    assert cancelled == ["1"]
    assert tb.cancels() == [] and tb22.cancels() == [("bob", ("1",))]


def test_a_state_without_a_cluster_is_the_default_clusters() -> None:
    tb, tb22 = LoginNode([("7", "bob", "hpcb-nb-bob")]), LoginNode([("7", "bob", "hpcb-nb-bob")])
    users = [{"name": "bob", "servers": {"": {"state": {"job_id": "7"}}}}]
    cancelled = asyncio.run(sweep_orphans(two_clusters(tb, tb22), users, lambda: users))
    assert tb.cancels() == [] and tb22.cancels() == [("bob", ("7",))] and cancelled == ["7"]


def test_a_cluster_that_cannot_be_asked_does_not_stop_the_others_sweep() -> None:
    down, tb22 = DownLoginNode(), LoginNode([("3", "carol", "hpcb-nb-carol")])
    users = [{"name": "carol"}]
    cancelled = asyncio.run(sweep_orphans(two_clusters(down, tb22), users, lambda: users))
    assert cancelled == ["3"] and tb22.cancels() == [("carol", ("3",))]
    assert down.calls and down.cancels() == []

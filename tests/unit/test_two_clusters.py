"""One hub, two clusters (site_profiles/testbed-two-clusters.yaml): what is per cluster
in the pure parts. The live behaviour is tests/testbed/test_two_clusters.py."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from hpcbridge.client import SchedulerClient
from hpcbridge.errors import ProfileError, RequestError, Unreachable
from hpcbridge.profiles import JobRequest, load_profile_text, validate_request
from hpcbridge.schedulers import SlurmDialect
from hpcbridge.site import Site
from hpcbridge.spawner import form, guard
from hpcbridge.spawner.reattach import sweep_orphans
from hpcbridge.transport.base import Result
from slurm_testbed.profiles import TWO_CLUSTERS as TWO
from slurm_testbed.profiles import bundled_profile_text, load_bundled_profile
from tests.unit.test_hostile_parts import LoginNode


class DownLoginNode(LoginNode):
    """A login node whose sshd does not answer."""

    async def run(self, argv, **kw):  # type: ignore[no-untyped-def,override]
        self.calls.append((tuple(argv), kw.get("user")))
        raise Unreachable("login node: connection refused")


class IdleLoginNode(LoginNode):
    """A login node whose scheduler knows no jobs."""

    async def run(self, argv, **kw):  # type: ignore[no-untyped-def,override]
        self.calls.append((tuple(argv), kw.get("user")))
        return Result(0, "", "")


def two_clusters(tb: LoginNode, tb22: LoginNode) -> Site:
    site = Site(load_bundled_profile(TWO, {}))
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


def test_a_preset_naming_an_unknown_cluster_is_reported_at_its_line() -> None:
    text = bundled_profile_text(TWO).replace(
        "    cluster: tb22\n    partition: debug", "    cluster: tb23\n    partition: debug")
    with pytest.raises(ProfileError) as failed:
        load_profile_text(text, "two.yaml", {})
    line = text.splitlines().index("    cluster: tb23") + 1
    assert failed.value.problems == [
        f"two.yaml:{line}:14: notebooks[3].cluster: no such cluster 'tb23' — did you mean "
        "'tb22'? (clusters: tb, tb22)"]


def test_requests_follow_the_chosen_clusters_limits_and_presets() -> None:
    profile = load_bundled_profile(TWO, {})
    on_old = validate_request(profile, JobRequest(user="alice", preset="debug-old"))
    assert (on_old.cluster, on_old.partition) == ("tb22", "debug")
    with pytest.raises(RequestError, match="cores_per_node 4"):  # tb22's debug, not tb's
        validate_request(profile, JobRequest(user="alice", cluster="tb22", cores=8))
    assert validate_request(profile, JobRequest(user="alice", cluster="tb", cores=8)).cores == 8
    with pytest.raises(RequestError, match="no such partition 'gpu' on cluster tb22"):
        validate_request(profile, JobRequest(user="alice", cluster="tb22", partition="gpu"))
    with pytest.raises(RequestError) as refused:
        validate_request(profile, JobRequest(user="alice", cluster="tb22", preset="small"))
    assert ("cluster", "preset small runs on cluster tb, not 'tb22'") in refused.value.problems


def test_the_form_asks_for_the_cluster_first_and_marks_the_rest_by_cluster() -> None:
    profile = load_bundled_profile(TWO, {})
    html = form.render(profile, "alice", {"tb": ["proj_a"], "tb22": ["proj_a", "old_a"]},
                       down={"tb22": "login node: connection refused"})
    assert html.index('id="hpcb-cluster"') < html.index('id="hpcb-preset"')
    assert '<option value="tb" selected>tb: Slurm 24.11' in html
    assert "tb22: Slurm 22.05, the older machine" in html and "(not answering now)" in html
    # each preset card and partition row says its cluster (the script hides the others')
    assert re.search(r'<tr data-cluster="tb22"><td><input [^>]*value="tb22/debug"', html)
    assert re.search(r'<div class="hpcb-card" data-cluster="tb22"><input [^>]*'
                     r'value="small-old"', html)
    assert '<option value="old_a" data-cluster="tb22">old_a</option>' in html
    assert '<option value="modules-demo" data-cluster="tb">' in html
    # a preset's values are given for its own cluster's partitions only
    defaults = json.loads(html.split('id="hpcb-data">')[1].split("</script>")[0])["defaults"]
    assert set(defaults["small-old"]) == {"tb22/debug", "tb22/regular"}
    assert form.options_from_form({"cluster": ["tb"], "partition": ["tb22/debug"]}) == {
        "cluster": "tb22", "partition": "debug"}
    single = form.render(load_bundled_profile("testbed", {}), "alice", ["proj_a"])
    single = single.split("<script")[0]
    assert 'id="hpcb-cluster"' not in single and "data-cluster" not in single


def test_a_refusal_of_the_cluster_stands_by_the_cluster_field() -> None:
    profile = load_bundled_profile(TWO, {})
    sent = {"cluster": "tb22", "partition": "debug"}
    html = form.render(profile, "alice", refused=form.Refused(
        sent, (("cluster", "cluster tb22 does not answer now"),)))
    assert 'id="hpcb-cluster-error"' in html and '<option value="tb22" selected>' in html
    assert re.search(r'value="tb22/debug" checked', html)


def test_a_spawn_on_a_cluster_in_an_outage_is_refused_naming_it_and_the_others() -> None:
    async def run() -> None:
        site = two_clusters(DownLoginNode(), IdleLoginNode())
        assert guard.outage_refusal(site, "tb") is None  # nothing asked yet: no outage
        for name in ("tb", "tb22"):
            poller = site.poller(name)
            poller.track("1", "alice", wake=False)
            await poller.poll_once()
        refusal = guard.outage_refusal(site, "tb")
        assert refusal is not None and refusal.startswith("cluster tb does not answer now (")
        assert "connection refused" in refusal and refusal.endswith("or choose cluster tb22")
        assert guard.outage_refusal(site, "tb22") is None
        await site.close()

    asyncio.run(run())


def test_a_recheck_waits_for_a_round_that_starts_after_it() -> None:
    async def run() -> None:
        site = two_clusters(DownLoginNode(), IdleLoginNode())
        poller = site.poller("tb")
        poller.track("1", "alice", wake=False)
        await poller.poll_once()
        assert site.outage("tb")
        poller.source = SchedulerClient(SlurmDialect(), IdleLoginNode())  # back again
        await site.recheck("tb", timeout=30)
        assert site.outage("tb") is None
        await site.close()

    asyncio.run(run())

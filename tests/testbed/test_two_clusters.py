"""One hub on two clusters (site_profiles/testbed-two-clusters.yaml): cluster ``tb`` is the
Slurm 24.11 testbed, cluster ``tb22`` the Slurm 22.05 testbed the both_generations tests
run on (so CI starts no extra cluster), each with its own login node, controller and
homes, behind one JupyterHub (``hpcbridge up --clusters 2`` starts the same).

The module's one hub serves every case, in order: a REST spawn on each cluster, both
running at once on their own nodes; a notebook's own cluster for Dask and one status
query per interval per cluster; then cluster tb's slurmctld stopped for 60 s, during
which a spawn on tb22 comes up and stops, a spawn on tb is refused naming the cluster,
the form still serves tb22, and the hub restarts, re-attaching both servers and sweeping
an orphan on tb22; alice's server on tb stays up and opens in her browser.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
import requests

from hpcbridge.cli import main
from hpcbridge.hubrun import Hub
from hpcbridge.schedulers import SlurmDialect
from slurm_testbed import config, faults
from slurm_testbed.hub import up_hub
from slurm_testbed.profiles import TWO_CLUSTERS, bundled_profile_path, two_cluster_env
from tests.testbed.hubtools import HubApi, execute_in_kernel, log_in, port_offset, squeue

#: the module's tests run with the session's 22.05 testbed, after the default
#: generation's tests (tests/conftest.py orders them so): its testbed is up by then
pytestmark = [pytest.mark.testbed,
              pytest.mark.parametrize("slurm_generation", ["22.05"], indirect=True,
                                      scope="session")]

INTERVAL = 3.0
OUTAGE = 60.0
ON_TB = {"cluster": "tb", "partition": "debug", "cores": 1, "memory": "1G",
         "walltime": "00:15:00"}
ON_TB22 = {"preset": "debug-old"}


@pytest.fixture(scope="module")
def clusters(testbed, testbed_pool):  # type: ignore[no-untyped-def]
    """(tb, tb22): the 24.11 testbed and the 22.05 one (``testbed`` here)."""
    return testbed_pool.get("24.11"), testbed


@pytest.fixture(scope="module")
def hub(clusters, tmp_path_factory) -> Iterator[HubApi]:  # type: ignore[no-untyped-def]
    tb, tb22 = clusters
    runner = Hub(tmp_path_factory.mktemp("twohub"), public_port=8140 + port_offset(),
                 hub_port=8221 + port_offset())
    status = up_hub(runner, tb, users=list(config.USERS), interval=INTERVAL, second=tb22)
    api = HubApi(status["hub_url"], status["admin_token"])
    api.runner = runner  # type: ignore[attr-defined]
    api.passwords = status["users"]  # type: ignore[attr-defined]
    try:
        yield api
    finally:
        for user in config.USERS:
            for name in api.request("GET", f"/users/{user}").json().get("servers", {}):
                api.stop(user, name)
        runner.down()


def _job(tb, user: str, job_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    """[state, node, name] of a job of ``user`` on ``tb``, or [] when it is not there."""
    rows = [r for r in squeue(tb, user, "%i", "%T", "%N", "%j") if r[0] == job_id]
    return rows[0][1:] if rows else []


def _opens(hub: HubApi, user: str, server: str) -> int:
    token = hub.user_token(user)
    return requests.get(f"{hub.url}/user/{user}/{server}/api/status", timeout=30,
                        headers={"Authorization": f"token {token}"}).status_code


def _both_serving(hub: HubApi) -> dict[str, dict]:
    """alice's server on each cluster (started by the first test), their states."""
    for name, options in (("on-tb", ON_TB), ("on-tb22", ON_TB22)):
        if not hub.server("alice", name):
            r = hub.spawn("alice", options, name)
            assert r.status_code in (201, 202), r.text
    return {name: hub.wait_ready("alice", name, timeout=240)["state"]
            for name in ("on-tb", "on-tb22")}


def test_a_rest_spawn_on_each_cluster_runs_at_once_on_its_own_nodes(hub, clusters) -> None:  # type: ignore[no-untyped-def]
    tb, tb22 = clusters
    states = _both_serving(hub)
    assert states["on-tb"]["cluster"] == "tb" and states["on-tb22"]["cluster"] == "tb22"
    for name, here, there in (("on-tb", tb, tb22), ("on-tb22", tb22, tb)):
        job = states[name]["job_id"]
        state, node, job_name = _job(here, "alice", job)
        assert (state, job_name) == ("RUNNING", f"hpcb-nb-alice-{name}")
        assert node in here.info().nodes and node == states[name]["node"]
        # not on the other cluster (whose ids count from 1 too: compare the name)
        assert f"hpcb-nb-alice-{name}" not in {r[0] for r in squeue(there, "alice", "%j")}
        assert _opens(hub, "alice", name) == 200


def test_a_notebook_sees_only_its_own_cluster_and_each_is_asked_once_an_interval(  # type: ignore[no-untyped-def]
        hub, clusters) -> None:
    states = _both_serving(hub)
    ids = {"tb": states["on-tb"]["job_id"], "tb22": states["on-tb22"]["job_id"]}
    # what one status query of the hub's costs each slurmctld (RPCs of its status account)
    query = {c.name: SlurmDialect().status_command([ids[n]]).argv
             for n, c in zip(ids, clusters, strict=True)}
    uid = {c.name: int(c.login_exec("hpcbridge", ["id", "-u"], check=True).stdout)
           for c in clusters}
    for cluster in clusters:
        faults.reset_rpc_stats(cluster)
        cluster.login_exec("hpcbridge", list(query[cluster.name]), check=True)
    per_query = {c.name: faults.rpc_stats(c).user("hpcbridge", uid[c.name]) for c in clusters}
    for cluster in clusters:
        faults.reset_rpc_stats(cluster)
    started = time.monotonic()

    # Dask and batch jobs from the notebook on tb22: its job copy of the profile holds
    # tb22 only, so its workers are tb22's jobs under tb22's limits (debug: 4 cores)
    token = hub.user_token("alice")
    base = f"{hub.url}/user/alice/on-tb22"
    kernel = requests.post(f"{base}/api/kernels", json={}, timeout=60,
                           headers={"Authorization": f"token {token}"}).json()["id"]
    code = ("from hpcbridge.profiles.jobcopy import profile_in_job\n"
            "from hpcbridge.dask.build import worker_request\n"
            "p = profile_in_job()\n"
            "req, _ = worker_request(p, 'alice', 'x')\n"
            "print(sorted(p.clusters), req.cluster, req.queue, p.clusters[req.cluster]"
            ".partitions[req.partition].cores_per_node)\n")
    out = asyncio.run(execute_in_kernel(base, token, kernel, code, 120, "alice"))
    assert out.split() == ["['tb22']", "tb22", "debug", "4"]

    time.sleep(max(0.0, started + 4 * INTERVAL - time.monotonic()))
    counts = {c.name: faults.rpc_stats(c).user("hpcbridge", uid[c.name]) for c in clusters}
    rounds = (time.monotonic() - started) / INTERVAL
    print(f"status RPCs of the hub in {rounds:.1f} intervals: {counts} "
          f"({per_query} per query)")
    for cluster in clusters:
        queries = counts[cluster.name] / max(per_query[cluster.name], 1)
        # each cluster's own poller asks it; jitter (±10 %) allows a round more
        assert 1 <= queries <= rounds * 1.1 + 1, (cluster.name, counts, per_query)


def test_doctor_checks_both_clusters_in_one_run(clusters, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    for key, value in two_cluster_env(*clusters).items():
        monkeypatch.setenv(key, value)
    status = main(["doctor", "--json", "-v", bundled_profile_path(TWO_CLUSTERS),
                   "--user", "alice", "--user", "carol"])
    out, err = capsys.readouterr()
    findings = json.loads(out)
    assert status == 0 and not [f for f in findings if f["severity"] != "note"], findings
    # each finding names its cluster; tb22 offers less than its scheduler has (4 cores)
    assert {f["cluster"] for f in findings} <= {"tb", "tb22"}
    notes = {f["key"]: f["cluster"] for f in findings}
    assert notes["clusters.tb22.partitions.debug.cores_per_node"] == "tb22"
    assert "clusters.tb.partitions.debug.cores_per_node" not in notes
    assert "doctor: cluster tb: 0 errors, 0 warnings, " in err
    assert "doctor: cluster tb22: 0 errors, 0 warnings, " in err
    assert "doctor: 2 clusters checked" in err


def _outage_seen(page, hub: HubApi) -> str:
    """The form's label of cluster tb once it says tb does not answer (the hub learns of
    the outage at its next status query), or its last label after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        page.goto(f"{hub.url}/hub/spawn/alice/next")
        label = page.locator('#hpcb-cluster option[value="tb"]').inner_text()
        if "not answering" in label or time.monotonic() > deadline:
            return label
        time.sleep(2)


def test_an_outage_of_one_cluster_leaves_the_other_and_her_server_alone(  # type: ignore[no-untyped-def]
        hub, clusters, browser) -> None:
    """tb's slurmctld stopped 60 s; meanwhile a spawn on tb22 comes up and stops, a spawn
    on tb is refused naming tb, the form serves tb22, and the hub restarts: it keeps
    alice's server on tb (UNKNOWN, not gone), which opens in her browser, re-attaches
    her server on tb22, and its orphan sweep cancels an orphan on tb22 although it cannot
    ask tb."""
    tb, tb22 = clusters
    jobs = {name: state["job_id"] for name, state in _both_serving(hub).items()}
    page = browser.new_page()
    try:
        log_in(page, hub, "alice", "/hub/home")
        page.wait_for_url("**/hub/home")
        faults.stop_slurmctld(tb)
        stopped = time.monotonic()
        try:
            r = hub.spawn("bob", ON_TB22, "during")
            assert r.status_code in (201, 202), r.text
            label = _outage_seen(page, hub)
            assert "(not answering now)" in label
            assert page.locator('#hpcb-cluster option[value="tb22"]').inner_text().startswith(
                "tb22: Slurm 22.05")
            # choosing tb22 first: its presets and partitions only, one of them chosen
            page.select_option("#hpcb-cluster", "tb22")
            assert page.locator('input[name="preset"][value="small-old"]').is_visible()
            assert not page.locator('input[name="preset"][value="small"]').is_visible()
            chosen = page.locator('input[name="partition"]:checked').get_attribute("value")
            assert chosen is not None and chosen.startswith("tb22/"), chosen
            refused = hub.spawn("bob", ON_TB, "refused")
            assert refused.status_code == 503, refused.text
            message = refused.json()["message"]
            assert "cluster tb does not answer now" in message, message
            assert "choose cluster tb22" in message, message
            assert hub.server("bob", "refused") == {}  # nothing left of it
            hub.wait_ready("bob", "during", timeout=240)
            assert _opens(hub, "bob", "during") == 200
            assert hub.stop("bob", "during").status_code in (202, 204)
            hub.wait_stopped("bob", "during")

            # an orphan on tb22: a notebook job of carol's no server of the hub refers to
            orphan = tb22.login_exec("carol", [
                "sbatch", "--parsable", "-J", "hpcb-nb-carol", "-t", "10", "-c", "1",
                "--mem=100M", "-o", "/dev/null", "--wrap", "sleep 600"],
                check=True).stdout.decode().strip()
            hub.runner.kill()
            hub.runner.restart()
            for name, job in jobs.items():
                assert hub.wait_ready("alice", name, timeout=120)["state"]["job_id"] == job
            deadline = time.monotonic() + 60
            while _job(tb22, "carol", orphan) and time.monotonic() < deadline:
                time.sleep(1)
            assert not _job(tb22, "carol", orphan), "the orphan on tb22 was not cancelled"
            assert _opens(hub, "alice", "on-tb22") == 200

            while time.monotonic() - stopped < OUTAGE - 15:
                assert hub.server("alice", "on-tb").get("ready"), "dropped during the outage"
                time.sleep(INTERVAL)
            page.goto(f"{hub.url}/user/alice/on-tb/lab")  # her login outlives the restart
            page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
            while time.monotonic() - stopped < OUTAGE:
                assert hub.server("alice", "on-tb").get("ready"), "dropped during the outage"
                time.sleep(1)
        finally:
            faults.start_slurmctld(tb)
        print(f"slurmctld of tb was down {time.monotonic() - stopped:.0f} s")
        assert hub.server("alice", "on-tb")["state"]["job_id"] == jobs["on-tb"]
        assert _job(tb, "alice", jobs["on-tb"])[0] == "RUNNING"
        assert _job(tb22, "alice", jobs["on-tb22"])[0] == "RUNNING"
        assert not [r for r in squeue(tb, "bob", "%j") if r[0] == "hpcb-nb-bob-refused"]
    finally:
        page.close()

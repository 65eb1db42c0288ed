"""Dask workers as batch jobs on the containerized Slurm testbed (issue E).

The Dask scheduler runs in this test process on the host and listens on the testbed
network's gateway address, which the compute nodes reach. Jobs are submitted over SSH
as the test users. Tests that send the workers code of their own (lambdas, local
functions) run their client on a compute node instead, as a user's notebook does
(tests/testbed/dask_on_node.py): that code loads only under the Python that pickled it,
and the nodes' Python is not the host's on every generation. Most tests run as bob;
alice and carol are shared with the spawner tests, so those tests are short and always
close their cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from distributed import Client

import hpcbridge.dask as hd
from hpcbridge.errors import LimitExceeded
from hpcbridge.profiles.jobcopy import JOB_PROFILE_ENV, job_copy_json
from hpcbridge.site import Site
from slurm_testbed.profiles import load_bundled_profile, site_on_testbed

# a slow module: in the second pytest of a split session (tests/generation_split.py)
pytestmark = [pytest.mark.testbed, pytest.mark.beside]

SMALL = {"cores": 1, "memory": "1G", "walltime": "00:05:00"}
PROFILES = Path(__file__).resolve().parents[2] / "site_profiles"
PBS_PROFILE = PROFILES / "testbed-pbs.yaml"
PROFILE = PROFILES / "testbed.yaml"


@pytest.fixture
def site(testbed) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    s = site_on_testbed(testbed)
    yield s
    asyncio.run(s.close())


@pytest.fixture
def make(testbed, site: Site) -> Iterator[Callable]:  # type: ignore[no-untyped-def]
    made = []

    def factory(user: str, *, profile=None, **kw):  # type: ignore[no-untyped-def]
        use_site = site if profile is None else Site(profile)
        cluster = hd.cluster(profile or site.profile, user=user, site=use_site,
                             scheduler_host=testbed.info().gateway_ip, poll_interval=2.0,
                             **kw)
        made.append(cluster)
        return cluster

    yield factory
    for cluster in made:
        cluster.close()


def squeue(testbed, user: str, name: str) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """(id, state, reason) of the user's jobs named ``name``, as the scheduler says."""
    proc = testbed.login_exec(user, ["squeue", "--noheader", "--array", f"--user={user}",
                                     f"--name={name}", "--format=%i|%T|%r"])
    assert proc.returncode == 0, proc.stderr
    return [tuple(line.split("|")) for line in proc.stdout.decode().split()]  # type: ignore[misc]


def all_jobs(testbed, user: str) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    proc = testbed.login_exec(user, ["squeue", "--noheader", "--array", f"--user={user}",
                                     "--format=%i|%T|%r"])
    return [tuple(line.split("|")) for line in proc.stdout.decode().split()]  # type: ignore[misc]


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


def wait_for_workers(client: Client, cluster, n: int, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    """Like Client.wait_for_workers, failing with the cluster's view of its jobs."""
    if not wait_until(lambda: len(client.scheduler_info()["workers"]) >= n, timeout):
        pytest.fail(f"{n} workers did not arrive in {timeout} s: {cluster!r}")


def assert_no_jobs_left(testbed, user: str, name: str) -> None:  # type: ignore[no-untyped-def]
    assert wait_until(lambda: not [j for j in squeue(testbed, user, name)
                                   if j[1] not in ("COMPLETING",)], 90), \
        squeue(testbed, user, name)


def on_node(testbed, user: str, case: str, profile: Path, timeout: float) -> dict:  # type: ignore[no-untyped-def]
    """Run a Dask client of tests/testbed/dask_on_node.py as ``user`` on a compute node,
    where her notebook would run (the nodes' Python; see that file); what it reports."""
    from slurm_testbed.cluster import PYTHON, SRC_MOUNT

    def on_nodes(path: Path) -> str:  # the checkout is mounted at SRC_MOUNT there
        return f"{SRC_MOUNT}/{path.relative_to(Path(__file__).resolve().parents[2])}"

    script = on_nodes(Path(__file__).resolve().with_name("dask_on_node.py"))
    proc = testbed.exec(testbed.info().nodes[0], [PYTHON, script, case, on_nodes(profile)],
                        user=user, timeout=timeout)
    if proc.returncode != 0:
        leftover = [j for j, name in (line.split("|") for line in testbed.login_exec(
            user, ["squeue", "--noheader", f"--user={user}", "--format=%i|%j"]
        ).stdout.decode().split()) if name.startswith(hd.JOB_PREFIX)]
        if leftover:
            testbed.login_exec(user, ["scancel", *leftover])
        pytest.fail(f"{case} on a node failed ({proc.returncode}):\n"
                    f"{proc.stderr.decode()[-3000:]}")
    lines = [line for line in proc.stdout.decode().splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout.decode()[-2000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.mark.both_generations
def test_scale_10_as_alice_stays_within_max_jobs_per_user(testbed, make) -> None:  # type: ignore[no-untyped-def]
    cluster = make("alice", **SMALL)
    try:
        others = len(all_jobs(testbed, "alice"))
        cluster.scale(10)
        assert cluster.scale_message and "QOS normal allows 4 jobs per user" in \
            cluster.scale_message
        # the spawner tests share alice: what they hold is not ours to take
        assert len(cluster.plan) <= max(0, 4 - others) + 1
        with Client(cluster) as client:
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                mine = squeue(testbed, "alice", cluster._name)
                # a clamped cluster grows when another job of hers ends (the regrow
                # loop), never past the QOS, and no job of it waits on the QOS
                assert len(mine) <= len(cluster.plan) <= 4, (mine, all_jobs(testbed, "alice"))
                assert not [j for j in mine if j[2].startswith("QOS")], mine
                if len(client.scheduler_info()["workers"]) == len(cluster.plan):
                    break
                time.sleep(1)
            assert len(client.scheduler_info()["workers"]) == len(cluster.plan)
    finally:
        cluster.close()
    assert_no_jobs_left(testbed, "alice", cluster._name)


def test_carol_cannot_scale_past_her_budget(testbed, make) -> None:  # type: ignore[no-untyped-def]
    cluster = make("carol", cores=2, memory="2G", walltime="00:30:00")
    try:
        with pytest.raises(LimitExceeded, match="core-hours") as refused:
            cluster.scale(4)
        assert "account proj_b has" in str(refused.value)
        time.sleep(2)
        assert squeue(testbed, "carol", cluster._name) == []
        assert cluster.submissions == 0
    finally:
        cluster.close()


def test_killed_worker_job_is_replaced(testbed, make) -> None:  # type: ignore[no-untyped-def]
    cluster = make("bob", **SMALL)
    with Client(cluster) as client:
        cluster.scale(2)
        wait_for_workers(client, cluster, 2, 180)
        victim = squeue(testbed, "bob", cluster._name)[0][0]
        testbed.login_exec("bob", ["scancel", victim])
        assert wait_until(lambda: cluster.submissions == 3, 30), cluster
        assert wait_until(lambda: len(client.scheduler_info()["workers"]) == 2, 60), cluster
        assert cluster.failures <= 1 and cluster.error is None
        ids = {j[0] for j in squeue(testbed, "bob", cluster._name)}
        assert victim not in ids and len(ids) == 2
    cluster.close()
    assert_no_jobs_left(testbed, "bob", cluster._name)


def test_job_array_gives_n_workers_from_one_submission(testbed, make) -> None:  # type: ignore[no-untyped-def]
    # jobs of an earlier test still ending would hold QOS slots and split the array
    assert wait_until(lambda: not [j for j in all_jobs(testbed, "bob")
                                   if j[1] in ("RUNNING", "PENDING", "COMPLETING")], 120)
    cluster = make("bob", arrays=True, **SMALL)
    with Client(cluster) as client:
        cluster.scale(4)
        wait_for_workers(client, cluster, 4, 180)
        assert cluster.submissions == 1
        names = sorted(w["name"] for w in client.scheduler_info()["workers"].values())
        assert names == sorted(f"{cluster._name}-0-{t}" for t in range(4))
        assert client.submit(sum, [1, 2, 3]).result() == 6
    cluster.close()
    assert_no_jobs_left(testbed, "bob", cluster._name)


def test_closing_the_cluster_leaves_no_job(testbed, make) -> None:  # type: ignore[no-untyped-def]
    cluster = make("bob", cores=2, memory="2G", processes=2, walltime="00:05:00")
    with Client(cluster) as client:
        cluster.scale(4)
        wait_for_workers(client, cluster, 4, 180)
        assert len(squeue(testbed, "bob", cluster._name)) == 2  # 2 processes per job
        # the cluster's poller learns the second job started at its next round
        assert wait_until(lambda: "2 running" in repr(cluster), 60), repr(cluster)
    cluster.close()
    assert_no_jobs_left(testbed, "bob", cluster._name)
    assert cluster.live_job_ids() == []


def test_pbs_dialect_variant(testbed) -> None:  # type: ignore[no-untyped-def]
    # the client in a notebook on a node, which submits with the node's qsub
    done = on_node(testbed, "bob", "answer", PBS_PROFILE, timeout=300)
    assert done["answer"] == 42 and done["left"] == []
    assert_no_jobs_left(testbed, "bob", done["name"])


@pytest.mark.skipif(os.environ.get("HPCBRIDGE_SKIP_SLOW") == "1", reason="slow (~4 min)")
def test_computation_outlives_three_worker_walltimes(testbed) -> None:  # type: ignore[no-untyped-def]
    # 1-minute walltime: workers retire after ~27 s and are replaced; 3 minutes of work
    done = on_node(testbed, "bob", "outlive_walltimes", PROFILE, timeout=600)
    assert done["total"] == sum(range(360))
    assert done["elapsed"] > 180 and done["submissions"] >= 6, done
    assert done["failures"] == 0
    assert_no_jobs_left(testbed, "bob", done["name"])


def test_array_tasks_roll_to_successors_before_they_retire(testbed) -> None:  # type: ignore[no-untyped-def]
    # 1-minute walltime: each task gets a successor job ~14 s after its worker arrived
    # and retires once that job's worker is there; the work goes on across the hand-over
    assert wait_until(lambda: not [j for j in all_jobs(testbed, "bob")
                                   if j[1] in ("RUNNING", "PENDING", "COMPLETING")], 120)
    done = on_node(testbed, "bob", "array_roll", PROFILE, timeout=480)
    assert done["total"] == sum(range(80))
    rolled = [m for m in done["messages"] if m.startswith("retiring worker job")
              and "_" in m.split()[3] and "successor None" not in m]
    assert rolled, done["messages"]
    assert done["submissions"] >= 2 and done["failures"] == 0
    assert_no_jobs_left(testbed, "bob", done["name"])


@pytest.mark.parametrize("scheduler", ["slurm", "pbs"])
def test_orphans_cli_lists_and_cancels_worker_jobs(testbed, make, monkeypatch, capsys,  # type: ignore[no-untyped-def]
                                                   scheduler: str) -> None:
    import argparse

    from hpcbridge.cli import dask as dask_cli

    for key, value in testbed.profile_env().items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser(prog="hpcbridge")
    dask_cli.register(parser.add_subparsers(dest="command"))
    site = ["--site", str(PBS_PROFILE if scheduler == "pbs" else PROFILE)]

    def run(*argv: str) -> int:
        args = parser.parse_args(["dask", "orphans", "--user", "bob", *site, *argv])
        return int(args.func(args))

    profile = None
    if scheduler == "pbs":  # the testbed through its torque wrappers: qsub, qstat -f, qdel
        profile = load_bundled_profile("testbed-pbs", {**os.environ, **testbed.profile_env()})
    # as if its kernel had died: no replacing
    cluster = make("bob", profile=profile, max_failures=0, **SMALL)
    cluster.scale(1)
    assert wait_until(lambda: len(squeue(testbed, "bob", cluster._name)) == 1, 30)
    assert run("--cluster-id", cluster._name) == 0
    assert cluster._name in capsys.readouterr().out
    assert run("--cluster-id", cluster._name, "--cancel") == 0
    assert_no_jobs_left(testbed, "bob", cluster._name)
    cluster.close()


NOTEBOOK = """
import hpcbridge.dask as hd
from distributed import Client
c = hd.cluster(cores=1, memory="1G", walltime="00:05:00", poll_interval=2)
with Client(c) as client:
    c.scale(1)
    client.wait_for_workers(1, timeout=60)
    print("answer", client.submit(lambda: 42).result())
c.close()
print("left", c.live_job_ids())
"""


def test_from_a_notebook_on_a_compute_node(testbed) -> None:  # type: ignore[no-untyped-def]
    # the normal case: the kernel is itself a job on a node and submits with the node's
    # own sbatch (local transport, no sudo); carol, because bob may be busy here. The
    # profile comes as in a server the hub started: its job copy in the environment.
    copy = job_copy_json(load_bundled_profile("testbed", testbed.profile_env()))
    proc = testbed.exec("c1", ["/opt/hpcbridge/venv/bin/python", "-c", NOTEBOOK],
                        user="carol", timeout=150, env={JOB_PROFILE_ENV: copy})
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert "answer 42" in out and "left []" in out


def test_adapt_with_two_processes_per_job_does_not_thrash(testbed) -> None:  # type: ignore[no-untyped-def]
    done = on_node(testbed, "bob", "adapt_two_processes", PROFILE, timeout=360)
    assert done["maximum"] == 4 and done["total"] == sum(range(80))
    # idle: adapt closed whole jobs (both processes) and did not start them again
    assert done["emptied"] and done["queued_after_idle"] == [], done
    assert done["submissions"] <= 3, done  # 2 jobs (+1 if late)
    assert_no_jobs_left(testbed, "bob", done["name"])

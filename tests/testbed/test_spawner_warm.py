"""The warm pool on the testbed: pre-started jobs per user, handed over on spawn.

A hub of its own (ports 8120/8201) runs the bundled testbed profile with a warm pool for
the ``debug`` preset. Logging in starts the user's warm job; a matching spawn takes it
(no new submission), a different one submits; nobody else can claim it; a job the hub
does not know ends at its first poll; an unclaimed one ends after ``max_idle``.
"""

from __future__ import annotations

import time

import pytest
import requests

from bench.spawn_warm import login as bench_login
from bench.spawn_warm import wait_warm_ready, warm_jobs, warm_profile
from slurm_testbed.hub import up_hub
from tests.testbed.hubtools import HubApi, port_offset, squeue

# a slow module: in the second pytest of a split session (tests/generation_split.py)
pytestmark = [pytest.mark.testbed, pytest.mark.beside]

@pytest.fixture(scope="module")
def warm_hub(testbed, tmp_path_factory):
    from hpcbridge.hubrun import Hub
    from slurm_testbed import config

    directory = tmp_path_factory.mktemp("warmhub")
    runner = Hub(directory, public_port=8120 + port_offset(), hub_port=8201 + port_offset())
    status = up_hub(runner, testbed, users=list(config.USERS), interval=3.0,
                                  site=str(warm_profile(directory, max_idle="00:01:00")))
    api = HubApi(status["hub_url"], status["admin_token"])
    api.runner = runner
    api.passwords = status["users"]
    yield api
    try:
        for user in config.USERS:
            api.stop(user)
    except requests.RequestException:
        pass
    finally:
        runner.down()
        for user in config.USERS:  # warm jobs end by themselves; don't wait for that
            testbed.login_exec(user, ["scancel", "-u", user])


def login(api: HubApi, user: str) -> requests.Session:
    return bench_login(api.url, user, api.passwords[user])


def server_job(api: HubApi, user: str) -> str:
    return api.server(user).get("state", {}).get("job_id", "")


def test_login_prewarms_and_spawn_takes_the_warm_job(testbed, warm_hub) -> None:
    api = warm_hub
    login(api, "alice")
    job = wait_warm_ready(testbed, "alice")
    assert len(warm_jobs(testbed, "alice")) == 1  # per_user: 1, and one login

    began = time.monotonic()
    r = api.spawn("alice", {"preset": "debug"})
    assert r.status_code in (201, 202), r.text
    api.wait_ready("alice", timeout=60)
    print(f"warm spawn ready in {time.monotonic() - began:.2f} s")
    assert server_job(api, "alice") == job
    rows = squeue(testbed, "alice", "%i", "%T", "%u")
    assert rows == [[job, "RUNNING", "alice"]], rows  # nothing else was submitted

    # JupyterLab answers through the proxy, as alice, with alice's token
    token = api.user_token("alice")
    r = requests.get(f"{api.url}/user/alice/api/status",
                     headers={"Authorization": f"token {token}"}, timeout=60)
    assert r.status_code == 200, r.text
    # the warm env file was read and removed; nothing secret is left behind
    left = testbed.login_exec("alice", ["ls", "-A", "/home/alice/.hpcbridge"]).stdout.split()
    # what may be there: the job logs' folder (the cluster's job_logs) and the folder of
    # the Dask clusters' records (hpcbridge/dask/labrecords.py; other tests' clusters),
    # the session records (hpcbridge/sessions/record.py)
    assert [name for name in left if name not in (b"logs", b"dask", b"sessions")] == [], left

    api.stop("alice")
    api.wait_stopped("alice")
    deadline = time.monotonic() + 60
    while squeue(testbed, "alice", "%i") and time.monotonic() < deadline:
        time.sleep(1)
    assert squeue(testbed, "alice", "%i") == []


def test_other_options_submit_their_own_job_and_keep_the_warm_one(testbed, warm_hub) -> None:
    api = warm_hub
    login(api, "bob")
    job = wait_warm_ready(testbed, "bob")
    r = api.spawn("bob", {"preset": "debug", "cores": 2})
    assert r.status_code in (201, 202), r.text
    api.wait_ready("bob", timeout=180)
    assert server_job(api, "bob") not in ("", job)
    assert [row[0] for row in warm_jobs(testbed, "bob")] == [job]
    api.stop("bob")
    api.wait_stopped("bob")


def test_nobody_else_can_claim_a_warm_job(testbed, warm_hub) -> None:
    api = warm_hub
    login(api, "carol")
    job = wait_warm_ready(testbed, "carol")
    # the job's secret exists only in carol's process environment; guesses are refused
    url = f"{api.url}/hub/api/hpcbridge/warm"
    for body in ({"id": "0" * 24, "secret": "x"}, {"id": "anything", "secret": "guess"}):
        r = requests.post(url, json=body, timeout=60)
        assert r.status_code == 410, (r.status_code, r.text)
    r = requests.post(url, json={"id": "a", "secret": "b", "port": 1}, timeout=60)
    assert r.status_code == 400
    # alice's spawn with the very same options never takes carol's job
    login(api, "alice")
    alice_job = wait_warm_ready(testbed, "alice")
    assert alice_job != job
    r = api.spawn("alice", {"preset": "debug"})
    assert r.status_code in (201, 202), r.text
    api.wait_ready("alice", timeout=60)
    assert server_job(api, "alice") == alice_job
    assert [row[0] for row in warm_jobs(testbed, "carol")] == [job]
    api.stop("alice")
    api.wait_stopped("alice")


def test_unknown_and_unclaimed_warm_jobs_end_by_themselves(testbed, warm_hub) -> None:
    api = warm_hub
    login(api, "bob")
    unknown = wait_warm_ready(testbed, "bob")
    # a restarted hub does not know bob's job: its next poll (within ~50 s) ends it;
    # alice's, made by the restarted hub and never claimed, ends after max_idle (1 minute):
    # both wait at the same time
    api.runner.kill()
    api.runner.restart()
    login(api, "alice")
    unclaimed = wait_warm_ready(testbed, "alice")
    deadline = time.monotonic() + 150
    while unknown in [row[0] for row in warm_jobs(testbed, "bob")]:
        assert time.monotonic() < deadline, "a warm job unknown to the hub kept running"
        time.sleep(2)
    state = testbed.login_exec("bob", ["sacct", "-n", "-X", "-P", "-j", unknown, "-o",
                                       "State"]).stdout.decode().split()
    assert state == ["COMPLETED"], state
    deadline = time.monotonic() + 200
    while unclaimed in [row[0] for row in warm_jobs(testbed, "alice")]:
        assert time.monotonic() < deadline, "a warm job outlived max_idle"
        time.sleep(3)

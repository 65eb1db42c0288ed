"""Session records of notebook servers on the real hub and cluster (issue K): the job
writes its start (node, modules with versions, packages), the hub its end (accounting),
`hpcbridge.session.current()` reads it in a kernel, nobody else can read it, and no
record holds the server's token. A node failure's record: test_spawner_faults.py."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.testbed.hubtools import execute_in_kernel

pytestmark = pytest.mark.testbed

OPTIONS = {"partition": "debug", "cores": 2, "memory": "2G", "walltime": "00:10:00",
           "environment": "modules-demo"}
CELL = ("import json, os, hpcbridge.session\n"
        "print(json.dumps({'token': os.environ['JUPYTERHUB_API_TOKEN'],\n"
        "                  'record': hpcbridge.session.current()}))")


def run_in_kernel(server_url: str, token: str, code: str, user: str) -> str:
    headers = {"Authorization": f"token {token}"}
    r = requests.post(f"{server_url}/api/kernels", json={"name": "python3"}, headers=headers,
                      timeout=60)
    r.raise_for_status()
    kernel_id = r.json()["id"]
    try:
        with ThreadPoolExecutor(1) as pool:  # Playwright may keep a loop in this thread
            return pool.submit(asyncio.run, execute_in_kernel(
                server_url, token, kernel_id, code, 120, user)).result()
    finally:
        requests.delete(f"{server_url}/api/kernels/{kernel_id}", headers=headers, timeout=60)


def read_record(testbed, user: str, record_id: str, as_user: str | None = None):
    path = f"/home/{user}/.hpcbridge/sessions/{record_id}.json"
    return testbed.login_exec(as_user or user, ["cat", path], check=False)


def wait_record(testbed, user: str, record_id: str, pred, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        done = read_record(testbed, user, record_id)
        if done.returncode == 0:
            last = json.loads(done.stdout)
            if pred(last):
                return last
        time.sleep(1)
    raise AssertionError(f"record {record_id} of {user}: condition not met: {last}")


def test_server_session_record_start_end_current_and_no_token(hub, testbed):
    user = "alice"
    if hub.server(user):
        hub.stop(user)
        hub.wait_stopped(user, timeout=120)
    r = hub.spawn(user, OPTIONS)
    assert r.status_code in (201, 202), r.text
    server = hub.wait_ready(user)
    session = server["state"]["session"]
    job_id = server["state"]["job_id"]
    assert "token" not in json.dumps(session).lower()
    out = run_in_kernel(f"{hub.url}/user/{user}", hub.user_token(user), CELL, user)
    seen = json.loads(out.strip().splitlines()[-1])
    token, current = seen["token"], seen["record"]
    # the record as the notebook sees it: the request, the node, modules, packages
    assert current["id"] == session["id"] and current["job_id"] == job_id
    assert current["schema"] == "hpcbridge-session/1" and current["kind"] == "server"
    assert {k: current["request"][k] for k in OPTIONS} == OPTIONS
    start = current["start"]
    assert start["nodes"] and start["host"] in start["nodes"], start
    assert {"name": "hpcbridge-demo", "version": "1.0"} in start["modules"]
    assert any(p.lower().startswith("jupyterhub==") for p in start["packages"]["requirements"])
    assert "#SBATCH --partition=debug" in start["script"]
    assert current["profile_digest"].startswith("sha256:")
    # private: 0600 in a 0700 folder, alice's; bob cannot read it
    folder = f"/home/{user}/.hpcbridge/sessions"
    modes = testbed.login_exec(user, ["stat", "-c", "%a %U", folder,
                                      f"{folder}/{session['id']}.json"]).stdout.decode()
    assert modes.split("\n")[:2] == ["700 alice", "600 alice"], modes
    assert read_record(testbed, user, session["id"], as_user="bob").returncode != 0

    hub.stop(user)
    hub.wait_stopped(user)
    ended = wait_record(testbed, user, session["id"], lambda rec: rec.get("end"))
    end = ended["end"]
    assert end["state"] == "cancelled" and end["recorded_by"] == "hub", end
    assert end["nodes"] == start["nodes"] and end["cores"] == 2, end
    assert end["elapsed_seconds"] > 0 and end["core_seconds"] >= 2 * end["elapsed_seconds"]
    assert ended["start"] == start  # the job's part is kept
    # no record of alice's holds the server's token (grep, as root over every record)
    found = testbed.login_exec("root", ["grep", "-rlF", "--", token, folder], check=False)
    assert found.returncode == 1 and not found.stdout, found.stdout

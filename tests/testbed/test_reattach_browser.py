"""A server re-attached after a hub crash opens in a browser (shared design, invariant 7).

The hub is killed (SIGKILL) while a notebook job waits in the queue and started again; the
re-attach service starts the server again and HpcSpawner re-attaches to the job. JupyterHub
makes a new API token for that start and registers the server's OAuth client with it, while
the job holds the token of the start that submitted it. Opening the server then went
through ``/user/alice/<server>/oauth_callback`` into HTTP 500 ("invalid client"). Here
Chromium logs in through the hub's form and must see JupyterLab, for a job that starts after
the re-attach, for one that started (and read its environment) while the hub was down, and
for a server that was already running when the hub was killed.
"""

from __future__ import annotations

import signal
import time
from urllib.parse import quote

import pytest

from tests.testbed.hubtools import sbatch_sleepers, squeue, wait_server

pytestmark = pytest.mark.testbed

USER = "alice"
#: alice's QOS runs at most 4 jobs at a time (testbed: QOS normal, MaxJobsPerUser=4)
RUNNING_LIMIT = 4


def _running_jobs(testbed, user: str) -> list[str]:
    return [j[0] for j in squeue(testbed, user, "%i", "%T") if j[1] == "RUNNING"]


def _fill_running_slots(testbed, user: str) -> list[str]:
    """Sleepers until ``user`` runs as many jobs as her QOS allows: her next job queues."""
    sleepers = sbatch_sleepers(testbed, user, max(0, RUNNING_LIMIT - len(_running_jobs(
        testbed, user))))
    deadline = time.monotonic() + 60
    while len(_running_jobs(testbed, user)) < RUNNING_LIMIT:
        assert time.monotonic() < deadline, squeue(testbed, user, "%i", "%T", "%r")
        time.sleep(0.5)
    return sleepers


def _job_state(testbed, user: str, job_id: str) -> str:
    return next((j[1] for j in squeue(testbed, user, "%i", "%T") if j[0] == job_id), "")


def _queued_server(hub, testbed, name: str) -> tuple[str, str]:
    """Spawn alice's server ``name`` while her running slots are full: (job id, env file)."""
    r = hub.spawn(USER, {"preset": "debug"}, server=name)
    assert r.status_code == 202, r.text
    state = wait_server(hub, USER, name, lambda s: (s.get("state") or {}).get("job_id"))["state"]
    assert _job_state(testbed, USER, state["job_id"]) == "PENDING"
    return state["job_id"], state["env_file"]


def _open_lab(browser, hub, user: str, name: str = "") -> None:
    """Log in through the hub's form, open the server's JupyterLab, see its launcher."""
    prefix = f"/user/{user}/" + (f"{name}/" if name else "")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        page.goto(f"{hub.url}/hub/login?next={quote(prefix + 'lab')}")
        page.fill("#username_input", user)
        page.fill("#password_input", hub.passwords[user])
        with page.expect_response(lambda r: f"{prefix}oauth_callback" in r.url,
                                  timeout=120_000) as callback:
            page.click("#login_submit")
        assert callback.value.status < 400, (callback.value.status, callback.value.text()[:300])
        page.wait_for_url(f"**{prefix}lab**", timeout=120_000)
        page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
    finally:
        page.close()


def _restart(hub) -> None:
    hub.runner.kill(signal.SIGKILL)
    hub.runner.restart()


def _stop_server(hub, user: str, name: str) -> None:
    if hub.server(user, name):
        hub.stop(user, name)
        hub.wait_stopped(user, name, timeout=180)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_job_queued_through_the_restart_opens_after_reattach(hub, testbed, browser, sig):
    """(a) The job reads its environment after the re-attach; the running server too.
    Killed, or stopped (JupyterHub then cancels the waiting start: the job stays queued)."""
    if not hub.server(USER).get("ready"):
        hub.spawn(USER, {"preset": "debug"})
    running = hub.wait_ready(USER)["state"]["job_id"]
    sleepers = _fill_running_slots(testbed, USER)
    try:
        job_id, env_file = _queued_server(hub, testbed, "queued")
        hub.runner.kill(sig)
        assert testbed.login_exec(USER, ["test", "-e", env_file]).returncode == 0
        hub.runner.restart()
        # the hub forgets the starting server; the re-attach service starts it again
        wait_server(hub, USER, "queued", lambda s: s.get("pending") == "spawn", timeout=120)
        assert _job_state(testbed, USER, job_id) == "PENDING"
        testbed.login_exec(USER, ["scancel", sleepers.pop()])
        server = hub.wait_ready(USER, "queued", timeout=180)
        assert server["state"]["job_id"] == job_id  # re-attached, not submitted again
        assert testbed.login_exec(USER, ["test", "-e", env_file]).returncode == 1
        _open_lab(browser, hub, USER, "queued")
        # the server that was running when the hub was killed, re-checked by JupyterHub
        assert hub.server(USER)["state"]["job_id"] == running
        _open_lab(browser, hub, USER)
    finally:
        testbed.login_exec(USER, ["scancel", *sleepers])
        _stop_server(hub, USER, "queued")


def test_job_started_while_the_hub_was_down_opens_after_reattach(hub, testbed, browser):
    """(b) The job read its environment and keeps reporting its port while the hub is down."""
    sleepers = _fill_running_slots(testbed, USER)
    try:
        job_id, env_file = _queued_server(hub, testbed, "early")
        hub.runner.kill(signal.SIGKILL)
        testbed.login_exec(USER, ["scancel", sleepers.pop()])
        deadline = time.monotonic() + 120
        # the launcher has read (and deleted) its file: it now retries its port report
        while testbed.login_exec(USER, ["test", "-e", env_file]).returncode == 0:
            assert time.monotonic() < deadline, _job_state(testbed, USER, job_id)
            time.sleep(0.5)
        assert _job_state(testbed, USER, job_id) == "RUNNING"
        hub.runner.restart()
        server = wait_server(hub, USER, "early", lambda s: s.get("ready"), timeout=180)
        assert server["state"]["job_id"] == job_id
        _open_lab(browser, hub, USER, "early")
    finally:
        testbed.login_exec(USER, ["scancel", *sleepers])
        _stop_server(hub, USER, "early")


def _hold_servers_after_their_port(testbed, user: str) -> str:
    """A Jupyter config file of ``user``'s own that holds a server starting up for 30 s
    after its port report; its path."""
    folder = f"/home/{user}/.jupyter"
    testbed.login_exec(user, ["mkdir", "-p", folder])
    testbed.login_exec(user, ["tee", f"{folder}/jupyter_server_config.py"],
                       input=b"import time\ntime.sleep(30)\n")
    return f"{folder}/jupyter_server_config.py"


def _killed_after_port_report(hub, testbed, user: str, name: str, config: str) -> str:
    """Wait until the server's job reported its port, kill the hub, start it again; the
    job id."""
    state = wait_server(hub, user, name, lambda s: (s.get("state") or {}).get(
        "reported_port"), timeout=120)["state"]
    assert not hub.server(user, name).get("ready")
    hub.runner.kill(signal.SIGKILL)
    testbed.login_exec(user, ["rm", "-f", config])
    hub.runner.restart()
    return state["job_id"]


def _found_again(hub, user: str, name: str, job_id: str) -> None:
    server = wait_server(hub, user, name, lambda s: s.get("ready") or not s, timeout=90)
    assert server.get("ready"), "the starting server was dropped at the hub's restart"
    assert server["state"]["job_id"] == job_id


def test_hub_killed_while_the_server_starts_up_keeps_it(hub, testbed, browser):
    """The job reported its port and the server is starting when the hub is killed: the
    restarted hub finds the server where it is and it opens (it was not cancelled)."""
    user, name = "bob", "slow"
    config = _hold_servers_after_their_port(testbed, user)
    try:
        r = hub.spawn(user, {"preset": "debug"}, server=name)
        assert r.status_code == 202, r.text
        job_id = _killed_after_port_report(hub, testbed, user, name, config)
        _found_again(hub, user, name, job_id)
        _open_lab(browser, hub, user, name)
    finally:
        testbed.login_exec(user, ["rm", "-f", config])
        _stop_server(hub, user, name)


def test_hub_killed_again_while_a_reattached_server_starts_up_keeps_it(hub, testbed, browser):
    """Re-attached, the job reports its port with its own token and the hub is killed
    before its start returns: the server's OAuth client already matches that token."""
    sleepers = _fill_running_slots(testbed, USER)
    config = ""
    try:
        job_id, _ = _queued_server(hub, testbed, "twice")
        _restart(hub)
        wait_server(hub, USER, "twice", lambda s: s.get("pending") == "spawn", timeout=120)
        config = _hold_servers_after_their_port(testbed, USER)
        testbed.login_exec(USER, ["scancel", sleepers.pop()])
        assert _killed_after_port_report(hub, testbed, USER, "twice", config) == job_id
        _found_again(hub, USER, "twice", job_id)
        _open_lab(browser, hub, USER, "twice")
    finally:
        if config:
            testbed.login_exec(USER, ["rm", "-f", config])
        testbed.login_exec(USER, ["scancel", *sleepers])
        _stop_server(hub, USER, "twice")


def test_job_ended_while_the_hub_was_down_leaves_no_token_and_no_file(hub, testbed, browser):
    """The queued job is cancelled while the hub is down: the restarted hub drops the
    server, revokes the token the job was given and removes its unread file; the next
    start opens."""
    import json

    import requests

    sleepers = _fill_running_slots(testbed, USER)
    try:
        job_id, env_file = _queued_server(hub, testbed, "gone")
        # the test reads alice's own file as alice, as her job would
        env = json.loads(testbed.login_exec(USER, ["cat", env_file]).stdout)
        whoami = f"{hub.url}/hub/api/user"
        auth = {"Authorization": f"token {env['JUPYTERHUB_API_TOKEN']}"}
        assert requests.get(whoami, headers=auth, timeout=30).status_code == 200
        hub.runner.kill(signal.SIGKILL)
        testbed.login_exec(USER, ["scancel", job_id])
        hub.runner.restart()
        hub.wait_stopped(USER, "gone", timeout=60)
        assert requests.get(whoami, headers=auth, timeout=30).status_code == 403
        deadline = time.monotonic() + 30  # removed in the background, as alice
        while testbed.login_exec(USER, ["test", "-e", env_file]).returncode == 0:
            assert time.monotonic() < deadline, f"{env_file} left behind"
            time.sleep(0.5)
        testbed.login_exec(USER, ["scancel", sleepers.pop()])
        assert hub.spawn(USER, server="gone").status_code in (201, 202)
        assert hub.wait_ready(USER, "gone")["state"]["job_id"] != job_id
        _open_lab(browser, hub, USER, "gone")
    finally:
        testbed.login_exec(USER, ["scancel", *sleepers])
        _stop_server(hub, USER, "gone")

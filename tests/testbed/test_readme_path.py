"""The README's path, end to end: hub up, log in as alice, start a notebook, scale Dask.

As the README tells a new user: `./dev hub` (which execs ``hpcbridge up``) prints the hub's
URL, ``http://127.0.0.1:8000``; ``hpcbridge status --json`` gives alice's password and an
admin token; alice logs in with a browser (Chromium), starts a notebook from the spawn
form, and from that notebook, a batch job on a compute node, scales Dask workers. The
code runs in a kernel of her server, driven through the server's kernel API.

The hub's state goes to a temporary ``HPCBRIDGE_HUB_DIR``, and only the hub this test
started is stopped (``Hub.down``): never the testbed, which other tests share.

Port 8000 belongs to a developer's hub when one runs on this machine: the test then skips
(it cannot under ``CI=true``). ``HPCBRIDGE_README_HUB_PORT=P`` runs the same path on ports
P, P+1 and P+81, starting the hub as ``hpcbridge up`` does (``slurm_testbed.hub.up_hub``), since
the command has no port option. In a session beside the demo (tests/testbed/demo.py),
which holds port 8000 and is itself started by ``hpcbridge up`` with its printed URL and
logins checked, this test runs on ports of its own (8300 + the session's port offset).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from slurm_testbed.hub import up_hub
from tests.testbed import demo
from tests.testbed.hubtools import CHROMIUM_ARGS, HubApi, port_offset, run_in_new_kernel

pytestmark = pytest.mark.testbed

USER = "alice"
README_URL = "http://127.0.0.1:8000"
PORT_ENV = "HPCBRIDGE_README_HUB_PORT"

#: what alice runs in her notebook: docs/dask.md's first lines, small workers
DASK_CELL = """
import hpcbridge.dask
from distributed import Client

cluster = hpcbridge.dask.cluster(cores=1, memory="1G", walltime="00:05:00", poll_interval=2)
client = Client(cluster)
cluster.scale(2)
wanted = cluster.last_plan.workers
print("scale message:", cluster.scale_message)
client.wait_for_workers(wanted, timeout=150)
print("workers", len(client.scheduler_info()["workers"]), "of", wanted)
print("answer", client.submit(sum, range(10)).result())
client.close()
cluster.close()
print("left", cluster.live_job_ids())
"""


def skip_or_fail(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def hpcbridge_cli(*args: str, env: dict[str, str], timeout: float = 600
                  ) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("hpcbridge")
    argv = [str(exe) if exe.exists() else "hpcbridge", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture
def readme_hub(testbed, tmp_path):  # type: ignore[no-untyped-def]
    """`hpcbridge up` on the README's port (or PORT_ENV's); yields `status --json`."""
    from hpcbridge.hubrun import Hub
    from slurm_testbed import config

    if not shutil.which("configurable-http-proxy"):
        skip_or_fail("configurable-http-proxy is not installed")
    port = int(os.environ.get(PORT_ENV, 8300 + port_offset() if demo.enabled() else 8000))
    gateway = testbed.info().gateway_ip
    busy = [p for host, p in (("127.0.0.1", port), ("127.0.0.1", port + 1),
                              (gateway, port + 81)) if port_in_use(host, p)]
    if busy:
        skip_or_fail(f"ports {busy} are in use here (a developer's hub?); "
                     f"{PORT_ENV}=P runs this test on other ports")
    env = {**os.environ, "HPCBRIDGE_HUB_DIR": str(tmp_path / "hub")}
    runner = Hub(tmp_path / "hub", public_port=port, hub_port=port + 81)
    try:
        if port == 8000:
            proc = hpcbridge_cli("up", env=env)  # what `./dev hub` execs
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert f"hub: {README_URL}" in proc.stdout
            assert f"login: {USER} / " in proc.stdout
        else:
            up_hub(runner, testbed, users=list(config.USERS))
        proc = hpcbridge_cli("status", "--json", env=env, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield json.loads(proc.stdout)
    finally:
        runner.down()


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if not chromium:
        skip_or_fail("this test needs Debian's chromium and the playwright package")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def test_readme_path_hub_login_notebook_dask(testbed, readme_hub, browser) -> None:  # type: ignore[no-untyped-def]
    url = readme_hub["hub_url"]
    if PORT_ENV not in os.environ and not demo.enabled():
        assert url == README_URL
    api = HubApi(url, readme_hub["admin_token"])

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        page.goto(f"{url}/hub/login?next=/hub/spawn")
        page.fill("#username_input", USER)
        page.fill("#password_input", readme_hub["users"][USER])
        page.click("#login_submit")
        page.wait_for_selector("#hpcb-preset")
        page.check("input[name=preset][value=debug]")
        page.click("form button[type=submit], form input[type=submit]")
        page.wait_for_url(f"**/user/{USER}/lab**", timeout=180_000)
        page.wait_for_selector(".jp-LauncherCard", timeout=120_000)

        server = api.wait_ready(USER)
        assert server["state"]["job_id"]
        token = api.user_token(USER)
        out = run_in_new_kernel(f"{url}/user/{USER}", token, DASK_CELL, user=USER)
        assert "answer 45" in out and "left []" in out, out
        workers = [line.split() for line in out.splitlines() if line.startswith("workers ")]
        assert workers and int(workers[0][1]) >= 1, out
    finally:
        page.close()
        api.stop(USER)
        api.wait_stopped(USER)

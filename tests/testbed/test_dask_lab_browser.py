"""The Dask dashboard through the hub, and JupyterLab's Dask sidebar, in Chromium (issue 20).

One server of alice: a notebook kernel makes a cluster and scales it past her limits; its
``dashboard_link`` opens the live dashboard through the hub and her server's
jupyter-server-proxy (bob's token and no token do not); the sidebar lists the notebook's
cluster with its workers; a cluster made with the sidebar's "NEW" button and scaled to
10 workers gets the notebook's clamp and shows its message. Writes the screenshots of
``docs/dask.md``.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.testbed.hubtools import execute_in_kernel, log_in, squeue

pytestmark = pytest.mark.testbed

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
USER = "alice"

#: the notebook: docs/dask.md's first lines, then some work for the task stream
MAKE_CLUSTER = """
import time, hpcbridge.dask
from distributed import Client

cluster = hpcbridge.dask.cluster(poll_interval=2)
client = Client(cluster)
cluster.scale(10)
print("MESSAGE", cluster.scale_message)
client.wait_for_workers(cluster.last_plan.workers, timeout=150)
print("WORKERS", len(client.scheduler_info()["workers"]))
print("LINK", cluster.dashboard_link)
"""
WORK = """
def slow(i):
    time.sleep(0.5)
    return i
futures = client.map(slow, range(60))
print("TOTAL", sum(client.gather(futures[:6])))
"""
CLOSE = """
client.close()
cluster.close()
print("LEFT", cluster.live_job_ids())
"""


class Kernel:
    """A kernel of the user's server, driven through its websocket as a notebook is."""

    def __init__(self, server_url: str, token: str) -> None:
        self.url, self.token = server_url, token
        self.headers = {"Authorization": f"token {token}"}
        r = requests.post(f"{server_url}/api/kernels", json={"name": "python3"},
                          headers=self.headers, timeout=60)
        r.raise_for_status()
        self.id = r.json()["id"]
        self.pool = ThreadPoolExecutor(1)  # Playwright's sync API holds this thread's loop

    def run(self, code: str, timeout: float = 240) -> str:
        return self.pool.submit(asyncio.run, execute_in_kernel(
            self.url, self.token, self.id, code, timeout, USER)).result()

    def shutdown(self) -> None:
        requests.delete(f"{self.url}/api/kernels/{self.id}", headers=self.headers, timeout=60)
        self.pool.shutdown()


def said(out: str, key: str) -> str:
    found = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith(key + " ")]
    assert found, out
    return found[0]


def open_sidebar(page) -> None:  # type: ignore[no-untyped-def]
    tab = page.locator(".jp-SideBar [title='Dask'],"
                       " .jp-SideBar [data-id='dask-dashboard-launcher']")
    page.wait_for_timeout(500)  # JupyterLab restores the last layout (the sidebar may be open)
    new = page.get_by_text("NEW", exact=True)  # the cluster list's toolbar
    if not new.is_visible():
        tab.first.click()
    new.wait_for(timeout=30_000)
    # wider, so that a cluster's name and clamping message show in the screenshots
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first.bounding_box()
    if handle and handle["x"] < 600:
        y = handle["y"] + handle["height"] / 2
        page.mouse.move(handle["x"] + 1, y)
        page.mouse.down()
        page.mouse.move(720, y, steps=5)
        page.mouse.up()


def test_dashboard_and_sidebar(hub, testbed, browser) -> None:  # type: ignore[no-untyped-def]
    hub.spawn(USER, {"preset": "debug"}).raise_for_status()
    hub.wait_ready(USER)
    token = hub.user_token(USER)
    server_url = f"{hub.url}/user/{USER}"
    kernel = Kernel(server_url, token)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        out = kernel.run(MAKE_CLUSTER)
        message, workers = said(out, "MESSAGE"), int(said(out, "WORKERS"))
        assert re.match(r"scaling to \d+ workers?, not 10: ", message), out
        assert workers == int(message.split()[2]) and workers >= 1, out
        link = said(out, "LINK")
        assert re.fullmatch(rf"/user/{USER}/proxy/\d+/status", link), link
        assert "TOTAL 15" in kernel.run(WORK)

        # the dashboard: only alice's own login or token opens it
        bob = hub.user_token("bob")
        r = requests.get(hub.url + link, headers={"Authorization": f"token {bob}"},
                         timeout=30, allow_redirects=False)
        assert r.status_code == 403, (r.status_code, r.text[:300])
        r = requests.get(hub.url + link, timeout=30)  # no token: the hub's login page
        assert "/hub/login" in r.url and "Bokeh" not in r.text, (r.url, r.status_code)
        r = requests.get(hub.url + link, headers={"Authorization": f"token {token}"},
                         timeout=30)
        assert r.status_code == 200 and "Bokeh" in r.text

        log_in(page, hub, USER, next_url=link)
        page.wait_for_url(f"**{link}", timeout=60_000)
        page.wait_for_function(
            "() => window.Bokeh && Bokeh.documents.length > 0"
            " && Bokeh.documents[0].roots().length > 0", timeout=60_000)
        titles = page.evaluate(
            "() => Bokeh.documents[0].all_models ? [...Bokeh.documents[0].all_models]"
            ".map(m => m.text || '').filter(t => t) : []")
        assert any("Task Stream" in t for t in titles), titles
        page.wait_for_timeout(1500)  # let the task stream draw
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "dask-dashboard.png"))

        # the sidebar lists the notebook's cluster with its workers
        page.goto(f"{server_url}/lab")
        page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
        no_news = page.locator(".jp-toast-button", has_text="No")
        if no_news.count():
            no_news.first.click()
        open_sidebar(page)
        item = page.locator("li.dask-ClusterListingItem", has_text="(notebook)")
        item.wait_for(timeout=30_000)
        page.wait_for_function(
            "n => [...document.querySelectorAll('li.dask-ClusterListingItem')]"
            ".some(li => li.innerText.includes('(notebook)')"
            " && new RegExp('Workers:\\\\s*' + n).test(li.innerText))", arg=workers,
            timeout=30_000)
        assert message in item.inner_text()
        # choosing the cluster connects the sidebar's dashboard panels to its link
        item.locator(".dask-ClusterListingItem-title").click()
        assert page.locator(".dask-URLInput-wrapper input").input_value() == link
        page.locator(".dask-DashboardListing-item", has_text="Task Stream").wait_for(
            timeout=30_000)
        page.screenshot(path=str(SHOTS / "dask-sidebar.png"))

        # the sidebar's SCALE on the notebook's cluster: its scheduler runs the same clamp
        auth = {"Authorization": f"token {token}"}
        listed = requests.get(f"{server_url}/dask/clusters", headers=auth, timeout=30).json()
        (ours,) = [c for c in listed if "(notebook)" in c["name"]]
        r = requests.patch(f"{server_url}/dask/clusters/{ours['id']}", headers=auth,
                           json={"workers": 10}, timeout=60)
        assert r.status_code == 200 and message in r.json()["name"], r.text

        assert "LEFT []" in kernel.run(CLOSE)
        item.wait_for(state="detached", timeout=30_000)

        # NEW: a cluster from the site profile; SCALE to 10 gets the notebook's clamp
        page.get_by_text("NEW", exact=True).click()
        made = page.locator("li.dask-ClusterListingItem", has_text="HpcSlurmCluster")
        made.wait_for(timeout=90_000)
        made.locator("button", has_text="SCALE").click()
        dialog = page.locator(".jp-Dialog")
        dialog.locator("input[type=number]").first.fill("10")
        dialog.locator("button", has_text="SCALE").click()
        page.wait_for_function(
            "m => [...document.querySelectorAll('li.dask-ClusterListingItem')]"
            ".some(li => li.innerText.includes(m))", arg=message, timeout=60_000)
        page.screenshot(path=str(SHOTS / "dask-sidebar-new.png"))
        jobs = [j for j in squeue(testbed, USER, "%j") if j[0].startswith("hpcb-dask-")]
        assert len(jobs) == workers, jobs

        made.locator("button", has_text="SHUTDOWN").click()
        made.wait_for(state="detached", timeout=60_000)
    finally:
        page.close()
        kernel.shutdown()
        hub.stop(USER)
        hub.wait_stopped(USER)


#: what hpcbridge/dask/lab.py relies on in the nodes' dask-labextension (docs/architecture.md)
LABEXTENSION_INTERNALS = """
import inspect, dask
import dask_labextension, dask_labextension.manager as m
from dask_labextension import clusterhandler, dashboardhandler
assert isinstance(m.manager, m.DaskClusterManager)
assert clusterhandler.manager is m.manager and dashboardhandler.manager is m.manager
for name in ("list_clusters", "get_cluster", "scale_cluster", "adapt_cluster", "close_cluster"):
    assert callable(getattr(m.DaskClusterManager, name)), name
assert isinstance(m.manager._clusters, dict)
assert "labextension.factory" in inspect.getsource(m.make_cluster)
assert "asynchronous=True" in inspect.getsource(m.make_cluster)
print("ok", dask_labextension.__version__)
"""


def test_the_nodes_dask_labextension_has_what_we_rely_on(testbed) -> None:  # type: ignore[no-untyped-def]
    proc = testbed.login_exec(USER, ["/opt/hpcbridge/venv/bin/python", "-c",
                                     LABEXTENSION_INTERNALS])
    assert proc.returncode == 0 and proc.stdout.startswith(b"ok "), (
        "dask-labextension moved what hpcbridge/dask/lab.py relies on: "
        + (proc.stdout + proc.stderr).decode())

"""The real jupyterhub-idle-culler, a service of the hub, releases an idle server's whole
allocation: its notebook job and the Dask worker jobs its kernel started (issue 18).

A hub of its own (ports 8140/8221): the culler stops servers idle for 15 s, looking
every 3 s; servers report their activity every 3 s (production: 300 s), so the hub sees
the set-up's requests and its long silent cell, and culls only once the test leaves
the server alone with an idle kernel.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
import requests

from slurm_testbed.hub import up_hub
from tests.testbed.hubtools import HubApi, execute_in_kernel, port_offset, squeue

pytestmark = pytest.mark.testbed

USER = "alice"
TIMEOUT, EVERY = 15, 3
CULLER = f'''
from hpcbridge.spawner.culler import add_idle_culler
add_idle_culler(c, timeout={TIMEOUT}, cull_every={EVERY})
c.JupyterHub.last_activity_interval = {EVERY}
c.Spawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "{EVERY}"}}
'''
#: a notebook's cluster of two worker jobs, then a silent computation longer than the
#: timeout (the hub hears of activity every EVERY s, the culler looks every EVERY s):
#: a busy kernel is use of the server (hpcbridge/lab/activity.py), so no cull mid-cell
TWO_WORKERS = f"""
import time, hpcbridge.dask
cluster = hpcbridge.dask.cluster(cores=1, memory="1G", walltime="00:10:00", poll_interval=2)
print("TEN", cluster.sync(cluster.plan_scale, 10).message)  # what scale(10) would say
cluster.scale(2)
print("NAME", cluster._name, flush=True)
time.sleep({TIMEOUT + 3 * EVERY})
"""


@pytest.fixture(scope="module")
def culling_hub(testbed, tmp_path_factory):
    from hpcbridge.hubrun import Hub

    runner = Hub(tmp_path_factory.mktemp("cullhub"), public_port=8140 + port_offset(),
                 hub_port=8221 + port_offset())
    status = up_hub(runner, testbed, users=[USER], interval=3.0, extra_config=CULLER)
    api = HubApi(status["hub_url"], status["admin_token"])
    api.runner = runner
    yield api
    try:
        api.stop(USER)
    except requests.RequestException:
        pass
    finally:
        runner.down()


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_the_culler_cancels_the_idle_servers_job_and_its_dask_workers(testbed, culling_hub):
    api = culling_hub
    before = {j[0] for j in squeue(testbed, USER, "%i")}  # e.g. another hub's server
    api.spawn(USER, {"preset": "debug"}).raise_for_status()
    api.wait_ready(USER)
    server_job = api.server(USER)["state"]["job_id"]
    token = api.user_token(USER)
    url = f"{api.url}/user/{USER}"
    kernel = requests.post(f"{url}/api/kernels", json={"name": "python3"},
                           headers={"Authorization": f"token {token}"}, timeout=60)
    kernel.raise_for_status()
    out = asyncio.run(execute_in_kernel(url, token, kernel.json()["id"], TWO_WORKERS, 240,
                                        USER))  # a cull mid-cell closes its websocket

    def at_work() -> None:  # an API request: the user is still at work (not idle)
        requests.get(f"{url}/api/kernels", headers={"Authorization": f"token {token}"},
                     timeout=30).raise_for_status()
    name = out.split("NAME ", 1)[1].split()[0]
    assert name.startswith(f"hpcb-dask-j{server_job}-"), out
    # the clamp reads as a sentence; the server's own job is one of "your other jobs"
    assert re.search(r"TEN scaling to [0-3] workers, not 10: QOS normal allows 4 jobs per "
                     r"user; [1-4] (is|are) already used by your other jobs", out), out

    def workers_running():
        at_work()  # until both run
        rows = [j for j in squeue(testbed, USER, "%i", "%j", "%T") if j[1] == name]
        return rows if [r[2] for r in rows] == ["RUNNING"] * 2 else None

    workers = [r[0] for r in wait_for(workers_running, 120, "2 Dask workers running")]
    idle_since = time.monotonic()

    # nobody touches the server: the culler stops it, and the stop releases everything
    api.wait_stopped(USER, timeout=TIMEOUT + 4 * EVERY + 60)
    culled_after = time.monotonic() - idle_since
    log = (api.runner.dir / "jupyterhub.log").read_text(errors="replace")
    assert f"Culling server {USER}" in log  # the culler's own words, not another stop

    def all_gone():
        left = {j[0] for j in squeue(testbed, USER, "%i")} - before
        return not left or None

    wait_for(all_gone, 60, f"{USER}'s jobs {server_job}, {', '.join(workers)} to leave")
    print(f"culled {culled_after:.0f} s after the last request (timeout {TIMEOUT} s)")

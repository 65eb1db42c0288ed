"""The hub on the login node with the local transport (issue D): JupyterHub runs as the
``hpcbridge`` account inside the login container and acts for alice through
``sudo -n -u alice`` under the documented sudoers rule; compute nodes reach it by the
login node's name. Everything the test asks the hub goes from inside the container.

The proxy is the Python drop-in for configurable-http-proxy that the node environment
carries (containers/slurm/requirements.in): the image has no Node.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest

from slurm_testbed.cluster import PYTHON, SRC_MOUNT
from slurm_testbed.engine import REPO
from tests.testbed.hubtools import squeue
from tests.testbed.test_scheduler_faults import documented_sudoers

pytestmark = pytest.mark.testbed

ACCOUNT = "hpcbridge"  # the hub's account on the login node (containers/slurm/entrypoint.sh)
HUB_DIR = "/var/lib/hpcbridge/login-hub"
PUBLIC_PORT, HUB_PORT = 8400, 8481  # inside the login container's own network namespace
SUDOERS = "/etc/sudoers.d/hpcbridge"
PROFILE = Path("tests/fixtures/profiles/testbed-login-hub.yaml")  # in the checkout

HUB_CONFIG = """\
from hpcbridge.spawner import reattach
from hpcbridge.spawner.hubconfig import configure

configure(c, site_profile={site!r}, hub_connect_url={connect!r})
# hpcbridge is on the node venv's path, not pip-installed: no "hpcbridge" entry point
c.JupyterHub.spawner_class = "hpcbridge.spawner.spawner.HpcSpawner"
# the session's other hub shares this cluster and its hpcb-nb-* job names: this hub's
# orphan sweep would cancel that hub's servers, so it runs without the re-attach service
c.JupyterHub.services = [s for s in c.JupyterHub.services.get_value([])
                         if s["name"] != reattach.SERVICE]
c.JupyterHub.load_roles = [r for r in c.JupyterHub.load_roles.get_value([])
                           if r["name"] != reattach.SERVICE]
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = ["/opt/hpcbridge/venv/bin/configurable-http-proxy"]
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.Authenticator.allowed_users = {{"alice"}}
c.JupyterHub.allow_named_servers = True
c.JupyterHub.services.append({{"name": "login-test-admin", "api_token": {token!r}}})
c.JupyterHub.load_roles.append({{"name": "admin", "services": ["login-test-admin"]}})
c.HpcSpawner.status_interval = 3.0
"""

#: start or stop the hub with hpcbridge.hubrun.Hub (log, pid files), as the hub account
HUB_CTL = """\
import sys
from pathlib import Path
from hpcbridge.hubrun import Hub

hub = Hub(Path(sys.argv[1]), public_port=int(sys.argv[2]), hub_port=int(sys.argv[3]))
if sys.argv[4] == "start":
    hub.start({})
    hub.wait_ready(timeout=120)
else:
    hub.down()
"""

#: one REST call to the hub through its proxy, from the login node; token on stdin
REST = """\
import json, sys, urllib.error, urllib.request

req = json.load(sys.stdin)
data = json.dumps(req["body"]).encode() if req.get("body") is not None else None
request = urllib.request.Request(
    "http://127.0.0.1:%s" % sys.argv[1] + req["path"], data=data, method=req["method"],
    headers={"Authorization": "token " + req["token"], "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=60) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
print(json.dumps({"status": status, "body": body.decode(errors="replace")}))
"""


def _as_hub(testbed, argv: list[str], *, input: bytes | None = None, timeout: float = 150):
    return testbed.engine.run(
        "exec", "-i", "--user", ACCOUNT, "--workdir", "/var/lib/hpcbridge",
        "--env", "HOME=/var/lib/hpcbridge", testbed.container_name("login"), *argv,
        input=input, timeout=timeout, check=False)


class LoginHub:
    """The hub's REST API as seen from the login node (through its proxy)."""

    def __init__(self, testbed, token: str) -> None:
        self.testbed, self.token = testbed, token

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = None
             ) -> tuple[int, str]:
        req = {"method": method, "path": path, "body": body, "token": token or self.token}
        proc = _as_hub(self.testbed, [PYTHON, "-c", REST, str(PUBLIC_PORT)],
                       input=json.dumps(req).encode(), timeout=90)
        assert proc.returncode == 0, proc.stderr.decode()
        out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        return out["status"], out["body"]

    def servers(self, user: str) -> dict:
        status, body = self.call("GET", f"/hub/api/users/{user}")
        assert status == 200, body
        return json.loads(body).get("servers", {})

    def wait_ready(self, user: str, name: str, timeout: float = 150) -> dict:
        deadline = time.monotonic() + timeout
        while not (server := self.servers(user).get(name, {})).get("ready"):
            assert server, f"{user}'s server {name!r} stopped while starting"
            assert time.monotonic() < deadline, f"{user}'s server {name!r} not ready: {server}"
            time.sleep(1)
        return server


@pytest.fixture
def login_hub(testbed):
    sudoers = documented_sudoers(ACCOUNT).encode()
    testbed.exec("login", ["dd", f"of={SUDOERS}", "status=none"], input=sudoers, check=True)
    testbed.exec("login", ["chmod", "0440", SUDOERS], check=True)
    testbed.exec("login", ["visudo", "-c", "-f", SUDOERS], check=True)
    token = secrets.token_hex(32)
    assert (REPO / PROFILE).is_file()
    site = f"{SRC_MOUNT}/{PROFILE.as_posix()}"  # the checkout as the login node mounts it
    config = HUB_CONFIG.format(site=site, connect=f"http://login:{HUB_PORT}",
                               public=PUBLIC_PORT, proxy_api=PUBLIC_PORT + 1,
                               hub_port=HUB_PORT, dir=HUB_DIR, token=token)
    ctl = [PYTHON, "-c", HUB_CTL, HUB_DIR, str(PUBLIC_PORT), str(HUB_PORT)]
    try:
        assert _as_hub(testbed, ["rm", "-rf", HUB_DIR]).returncode == 0
        assert _as_hub(testbed, ["install", "-d", "-m", "0700", HUB_DIR]).returncode == 0
        wrote = _as_hub(testbed, ["dd", f"of={HUB_DIR}/jupyterhub_config.py", "status=none"],
                        input=config.encode())
        assert wrote.returncode == 0, wrote.stderr.decode()
        started = _as_hub(testbed, [*ctl, "start"])
        assert started.returncode == 0, started.stderr.decode()[-3000:]
        yield LoginHub(testbed, token)
    finally:
        _as_hub(testbed, [*ctl, "stop"])
        testbed.exec("login", ["rm", "-f", SUDOERS])
        testbed.exec("ctl", ["scancel", "--user=alice", "--name=hpcb-nb-alice-login"])


def test_hub_on_the_login_node_spawns_through_sudo_and_stop_cancels(login_hub, testbed):
    hub = login_hub
    # a named server: its job name tells it from the session's other hub's server of alice
    status, body = hub.call("POST", "/hub/api/users/alice/servers/login", {"preset": "debug"})
    assert status in (201, 202), body
    server = hub.wait_ready("alice", "login")
    job_id = server["state"]["job_id"]
    (job,) = [j for j in squeue(testbed, "alice", "%i", "%j", "%u", "%T", "%N") if j[0] == job_id]
    assert job[1:4] == ["hpcb-nb-alice-login", "alice", "RUNNING"]
    assert job[4] in testbed.info().nodes
    # the hub runs as its own account, not as root and not as alice
    pid = _as_hub(testbed, ["cat", f"{HUB_DIR}/jupyterhub.pid"]).stdout.decode().strip()
    owner = testbed.exec("login", ["ps", "-o", "user=", "-p", pid]).stdout.decode().strip()
    assert owner == ACCOUNT
    # alice's server answers through the proxy on the login node
    status, body = hub.call("POST", "/hub/api/users/alice/tokens",
                            {"scopes": ["access:servers!user=alice"]})
    assert status == 201, body
    token = json.loads(body)["token"]
    status, body = hub.call("GET", "/user/alice/login/api/status", token=token)
    assert status == 200 and "started" in json.loads(body), body
    status, body = hub.call("DELETE", "/hub/api/users/alice/servers/login")
    assert status in (202, 204), body
    deadline = time.monotonic() + 60
    while True:
        state = testbed.login_exec("alice", ["squeue", "-h", "-j", job_id, "-o", "%T"]
                                   ).stdout.decode().strip()
        if state in ("", "CANCELLED") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert state in ("", "CANCELLED")
    assert "login" not in hub.servers("alice")

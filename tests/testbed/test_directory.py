"""Identity from the testbed's LDAP directory, as at a center.

Nodes resolve users from the directory (nslcd), the hub authenticates against it
(jupyterhub-ldapauthenticator), and ``hpcbridge testbed adduser`` makes a new user who
can log in and spawn with no other step. A directory outage refuses logins and never
stops a running server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.testbed.hubtools import run_in_new_kernel

pytestmark = pytest.mark.testbed

NEWTON = "newton"
SLAPD = ["/usr/sbin/slapd", "-f", "/etc/ldap/slapd.conf", "-h", "ldap:///", "-u", "openldap",
         "-g", "openldap"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("hpcbridge")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300,
                          env=os.environ, check=False)


def _newton(testbed) -> str:  # type: ignore[no-untyped-def]
    """newton's password: made now by the CLI, or remembered from an earlier run."""
    from slurm_testbed import ldap

    proc = _cli("testbed", "adduser", NEWTON)
    if proc.returncode == 0:
        m = re.search(r"password (\S+)", proc.stdout)
        assert m, proc.stdout
        return m.group(1)
    assert "in the directory already" in proc.stderr, proc.stderr
    return ldap.passwords(testbed.state_dir)[NEWTON]


def _form_login(hub, user: str, password: str) -> requests.Response:  # type: ignore[no-untyped-def]
    session = requests.Session()
    session.get(f"{hub.url}/hub/login", timeout=30)
    return session.post(f"{hub.url}/hub/login", timeout=60, allow_redirects=False, data={
        "username": user, "password": password, "_xsrf": session.cookies.get("_xsrf", "")})


def test_adduser_then_login_spawn_and_id_on_a_compute_node(hub, testbed, browser) -> None:  # type: ignore[no-untyped-def]
    password = _newton(testbed)
    page = browser.new_page()
    try:
        page.goto(f"{hub.url}/hub/login?next=/hub/spawn")
        page.fill("#username_input", NEWTON)
        page.fill("#password_input", password)
        page.click("#login_submit")
        page.wait_for_selector("#hpcb-preset")
        page.check("input[name=preset][value=debug]")
        page.click("form button[type=submit], form input[type=submit]")
        page.wait_for_url(f"**/user/{NEWTON}/lab**", timeout=180_000)
    finally:
        page.close()
    try:
        server = hub.wait_ready(NEWTON)
        out = run_in_new_kernel(f"{hub.url}/user/{NEWTON}", hub.user_token(NEWTON),
                                "import os, socket, subprocess\n"
                                "print(subprocess.run(['id'], capture_output=True, text=True)"
                                ".stdout.strip(), socket.gethostname())")
        directory = testbed.exec("ldap", ["ldapsearch", "-x", "-LLL", "-H", "ldap://localhost/",
                                          "-b", "ou=people,dc=hpcbridge,dc=test",
                                          f"uid={NEWTON}", "uidNumber"]).stdout.decode()
        uid = re.search(r"uidNumber: (\d+)", directory)
        assert uid, directory
        assert f"uid={uid.group(1)}({NEWTON})" in out, out
        node = out.split()[-1]
        assert node in testbed.info().nodes and server["state"]["job_id"]
        # known on that node from the directory alone: no line of /etc/passwd names her
        assert testbed.exec(node, ["grep", "-c", NEWTON, "/etc/passwd"]).stdout.strip() == b"0"
    finally:
        hub.stop(NEWTON)
        hub.wait_stopped(NEWTON)


def test_a_wrong_password_and_an_unknown_user_are_refused(hub) -> None:  # type: ignore[no-untyped-def]
    for user, password in (("alice", "not-her-password"), ("nosuchuser", "x")):
        r = _form_login(hub, user, password)
        assert r.status_code == 403 and "Invalid username or password" in r.text, r.status_code
    assert _form_login(hub, "alice", hub.passwords["alice"]).status_code == 302


def _wait_nodes_resolve(testbed, user: str) -> None:  # type: ignore[no-untyped-def]
    """Every node resolves the user again (nslcd on each node found the directory back),
    three rounds in a row: the later modules log in and run as users from the start."""
    nodes = ["login", *testbed.info().nodes]
    deadline, good = time.monotonic() + 120, 0
    while good < 3:
        missing = [n for n in nodes
                   if testbed.exec(n, ["getent", "passwd", user], timeout=30).returncode != 0]
        good = 0 if missing else good + 1
        assert time.monotonic() < deadline, f"{missing} do not resolve {user} after the outage"
        time.sleep(1)


def test_a_directory_outage_refuses_logins_and_keeps_running_servers(hub, testbed) -> None:  # type: ignore[no-untyped-def]
    if not hub.server("bob").get("ready"):
        r = hub.spawn("bob", {"preset": "debug"})
        assert r.status_code in (201, 202), r.text
    before = hub.wait_ready("bob")
    token = hub.user_token("bob")
    testbed.exec("ldap", ["pkill", "-x", "slapd"], check=True)
    try:
        time.sleep(2)
        r = _form_login(hub, "bob", hub.passwords["bob"])
        assert r.status_code == 503 and "directory" in r.text, r.status_code  # not a 500
        deadline = time.monotonic() + 20  # a few of the hub's poll rounds
        while time.monotonic() < deadline:
            assert hub.server("bob").get("ready"), "server dropped during the outage"
            time.sleep(3)
        r = requests.get(f"{hub.url}/user/bob/api/status", timeout=30,
                         headers={"Authorization": f"token {token}"})
        assert r.status_code == 200
    finally:
        testbed.exec("ldap", SLAPD, check=True)
    deadline = time.monotonic() + 60
    while _form_login(hub, "bob", hub.passwords["bob"]).status_code != 302:
        assert time.monotonic() < deadline, "logins did not come back with the directory"
        time.sleep(2)
    _wait_nodes_resolve(testbed, "bob")
    assert hub.server("bob")["state"]["job_id"] == before["state"]["job_id"]
    hub.stop("bob")

"""The hub's public side over https, configured from the profile's ``hub.tls``.

The testbed's private CA signs the hub's certificate; Chromium trusts that CA through
its own certificate database (NSS, as a center would install its CA), never by
ignoring certificate errors. alice logs in over https and lands in JupyterLab.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest

from slurm_testbed.hub import up_hub
from slurm_testbed.profiles import bundled_profile_text
from tests.testbed.hubtools import CHROMIUM_ARGS, HubApi, port_offset

pytestmark = pytest.mark.testbed


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is not installed")
        pytest.skip(f"{tool} is not installed")
    return path


def _trusting_home(tmp: Path, ca: Path) -> Path:
    """A HOME whose NSS database (what Chromium reads) trusts ``ca`` for servers."""
    certutil = _need("certutil")
    db = tmp / "home" / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run([certutil, "-d", f"sql:{db}", "-N", "--empty-password"], check=True)
    subprocess.run([certutil, "-d", f"sql:{db}", "-A", "-t", "C,,", "-n", "hpcbridge-testbed",
                    "-i", str(ca)], check=True)
    return tmp / "home"


@pytest.fixture(scope="module")
def tls_hub(testbed, tmp_path_factory):  # type: ignore[no-untyped-def]
    from hpcbridge.hubrun import Hub
    from slurm_testbed import tls

    _need("configurable-http-proxy")
    tmp = tmp_path_factory.mktemp("tlshub")
    ca = tls.make_ca(tmp / "ca")
    cert, key = tls.issue(ca, ["127.0.0.1", "localhost"], tmp)
    profile = tmp / "site.yaml"
    text = bundled_profile_text("testbed")
    assert "\nhub:\n" in text
    profile.write_text(text.replace("\nhub:\n", f"\nhub:\n  tls: {{cert: {cert}, key: {key}}}\n"))
    runner = Hub(tmp / "hub", public_port=8120 + port_offset(), hub_port=8201 + port_offset())
    runner.ca_file = str(ca[0])
    status = up_hub(runner, testbed, users=["alice"], interval=3.0, site=str(profile))
    api = HubApi(status["hub_url"], status["admin_token"])
    api.session.trust_env = False  # REQUESTS_CA_BUNDLE would replace verify
    api.session.verify = str(ca[0])
    try:
        yield api, status, ca[0], tmp
    finally:
        try:
            api.stop("alice")
        finally:
            runner.down()


def test_the_hub_answers_https_with_the_testbed_ca_only(tls_hub) -> None:  # type: ignore[no-untyped-def]
    _, status, ca, _ = tls_hub
    assert status["hub_url"].startswith("https://127.0.0.1:")
    trusted = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(f"{status['hub_url']}/hub/api/", context=trusted) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"{status['hub_url']}/hub/api/",
                               context=ssl.create_default_context())


def test_alice_logs_in_and_spawns_over_https(tls_hub, testbed) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    api, status, ca, tmp = tls_hub
    home = _trusting_home(tmp, ca)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_need("chromium"), args=CHROMIUM_ARGS,
                                    headless=True, env={**os.environ, "HOME": str(home)})
        page = browser.new_page()
        try:
            url = status["hub_url"]
            page.goto(f"{url}/hub/login?next=/hub/spawn")
            page.fill("#username_input", "alice")
            page.fill("#password_input", status["users"]["alice"])
            page.click("#login_submit")
            page.wait_for_selector("#hpcb-preset")
            page.check("input[name=preset][value=debug]")
            page.click("form button[type=submit], form input[type=submit]")
            page.wait_for_url("**/user/alice/lab**", timeout=180_000)
            page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
            assert page.url.startswith("https://127.0.0.1:")
        finally:
            browser.close()
    assert api.server("alice").get("ready")

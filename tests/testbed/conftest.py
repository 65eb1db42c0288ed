"""Fixtures for tests that need a real JupyterHub on the testbed."""

from __future__ import annotations

import os
import shutil

import pytest
import requests

from tests.testbed.hubtools import CHROMIUM_ARGS, HubApi, port_offset


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if not chromium:
        message = "browser tests need Debian's chromium and the playwright package"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def hub(testbed, tmp_path_factory):
    """A JupyterHub with HpcSpawner and configurable-http-proxy, on its own ports."""
    from hpcbridge.hubrun import Hub
    from slurm_testbed import config

    if not shutil.which("configurable-http-proxy"):
        message = ("configurable-http-proxy is not installed "
                   "(npm install -g configurable-http-proxy)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    offset = port_offset()
    runner = Hub(tmp_path_factory.mktemp("hub"), public_port=8100 + offset,
                 hub_port=8181 + offset)
    status = runner.up_on_testbed(testbed, users=list(config.USERS), interval=3.0)
    api = HubApi(status["hub_url"], status["admin_token"])
    api.runner = runner
    api.passwords = status["users"]
    yield api
    try:
        if testbed.reusable():  # the testbed's own `down` test may have run already
            for user in config.USERS:
                model = api.request("GET", f"/users/{user}").json()
                for name in model.get("servers", {}):
                    api.stop(user, name)
    except requests.RequestException as exc:
        print(f"stopping servers at the end failed: {exc}")
    finally:
        runner.down()

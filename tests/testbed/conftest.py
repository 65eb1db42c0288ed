"""Fixtures for tests that need a real JupyterHub on the testbed."""

from __future__ import annotations

import os
import shutil

import pytest
import requests

from slurm_testbed.hub import up_hub
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


#: added to the hub's ports for a testbed of another generation than the session's default
OTHER_GENERATION_PORTS = 500


class HubPool:
    """One JupyterHub per testbed (so per Slurm generation), up until the session ends."""

    def __init__(self, directory) -> None:  # type: ignore[no-untyped-def]
        self.directory = directory
        self.hubs: dict[str, tuple[HubApi, object]] = {}

    def get(self, testbed, default: bool) -> HubApi:  # type: ignore[no-untyped-def]
        from hpcbridge.hubrun import Hub
        from slurm_testbed import config

        if testbed.name not in self.hubs:
            offset = port_offset() + (0 if default else OTHER_GENERATION_PORTS)
            runner = Hub(self.directory / testbed.name, public_port=8100 + offset,
                         hub_port=8181 + offset)
            status = up_hub(runner, testbed, users=list(config.USERS), interval=3.0)
            api = HubApi(status["hub_url"], status["admin_token"])
            api.runner = runner
            api.passwords = status["users"]
            self.hubs[testbed.name] = (api, testbed)
        return self.hubs[testbed.name][0]

    def close(self) -> None:
        from slurm_testbed import config

        for api, testbed in self.hubs.values():
            try:
                if testbed.reusable():  # type: ignore[attr-defined] # `down` may have run
                    for user in config.USERS:
                        model = api.request("GET", f"/users/{user}").json()
                        for name in model.get("servers", {}):
                            api.stop(user, name)
            except requests.RequestException as exc:
                print(f"stopping servers at the end failed: {exc}")
            finally:
                api.runner.down()


@pytest.fixture(scope="session")
def hub_pool(tmp_path_factory, testbed_pool):
    if not shutil.which("configurable-http-proxy"):
        message = ("configurable-http-proxy is not installed "
                   "(npm install -g configurable-http-proxy)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    pool = HubPool(tmp_path_factory.mktemp("hub"))
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def hub(hub_pool, testbed, testbed_pool):
    """A JupyterHub with HpcSpawner and configurable-http-proxy, on its own ports, on
    this test's testbed."""
    return hub_pool.get(testbed, default=testbed.generation.slurm == testbed_pool.default)

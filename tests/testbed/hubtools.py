"""Helpers for tests that drive a real JupyterHub (+ configurable-http-proxy) on the testbed."""

from __future__ import annotations

import os
import time

from bench.hubapi import HubApi

__all__ = ["CHROMIUM_ARGS", "HubApi", "log_in", "port_offset", "sbatch_sleepers", "squeue",
           "wait_server"]

#: how the browser tests start Debian's Chromium (headless, in a container-less CI too)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def port_offset() -> int:
    """Added to the test hubs' fixed ports, so that several checkouts can test at once."""
    return int(os.environ.get("HPCBRIDGE_TEST_PORT_OFFSET", "0"))


def squeue(tb, user: str, *fields: str) -> list[list[str]]:
    """Rows of `squeue -u user` with the given format fields, as the user."""
    fmt = "|".join(fields)
    out = tb.login_exec(user, ["squeue", "-h", "-u", user, "-o", fmt]).stdout.decode()
    return [line.split("|") for line in out.splitlines() if line.strip()]


def sbatch_sleepers(tb, user: str, count: int) -> list[str]:
    """Submit ``count`` one-core jobs of ``user`` that sleep 10 minutes; their ids."""
    ids = []
    for _ in range(count):
        out = tb.login_exec(user, ["sbatch", "--parsable", "-t", "10", "-c", "1",
                                   "--mem=100M", "-o", "/dev/null", "--wrap", "sleep 600"])
        ids.append(out.stdout.decode().strip())
    return ids


def wait_server(hub, user: str, server: str, pred, timeout: float = 60) -> dict:
    """The server's model once ``pred(model)`` holds; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        srv = hub.server(user, server)
        if pred(srv):
            return srv
        time.sleep(0.5)
    last = hub.server(user, server)
    raise AssertionError(f"{user}/{server}: condition not met; server is {last}")


def log_in(page, hub, user: str, next_url: str = "/hub/spawn") -> None:
    """Log ``user`` in through the hub's login form (a Playwright page), then go on to
    ``next_url``."""
    page.goto(f"{hub.url}/hub/login?next={next_url}")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.passwords[user])
    page.click("#login_submit")

"""Helpers for tests that drive a real JupyterHub (+ configurable-http-proxy) on the testbed."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

from bench.hubapi import HubApi

__all__ = ["CHROMIUM_ARGS", "HubApi", "execute_in_kernel", "log_in", "port_offset",
           "sbatch_sleepers", "squeue", "wait_server"]

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


async def execute_in_kernel(base: str, token: str, kernel_id: str, code: str, timeout: float,
                            user: str) -> str:
    """Run code in a kernel through the server's websocket; stdout, or raise on an error."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
    ws = await websocket_connect(HTTPRequest(  # a busy machine takes more than 20 s
        url, headers={"Authorization": f"token {token}"}, connect_timeout=timeout,
        request_timeout=timeout))
    msg_id = uuid.uuid4().hex
    await ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": user,
                   "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))
    out: list[str] = []
    try:
        while True:
            raw = await asyncio.wait_for(ws.read_message(), timeout)
            assert raw is not None, "the kernel's websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                raise AssertionError("".join(out) + "\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)
    finally:
        ws.close()


def run_in_new_kernel(server_url: str, token: str, code: str, timeout: float = 240,
                      user: str = "") -> str:
    """Start a kernel in the server, run ``code`` there, delete the kernel; its stdout."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    headers = {"Authorization": f"token {token}"}
    r = requests.post(f"{server_url}/api/kernels", json={"name": "python3"}, headers=headers,
                      timeout=60)
    r.raise_for_status()
    kernel_id = r.json()["id"]
    try:
        # a thread of its own: Playwright's sync API keeps an event loop in this one
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, execute_in_kernel(
                server_url, token, kernel_id, code, timeout, user)).result()
    finally:
        requests.delete(f"{server_url}/api/kernels/{kernel_id}", headers=headers, timeout=60)

"""A JupyterHub's REST API with an admin token: the benchmarks' client, also used by
the testbed tests (``tests.testbed.hubtools`` re-exports it)."""

from __future__ import annotations

import time

import requests


class HubApi:
    """The hub's REST API with the admin service token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def request(self, method: str, path: str, **kw) -> requests.Response:
        return self.session.request(method, f"{self.url}/hub/api{path}", timeout=60, **kw)

    def spawn(self, user: str, options: dict | None = None, server: str = "") -> requests.Response:
        path = f"/users/{user}/server" + (f"s/{server}" if server else "")
        return self.request("POST", path, json=options or {})

    def stop(self, user: str, server: str = "") -> requests.Response:
        path = f"/users/{user}/server" + (f"s/{server}" if server else "")
        return self.request("DELETE", path)

    def server(self, user: str, server: str = "") -> dict:
        model = self.request("GET", f"/users/{user}").json()
        return model.get("servers", {}).get(server, {})

    def wait_ready(self, user: str, server: str = "", timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            srv = self.server(user, server)
            if srv.get("ready"):
                return srv
            if not srv:
                raise AssertionError(f"{user}'s server {server!r} stopped while starting")
            time.sleep(0.5)
        raise AssertionError(f"{user}'s server {server!r} not ready in {timeout} s")

    def wait_stopped(self, user: str, server: str = "", timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.server(user, server):
                return
            time.sleep(0.5)
        raise AssertionError(f"{user}'s server {server!r} still there after {timeout} s")

    def user_token(self, user: str) -> str:
        r = self.request("POST", f"/users/{user}/tokens",
                         json={"scopes": [f"access:servers!user={user}"]})
        r.raise_for_status()
        return r.json()["token"]

"""The benchmarks' stand-in server (hpcbridge/spawner/standin.py): what it answers, its
activity report, and the launcher choosing it only when the hub's environment file asks."""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from hpcbridge.spawner import launch, standin

STARTED = 1_764_500_000.0  # 2025-11-30T10:53:20Z


def test_timestamps_are_jupyterhubs_utc_format():
    assert standin.iso(STARTED) == "2025-11-30T10:53:20Z"


@pytest.mark.parametrize("path", ["/user/alice/api", "/user/alice/api/", "/user/a/s1/api?x=1"])
def test_api_answers_a_version(path):
    assert standin.answer(path, STARTED) == (200, {"version": standin.VERSION})


def test_status_says_started_and_unused():
    status, body = standin.answer("/user/alice/api/status", STARTED)
    assert status == 200 and isinstance(body, dict)
    assert body["started"] == body["last_activity"] == "2025-11-30T10:53:20Z"
    assert body["kernels"] == body["connections"] == 0


def test_any_other_path_answers_below_500_with_text():
    status, body = standin.answer("/user/alice/lab", STARTED)
    assert status == 200 and "stand-in" in str(body)


def test_activity_body_is_singleusers():
    assert standin.activity_body("s1", STARTED) == {
        "servers": {"s1": {"last_activity": "2025-11-30T10:53:20Z"}},
        "last_activity": "2025-11-30T10:53:20Z"}


def test_wanted_only_when_the_hub_wrote_the_switch():
    env = {"JUPYTERHUB_API_TOKEN": "t"}
    assert not standin.wanted(env)
    assert not standin.wanted({**env, standin.STANDIN_ENV: "true"})
    assert not standin.wanted({standin.STANDIN_ENV: "1"})  # no server token: no server
    assert standin.wanted({**env, standin.STANDIN_ENV: "1"})


def test_the_switch_is_hub_configuration():
    from hpcbridge.spawner.spawner import HpcSpawner

    trait = HpcSpawner.class_traits()["bench_standin_server"]
    assert trait.default_value is False and trait.metadata.get("config") is True


def test_launcher_runs_the_standin_after_reporting_the_port(monkeypatch):
    calls: list[tuple] = []
    monkeypatch.setattr(launch, "report_port", lambda url, tok, port: calls.append(
        ("report", url, tok, port)))
    monkeypatch.setattr(standin, "run", lambda env, port, started: calls.append(
        ("run", port)))
    env = {"JUPYTERHUB_API_URL": "http://hub/hub/api", "JUPYTERHUB_API_TOKEN": "tok",
           standin.STANDIN_ENV: "1"}
    launch.serve(env)
    assert [c[0] for c in calls] == ["report", "run"]
    assert calls[0][1:3] == ("http://hub/hub/api", "tok") and calls[0][3] == calls[1][1]


class _Hub(BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[str, str, dict]]] = []
    got = threading.Event()

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.posts.append((self.path, self.headers["Authorization"],
                           json.loads(self.rfile.read(length))))
        self.send_response(200)
        self.end_headers()
        self.got.set()

    def log_message(self, format: str, *args) -> None:
        pass


def test_serves_http_and_reports_activity_to_the_hub():
    hub = HTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    port = launch.free_port()
    env = {"JUPYTERHUB_API_TOKEN": "tok", "JUPYTERHUB_SERVER_NAME": "s1",
           "JUPYTERHUB_ACTIVITY_INTERVAL": "0.05",
           "JUPYTERHUB_ACTIVITY_URL":
               f"http://127.0.0.1:{hub.server_address[1]}/hub/api/users/alice/activity"}
    threading.Thread(target=standin.run, args=(env, port, STARTED), daemon=True).start()
    try:
        assert _Hub.got.wait(10)
        path, auth, body = _Hub.posts[0]
        assert path == "/hub/api/users/alice/activity" and auth == "token tok"
        assert body == standin.activity_body("s1", STARTED)
        for _ in range(200):  # the server thread binds its port while we ask
            try:
                response = urllib.request.urlopen(f"http://127.0.0.1:{port}/user/alice/s1/api",
                                                  timeout=5)
                break
            except OSError:
                threading.Event().wait(0.02)
        else:
            pytest.fail("the stand-in never answered")
        assert response.status == 200
        assert response.headers["X-JupyterHub-Version"] == standin.hub_version()
        assert json.loads(response.read()) == {"version": standin.VERSION}
    finally:
        hub.shutdown()

"""A stand-in for JupyterLab, for load benchmarks only (``python -m bench scale``).

A notebook job normally runs ``jupyterhub-singleuser`` (~100 MB and seconds of start-up
per server). To hold hundreds of running servers on a small testbed, a hub configured
with ``HpcSpawner.bench_standin_server = True`` (hub configuration only: no spawn form
field or ``user_options`` key reaches it) tells its jobs' launcher, through the job's
private environment file, to run this server instead. It speaks what the hub needs of a
server and nothing more:

* the port report is the launcher's, unchanged (``report_port`` in ``launch.py``);
* any GET answers 200 with JupyterHub's ``X-JupyterHub-Version`` header (the hub's
  readiness check takes any answer below 500 and compares that header);
  ``…/api`` and ``…/api/status`` answer like jupyter-server's (version; started, last
  activity, no kernels or connections);
* the activity report: every ``JUPYTERHUB_ACTIVITY_INTERVAL`` seconds (300 by default, as
  jupyterhub-singleuser) a POST of the server's last activity (its start: nobody uses a
  stand-in) to ``JUPYTERHUB_ACTIVITY_URL`` with the server's token.

It authenticates nobody and serves no notebook: never configure it on a hub people use.
Standard library only (a few MB per server).
"""

from __future__ import annotations

import datetime
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

#: the key of the job's environment file that selects this server (set by the hub only)
STANDIN_ENV = "HPCBRIDGE_STANDIN_SERVER"
DEFAULT_ACTIVITY_INTERVAL = 300.0
VERSION = "hpcbridge-standin"


def iso(ts: float) -> str:
    """JupyterHub's timestamp format: ISO 8601 in UTC with a ``Z``."""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace(
        "+00:00", "Z")


def answer(path: str, started: float) -> tuple[int, dict | str]:
    """What a GET of ``path`` answers: status and a JSON object or a text."""
    bare = path.split("?", 1)[0].rstrip("/")
    if bare.endswith("/api"):
        return 200, {"version": VERSION}
    if bare.endswith("/api/status"):
        return 200, {"started": iso(started), "last_activity": iso(started),
                     "connections": 0, "kernels": 0}
    return 200, "hpcbridge stand-in server (benchmarks only): no notebook here\n"


def activity_body(server_name: str, last_activity: float) -> dict:
    """The body jupyterhub-singleuser posts to the hub's activity URL."""
    stamp = iso(last_activity)
    return {"servers": {server_name: {"last_activity": stamp}}, "last_activity": stamp}


def hub_version() -> str:
    """The installed JupyterHub's version, which the hub expects in the header."""
    from importlib import metadata

    try:
        return metadata.version("jupyterhub")
    except metadata.PackageNotFoundError:
        return ""


def make_handler(started: float, version: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = VERSION

        def do_GET(self) -> None:
            status, body = answer(self.path, started)
            data = (json.dumps(body) if isinstance(body, dict) else body).encode()
            self.send_response(status)
            kind = "application/json" if isinstance(body, dict) else "text/plain"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            if version:
                self.send_header("X-JupyterHub-Version", version)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:
            pass  # hundreds of servers: keep the job logs small

    return Handler


def report_activity(url: str, token: str, body: dict, timeout: float = 30.0) -> int:
    """POST one activity report; the HTTP status (0: the hub did not answer)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _activity_loop(env: dict[str, str], started: float, stop: threading.Event) -> None:
    url, token = env.get("JUPYTERHUB_ACTIVITY_URL"), env.get("JUPYTERHUB_API_TOKEN")
    if not url or not token:
        return
    every = float(env.get("JUPYTERHUB_ACTIVITY_INTERVAL") or DEFAULT_ACTIVITY_INTERVAL)
    body = activity_body(env.get("JUPYTERHUB_SERVER_NAME", ""), started)
    while not stop.wait(every):
        report_activity(url, token, body)


def run(env: dict[str, str], port: int, started: float) -> None:
    """Serve on ``port`` (already reported to the hub) until the job ends."""
    httpd = HTTPServer(("", port), make_handler(started, hub_version()))
    stop = threading.Event()
    threading.Thread(target=_activity_loop, args=(env, started, stop), daemon=True).start()
    print(f"hpcbridge: stand-in server (benchmarks only) on port {port}", flush=True)
    try:
        httpd.serve_forever()
    finally:
        stop.set()
        httpd.server_close()


def wanted(env: dict[str, str]) -> bool:
    """Whether the hub asked for the stand-in (in the environment file it wrote)."""
    return env.get(STANDIN_ENV) == "1" and "JUPYTERHUB_API_TOKEN" in env


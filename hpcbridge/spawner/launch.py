"""The notebook job's command on the compute node: ``python -m hpcbridge.spawner.launch``.

Cold start, ``launch ENV_FILE``: the hub never writes its token into a batch script or an
argv. It writes the server's environment (token included) as JSON into a private file in
the user's home (mode 0600, in a 0700 folder); the script names only that file. This
launcher reads and deletes it, picks a free port, reports the port to the hub and runs
``jupyterhub-singleuser`` in this same process.

Warm start, ``launch --warm ENV_FILE`` (the hub's warm pool, see ``warm.py``): the file
holds only the hub's API URL and this job's own secret. The launcher imports Jupyter,
then waits at the hub (``/hub/api/hpcbridge/warm``, long polls) until the hub hands it a
server's environment — the job's own user's, the only one the hub gives it — and goes on
as a cold start would, without the import time. Unclaimed for ``max_idle`` seconds, or
disowned by the hub (HTTP 410: e.g. the hub restarted), it exits.

The port report speaks batchspawner's protocol (``POST /hub/api/batchspawner`` with
``{"port": N}`` and the server's token), so the hub's handler is the same for both; unlike
batchspawner's single-user wrapper it retries while the hub is unreachable (a queued job
that starts while the hub restarts still reports), stops at once on a refusal, and does
not start a second Python. Only the standard library is used before the server starts.

Where jupyter-scheduler is installed, the server runs its "Create Job" through
hpcbridge's backend (``BATCH_ARGS``, ``hpcbridge/batch/``): notebooks become batch jobs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import MutableMapping
from urllib.parse import urlsplit, urlunsplit

from hpcbridge.sessions.capture import without_secrets
from hpcbridge.sessions.record import SESSION_ENV
from hpcbridge.spawner import standin

#: how long the port report keeps trying while the hub does not answer
REPORT_PATIENCE = 300.0
#: modules a warm job imports while it waits: ~1.6 s of a server's start-up on the testbed.
#: Not the ``jupyterhub.singleuser`` package itself (30 ms more): it picks its app from the
#: server's environment when imported, which only the hand-over brings.
WARM_IMPORTS = ("jupyter_server.serverapp", "jupyter_server.extension.application",
                "jupyterlab.labapp", "jupyterhub.services.auth", "jupyterhub.utils")
_RETRY_STATUS = {403, 404, 429, 500, 502, 503, 504}
#: jupyter-scheduler's backend and its dialog's choices: notebooks as batch jobs, through
#: its extension whose handlers answer refusals with 400 (hpcbridge/batch/app.py)
BATCH_ARGS = ("--ServerApp.jpserver_extensions=jupyter_scheduler=False",
              "--ServerApp.jpserver_extensions=hpcbridge.batch.app=True",
              "--SchedulerApp.scheduler_class=hpcbridge.batch.scheduler.HpcScheduler",
              "--SchedulerApp.environment_manager_class="
              "hpcbridge.batch.environments.ProfileEnvironments")


def server_argv() -> list[str]:
    """jupyterhub-singleuser's argv: with the batch backend where jupyter-scheduler is."""
    batch = importlib.util.find_spec("jupyter_scheduler") is not None
    return ["jupyterhub-singleuser", *(BATCH_ARGS if batch else ())]


def read_env_file(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as f:
        env = json.load(f)
    os.unlink(path)  # the token lives on only in this process's environment
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise SystemExit(f"{path}: not a JSON object of strings")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def report_port(api_url: str, token: str, port: int, patience: float = REPORT_PATIENCE,
                post=_post, sleep=time.sleep) -> None:
    """Tell the hub our port; retry while it cannot answer; SystemExit on a refusal."""
    url = api_url.rstrip("/") + "/batchspawner"
    headers = {"Authorization": f"token {token}"}
    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        try:
            status, body = post(url, {"port": port}, headers, 30.0)
        except OSError as exc:  # refused, reset, timed out, unresolvable: the hub is away
            status, body = 0, str(exc).encode()
        if 200 <= status < 300:
            return
        if (status and status not in _RETRY_STATUS) or time.monotonic() > deadline:
            raise SystemExit(f"the hub did not take our port {port}: HTTP {status} "
                             f"{body[:300].decode(errors='replace')}")
        print(f"hpcbridge: port report: HTTP {status or 'unreachable'}; retrying",
              file=sys.stderr, flush=True)
        sleep(delay)
        delay = min(delay * 2, 10.0)


def wait_for_owner(api_url: str, warm_id: str, secret: str, max_idle: float,
                   post=_post, sleep=time.sleep) -> dict[str, str] | None:
    """Long-poll the hub until it hands this warm job a server's environment."""
    url = api_url.rstrip("/") + "/hpcbridge/warm"
    deadline = time.monotonic() + max_idle
    while time.monotonic() < deadline:
        try:
            status, body = post(url, {"id": warm_id, "secret": secret}, {}, 90.0)
        except OSError:
            status, body = 0, b""
        if status == 200:
            env = json.loads(body).get("env")
            if isinstance(env, dict) and all(isinstance(v, str) for v in env.values()):
                return env
            raise SystemExit("the hub sent no usable environment")
        if status in (400, 410):  # not (or no longer) a warm job of this hub
            print(f"hpcbridge: warm job released by the hub (HTTP {status})", flush=True)
            return None
        if status != 204:  # hub away or restarting: ask again a little later
            sleep(2.0)
    print("hpcbridge: warm job not claimed in time; ending", flush=True)
    return None


def set_service_port(env: dict[str, str], port: int) -> None:
    """JupyterHub >= 2 takes the server's port from JUPYTERHUB_SERVICE_URL."""
    url = env.get("JUPYTERHUB_SERVICE_URL")
    if url:
        parts = urlsplit(url)
        env["JUPYTERHUB_SERVICE_URL"] = urlunsplit(
            parts._replace(netloc=f"{parts.hostname}:{port}"))


def lab_settings(environ: MutableMapping[str, str]) -> list[str]:
    """What hpcbridge adds to JupyterLab, as the server's arguments: the Dask sidebar's
    "New" button makes a cluster from the site profile (unless the site configured
    another factory) and the sidebar lists the notebooks' clusters
    (``hpcbridge/dask/lab.py``); the status bar shows the job's walltime left
    (``hpcbridge/lab/walltime.py`` and its prebuilt JupyterLab extension); a running
    cell counts as use for idle culling (``hpcbridge/lab/activity.py``)."""
    from hpcbridge.dask import lab as dask_lab
    from hpcbridge.lab import activity, walltime

    if not any(key.startswith("DASK_LABEXTENSION__FACTORY") for key in environ):
        environ.update(dask_lab.FACTORY_ENV)
    return [f"--ServerApp.jpserver_extensions={dask_lab.SERVER_EXTENSION}=True",
            f"--ServerApp.jpserver_extensions={walltime.SERVER_EXTENSION}=True",
            f"--ServerApp.jpserver_extensions={activity.SERVER_EXTENSION}=True",
            f"--LabApp.extra_labextensions_path={walltime.LABEXTENSIONS}"]


def record_session(env_file: str) -> subprocess.Popen | None:
    """Write this session's record in a process of its own (``pip freeze`` takes a
    second or two the server's start does not wait for), without the server's token."""
    if not os.environ.get(SESSION_ENV):
        return None
    argv = [sys.executable, "-m", "hpcbridge.sessions.capture",
            "python", "-m", "hpcbridge.spawner.launch", env_file]
    try:
        return subprocess.Popen(argv, env=without_secrets(os.environ),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError as exc:  # the server matters more than its record
        print(f"hpcbridge: cannot record the session: {exc}", file=sys.stderr, flush=True)
        return None


def serve(server_env: dict[str, str], env_file: str = "") -> None:
    """Report a port and run jupyterhub-singleuser in this process (or, when the hub
    asked for it, the benchmarks' stand-in server: ``standin.py``)."""
    if standin.wanted(server_env):
        port = free_port()
        report_port(server_env["JUPYTERHUB_API_URL"], server_env["JUPYTERHUB_API_TOKEN"], port)
        standin.run(server_env, port, time.time())
        return
    os.environ.update(server_env)
    for key in ("HPCBRIDGE_WARM_SECRET", "HPCBRIDGE_WARM_ID"):
        os.environ.pop(key, None)
    # kernels and terminals find this Python's tools first
    bindir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
    record_session(env_file)
    port = free_port()
    report_port(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"], port)
    env = dict(os.environ)
    set_service_port(env, port)
    os.environ.update(env)
    sys.argv = [*server_argv(), *lab_settings(os.environ)]
    sys.stdout.flush()
    from jupyterhub.singleuser import main as singleuser  # reads its settings from env

    sys.exit(singleuser())


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    warm = bool(args) and args[0] == "--warm"
    if warm:
        args = args[1:]
    if len(args) != 1:
        raise SystemExit("usage: python -m hpcbridge.spawner.launch [--warm] ENV_FILE")
    env = read_env_file(args[0])
    if not warm:
        serve(env, args[0])
        return
    import importlib

    for name in WARM_IMPORTS:
        importlib.import_module(name)
    print("hpcbridge: warm job ready, waiting for its user's spawn", flush=True)
    server_env = wait_for_owner(env["JUPYTERHUB_API_URL"], env["HPCBRIDGE_WARM_ID"],
                                env["HPCBRIDGE_WARM_SECRET"],
                                float(env.get("HPCBRIDGE_WARM_MAX_IDLE", "900")))
    if server_env is None:
        return
    serve(server_env, args[0])


if __name__ == "__main__":
    main()

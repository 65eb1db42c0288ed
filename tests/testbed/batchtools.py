"""Helpers of the batch notebook tests on the testbed: alice's server "batch", its
contents and jupyter-scheduler REST APIs, the test notebooks."""

from __future__ import annotations

import time
import uuid

import requests

from tests.testbed.hubtools import squeue

SERVER = "batch"


def _code(source: str, tags: tuple[str, ...] = ()) -> dict:
    return {"cell_type": "code", "source": source, "metadata": {"tags": list(tags)},
            "outputs": [], "execution_count": None}


def _notebook(*cells: dict) -> dict:
    return {"cells": list(cells), "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}}}



def _square(pause: int) -> dict:
    return _notebook(
        _code(f"n = 2\npause = {pause}", tags=("parameters",)),
    _code("import os, pwd, socket, time\n"
          "time.sleep(pause)\n"
          "print('ran as', pwd.getpwuid(os.getuid()).pw_name, 'on', socket.gethostname())\n"
          "print('square', n * n)\n"
          "with open('square.txt', 'w') as f:\n"
          "    f.write(str(n * n))"),
    )


SQUARE = _square(0)
#: runs long enough for the job list to show it running (it polls every 10 s)
SLOW_SQUARE = _square(25)
FAILING = _notebook(
    _code("n = 1", tags=("parameters",)),
    _code("x = n + 1"),
    _code("raise ValueError(f'n must be even, not {n}')"),
    _code("print('never')"),
)


class Lab:
    """alice's server: its contents and jupyter-scheduler APIs, with her token."""

    def __init__(self, hub, user: str = "alice") -> None:  # type: ignore[no-untyped-def]
        self.user = user
        self.base = f"{hub.url}/user/{user}/{SERVER}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {hub.user_token(user)}"

    def call(self, method: str, path: str, **kw) -> requests.Response:  # type: ignore[no-untyped-def]
        return self.session.request(method, self.base + path, timeout=60, **kw)

    def put_notebook(self, path: str, nb: dict) -> None:
        folder = path.rsplit("/", 1)[0]
        self.call("PUT", f"/api/contents/{folder}", json={"type": "directory"})
        r = self.call("PUT", f"/api/contents/{path}",
                      json={"type": "notebook", "format": "json", "content": nb})
        assert r.status_code in (200, 201), r.text

    def create(self, path: str, **kw) -> requests.Response:  # type: ignore[no-untyped-def]
        body = {"input_uri": path, "runtime_environment_name": "default",
                "compute_type": "debug", "name": f"test-{uuid.uuid4().hex[:6]}",
                "output_formats": ["ipynb", "html"], **kw}
        return self.call("POST", "/scheduler/jobs", json=body)

    def job(self, job_id: str) -> dict:
        r = self.call("GET", f"/scheduler/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def jobs(self) -> list[dict]:
        r = self.call("GET", "/scheduler/jobs")
        assert r.status_code == 200, r.text
        return r.json()["jobs"]

    def follow(self, job_id: str, until, timeout: float = 240) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
        """(status, message) as the job list shows them, each change once, until
        ``until(job)`` holds."""
        seen: list[tuple[str, str]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            entry = (job["status"], job.get("status_message") or "")
            if not seen or seen[-1] != entry:
                seen.append(entry)
            if until(job):
                return seen
            time.sleep(1)
        raise AssertionError(f"job {job_id}: condition not met in {timeout} s; seen {seen}")


def ended(job: dict) -> bool:
    return job["status"] in ("COMPLETED", "FAILED", "STOPPED")


def start_server(hub) -> None:  # type: ignore[no-untyped-def]
    if not hub.server("alice", SERVER).get("ready"):
        r = hub.spawn("alice", {"preset": "debug"}, server=SERVER)
        assert r.status_code in (201, 202), r.text
        hub.wait_ready("alice", SERVER)


def open_lab(hub, testbed):  # type: ignore[no-untyped-def]
    """alice's batch server with the test notebooks; cancels leftover batch jobs and
    stops the server when done (a generator for a module fixture)."""
    start_server(hub)
    lab = Lab(hub)
    lab.put_notebook("batchtests/square.ipynb", SQUARE)
    lab.put_notebook("batchtests/failing.ipynb", FAILING)
    lab.put_notebook("batchtests/slow-square.ipynb", SLOW_SQUARE)
    yield lab
    for job in squeue(testbed, "alice", "%i", "%j"):
        if job[1] == "hpcb-batch":
            testbed.login_exec("alice", ["scancel", job[0]])
    hub.stop("alice", SERVER)
    hub.wait_stopped("alice", SERVER)
    # JupyterLab keeps its workspace in the home, shared by all her servers: left here, the
    # next server of hers opens the test notebook and the scheduler's panel instead of
    # the launcher other tests wait for
    testbed.login_exec("alice", ["rm", "-rf", "/home/alice/batchtests",
                                 "/home/alice/.jupyter/lab/workspaces"])


def home_text(testbed, user: str, *argv: str) -> str:  # type: ignore[no-untyped-def]
    """What ``argv`` prints, run as ``user`` on the login node (it must succeed)."""
    proc = testbed.login_exec(user, list(argv))
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def job_folder(job: dict) -> str:
    """The job's folder in alice's home, from the link of its input notebook."""
    (link,) = [f["file_path"] for f in job["job_files"] if f["file_format"] == "input"]
    return "/home/alice/" + link.rsplit("/", 1)[0]



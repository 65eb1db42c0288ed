"""A stop racing a spawn of the same server (real hub, real sbatch over SSH).

JupyterHub answers a DELETE of a starting server by cancelling the start and calling the
spawner's stop; the submission under way (an env file written over SSH, sbatch over SSH)
keeps running on the login node whatever the hub does. Whatever the moment of the stop,
the server's job must end up cancelled and its env file (the server's token) removed.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from slurm_testbed import faults
from tests.testbed.hubtools import squeue

pytestmark = pytest.mark.testbed

USER = "bob"


def _env_files(tb, user: str) -> list[str]:
    out = tb.login_exec(user, ["find", f"/home/{user}/.hpcbridge", "-name", "env.*"])
    return out.stdout.decode().split()


def _notebook_jobs(tb, user: str) -> list[list[str]]:
    return [j for j in squeue(tb, user, "%i", "%j", "%T") if j[1].startswith("hpcb-nb-")]


def _clean(hub, tb, user: str) -> None:
    if hub.server(user):
        hub.stop(user)
        hub.wait_stopped(user)
    faults.cancel_all(tb, [user])
    tb.login_exec(user, ["rm", "-rf", f"/home/{user}/.hpcbridge"])


def _start_then_stop(hub, user: str, stop_after: float) -> tuple[int, int]:
    """POST the server (in a thread: the hub holds the answer up to 10 s) and DELETE it
    ``stop_after`` seconds after the hub shows it starting; both HTTP statuses."""
    spawned: dict[str, int] = {}

    def spawn() -> None:
        r = requests.post(f"{hub.url}/hub/api/users/{user}/server", json={"preset": "debug"},
                          headers=dict(hub.session.headers), timeout=120)
        spawned["status"] = r.status_code

    thread = threading.Thread(target=spawn)
    thread.start()
    deadline = time.monotonic() + 30
    while not hub.server(user) and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)  # a DELETE before the POST is taken would stop nothing
    time.sleep(stop_after)
    deadline = time.monotonic() + 60
    while True:
        stopped = hub.stop(user).status_code
        # 400: the spawn has not reached the spawner yet, or a stop is still under way;
        # 500: JupyterHub gave the cancelled start one second, and it was not over yet
        if stopped not in (400, 500) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    thread.join(120)
    hub.wait_stopped(user, timeout=120)
    return spawned.get("status", 0), stopped


def _leftovers(hub, tb, user: str, timeout: float = 30) -> tuple[list, list]:
    """Jobs and env files still there after the hub had a poll round to clean up."""
    deadline = time.monotonic() + timeout
    while True:
        jobs, files = _notebook_jobs(tb, user), _env_files(tb, user)
        if (not jobs and not files) or time.monotonic() > deadline:
            return jobs, files
        time.sleep(1)


@pytest.mark.parametrize("shell_delay, cycles", [(0.0, 20), (1.0, 8)])
def test_quick_start_stop_cycles_leave_no_job_and_no_env_file(hub, testbed, shell_delay,
                                                              cycles):
    _clean(hub, testbed, USER)
    statuses = []
    with faults.slow_login_shell(testbed, USER, shell_delay):
        for i in range(cycles):
            # stops land before, during and after the env file's writing and sbatch
            stop_after = (i % 8) * (0.25 + shell_delay / 2)
            statuses.append(_start_then_stop(hub, USER, stop_after))
    jobs, files = _leftovers(hub, testbed, USER)
    try:
        assert jobs == [], f"jobs of stopped servers still queued or running: {jobs}"
        assert files == [], f"env files (server tokens) left in the home: {files}"
        assert all(stop in (202, 204) for _, stop in statuses), statuses
    finally:
        _clean(hub, testbed, USER)

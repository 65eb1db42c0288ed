"""Schedules the hub keeps, on the Slurm 22.05 testbed: Debian bookworm's Slurm client has
no ``scrontab``, so the testbed profile's ``recurring: auto`` gives the definition to the
hub (hpcbridge/batch/hubcron.py), which submits each run's launcher as alice while no
server of hers runs, also after it was killed and restarted over a minute of the
schedule. Real slurmctld, real JupyterHub, real minutes (no faked clock)."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.testbed.batchtools import SERVER, open_lab
from tests.testbed.test_batch_live import _runs

pytestmark = pytest.mark.testbed


def _wait_runs(testbed, folder: str, count: int, hub) -> list[dict]:  # type: ignore[no-untyped-def]
    deadline, runs = time.monotonic() + 150, []  # a loaded machine may skip a minute
    while len(runs) < count and time.monotonic() < deadline:
        time.sleep(2)
        runs = _runs(testbed, folder)
    assert len(runs) >= count, (runs, _kept(hub))
    return runs


def _kept(hub) -> list[dict]:  # type: ignore[no-untyped-def]
    """The definitions in the hub's state file (beside its database)."""
    path = hub.runner.dir / "hpcbridge-recurring.json"
    return json.loads(path.read_text())["entries"] if path.exists() else []


@pytest.mark.parametrize("slurm_generation", ["22.05"], indirect=True)
def test_the_hub_runs_a_schedule_where_scrontab_is_missing(hub, testbed) -> None:  # type: ignore[no-untyped-def]
    assert testbed.login_exec("alice", ["sh", "-c", "command -v scrontab"]).returncode != 0
    lab_session = open_lab(hub, testbed)
    lab = next(lab_session)
    try:
        definition = {"input_uri": "batchtests/square.ipynb", "runtime_environment_name":
                      "default", "compute_type": "debug", "name": "hub-minute",
                      "output_formats": ["ipynb"], "parameters": {"n": "4"},
                      "schedule": "* * * * *", "timezone": "UTC"}
        r = lab.call("POST", "/scheduler/job_definitions",
                     json={**definition, "runtime_environment_parameters":
                           {"walltime": "01:00:00"}})
        assert r.status_code == 400 and "max_walltime" in r.json()["message"], r.text
        assert _kept(hub) == []
        r = lab.call("POST", "/scheduler/job_definitions", json=definition)
        assert r.status_code == 200, r.text
        def_id = r.json()["job_definition_id"]
        (entry,) = _kept(hub)
        assert (entry["user"], entry["definition_id"], entry["schedule"], entry["active"]) \
            == ("alice", def_id, "* * * * *", True)
        folder = entry["folder"]
        hub.stop("alice", SERVER)
        hub.wait_stopped("alice", SERVER)
        stopped = time.monotonic()

        # no server of alice's runs: the hub submits a launcher at the next minute, as her
        runs = _wait_runs(testbed, folder, 1, hub)
        # the hub dies hard and stays down over the next minute; back, it reads its file
        # and runs the missed minute once, with no server asking it to
        (before,) = _kept(hub)
        hub.runner.kill(signal.SIGKILL)
        time.sleep(62 - time.time() % 60)  # the real clock: past the next minute
        down_until = time.time()
        hub.runner.restart()
        deadline, entry = time.monotonic() + 60, before
        while entry["last_run"] < down_until and time.monotonic() < deadline:
            time.sleep(1)
            (entry,) = _kept(hub)
        # at its start, not at the next minute (which comes 60 s after down_until)
        assert entry["definition_id"] == def_id and \
            down_until <= entry["last_run"] < down_until + 45, (entry, down_until)
        catch_up = entry["last_run"] - down_until
        runs = _wait_runs(testbed, folder, 2, hub)
        assert all(r["scheduler_job_id"] and not r["error"] for r in runs), runs
        print(f"\nhub-kept schedule: two runs {time.monotonic() - stopped:.0f} s after the "
              f"server stopped, the second submitted {catch_up:.0f} s after the hub was "
              f"started again (job {before['last_job']} before, {entry['last_job']} after)")
        # slurmctld's own record of the job (kept MinJobAge = 300 s after its end) says who
        # submitted it and under which name; Slurm 22.05's accounting may show a job whose
        # record reached slurmdbd without its name as "allocation" (its name for a nameless job)
        shown = testbed.login_exec("alice", ["scontrol", "-o", "show", "job",
                                             entry["last_job"]]).stdout.decode()
        fields = dict(f.split("=", 1) for f in shown.split() if "=" in f)
        assert (fields.get("UserId", "").split("(")[0], fields.get("JobName")) \
            == ("alice", "hpcb-cron"), shown[:300]

        next(lab_session, None)  # its clean-up (the server stopped already)
        lab_session = open_lab(hub, testbed)
        lab = next(lab_session)
        r = lab.call("PATCH", f"/scheduler/job_definitions/{def_id}", json={"active": False})
        assert r.status_code == 204, r.text
        (entry,) = _kept(hub)
        assert entry["active"] is False
        r = lab.call("DELETE", f"/scheduler/job_definitions/{def_id}")
        assert r.status_code == 204, r.text
        assert _kept(hub) == []
        assert testbed.login_exec("alice", ["test", "-e", folder]).returncode == 1
    finally:
        next(lab_session, None)

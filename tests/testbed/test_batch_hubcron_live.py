"""Schedules the hub keeps, on the Slurm 22.05 testbed: Debian bookworm's Slurm client has
no ``scrontab``, so the testbed profile's ``recurring: auto`` gives the definition to the
hub (hpcbridge/batch/hubcron.py), which submits each run's launcher as alice while no
server of hers runs. Real slurmctld, real JupyterHub, real minutes (no faked clock)."""

from __future__ import annotations

import json
import time

import pytest

from tests.testbed.batchtools import SERVER, open_lab
from tests.testbed.test_batch_live import _runs

pytestmark = pytest.mark.testbed


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

        # no server of alice's runs: the hub submits a launcher each minute, as her
        deadline, runs = time.monotonic() + 200, []  # a loaded machine may skip a minute
        while len(runs) < 2 and time.monotonic() < deadline:
            time.sleep(2)
            runs = _runs(testbed, folder)
        assert len(runs) >= 2, (runs, _kept(hub))
        assert all(r["scheduler_job_id"] and not r["error"] for r in runs), runs
        print(f"\nhub-kept schedule: two runs {time.monotonic() - stopped:.0f} s after the "
              f"server stopped")
        (entry,) = _kept(hub)
        launcher = entry["last_job"]
        account = testbed.login_exec("alice", ["sacct", "-n", "-X", "-P", "-j", launcher,
                                               "-o", "User,JobName"]).stdout.decode()
        assert account.strip() == "alice|hpcb-cron", account

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

"""`hpcbridge doctor` and rendered scripts against the containerized Slurm testbed.

Read-only on the cluster apart from a few short jobs submitted as bob.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from hpcbridge.cli import main
from hpcbridge.client import SchedulerClient
from hpcbridge.jobs import JobState
from hpcbridge.profiles import JobRequest, render_script
from slurm_testbed.profiles import bundled_profile_text, load_bundled_profile
from hpcbridge.site import Site
from slurm_testbed.profiles import site_on_testbed

pytestmark = pytest.mark.testbed

SITE_PROFILES = Path(__file__).resolve().parents[2] / "site_profiles"
USERS = ["--user", "alice", "--user", "bob", "--user", "carol"]


@pytest.fixture
def testbed_env(testbed, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = testbed.profile_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def doctor(capsys, *argv: str) -> tuple[int, list[dict]]:  # type: ignore[no-untyped-def]
    status = main(["doctor", "--json", *argv])
    return status, json.loads(capsys.readouterr().out)


@pytest.mark.both_generations
def test_doctor_on_the_bundled_testbed_profile_is_clean(testbed_env, capsys) -> None:  # type: ignore[no-untyped-def]
    status, findings = doctor(capsys, str(SITE_PROFILES / "testbed.yaml"), *USERS)
    assert findings == [] and status == 0


def test_doctor_finds_the_running_testbed_by_itself(testbed, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    for key in testbed.profile_env():
        monkeypatch.delenv(key, raising=False)
    status = main(["doctor", "-v", str(SITE_PROFILES / "testbed.yaml")])
    out, err = capsys.readouterr()
    assert f"running testbed's address ({testbed.info().login_ip})" in err
    assert "cannot ask the scheduler" not in out
    assert "accounts not checked" not in out  # the testbed's users were checked
    assert status in (0, 1)


@pytest.mark.both_generations
def test_doctor_reports_each_disagreement(testbed_env, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    text = bundled_profile_text("testbed")
    for old, new in [
        ('max_walltime: "00:30:00"', 'max_walltime: "01:00:00"'),  # debug
        ("cores_per_node: 8", "cores_per_node: 16"),  # debug
        ("      gpu:\n", "      gpux:\n"),  # no such partition
        ("partition: gpu\n", "partition: gpux\n"),  # the preset follows it
        ("source: scheduler", "source: static\n      names: [proj_a, proj_nope]"),
    ]:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "drifted.yaml"
    path.write_text(text)
    status, findings = doctor(capsys, str(path), *USERS)
    assert status == 1
    errors = {f["key"]: f for f in findings if f["severity"] == "error"}
    assert set(errors) == {
        "clusters.tb.partitions.debug.max_walltime",
        "clusters.tb.partitions.debug.cores_per_node",
        "clusters.tb.partitions.gpux",
        "clusters.tb.accounts.names[1]",
    }
    assert "00:30:00" in errors["clusters.tb.partitions.debug.max_walltime"]["message"]
    assert "did you mean 'gpu'" in errors["clusters.tb.partitions.gpux"]["message"]
    assert "'proj_nope'" in errors["clusters.tb.accounts.names[1]"]["message"]
    assert all(f["fix"] and f["line"] > 1 for f in errors.values())


#: bob's job log folder (the testbed profiles' default job_logs)
LOGS = "/home/bob/.hpcbridge/logs"


async def _run_to_end(slurm: SchedulerClient, submit: SchedulerClient, script: str) -> str:
    job_id = await submit.submit("bob", script, LOGS)
    state = JobState.UNKNOWN
    for _ in range(240):
        state = (await slurm.status([job_id], as_user="bob"))[job_id].state
        if state.is_terminal:
            break
        await asyncio.sleep(0.5)
    assert state is JobState.COMPLETED, f"job {job_id} ended {state}"
    return job_id


def _request(name: str) -> JobRequest:
    return JobRequest(user="bob", partition="debug", cores=1, memory="1G",
                      walltime="00:05:00", job_name=name,
                      command=("python", "-c", f"print('{name}')"))


async def test_a_rendered_sbatch_script_runs(testbed) -> None:  # type: ignore[no-untyped-def]
    site = site_on_testbed(testbed)
    name = f"doctor-live-{secrets.token_hex(4)}"
    # the submission makes the folder: Slurm would not, and the job would fail at once
    testbed.login_exec("bob", ["rm", "-rf", LOGS])
    try:
        script = render_script(site.profile, _request(name))
        job_id = await _run_to_end(site.client(), site.client(), script)
    finally:
        await site.close()
    path = f"{LOGS}/{name}-{job_id}.log"  # the script's --output
    assert testbed.login_exec("bob", ["stat", "-c", "%a", LOGS]).stdout.decode().strip() \
        == "700"
    top = testbed.login_exec("bob", ["find", "/home/bob", "-maxdepth", "1",
                                     "-name", f"*{name}*"])
    assert top.stdout.decode().split() == []  # nothing of this job at the top of the home
    log = testbed.login_exec("bob", ["cat", path])
    assert log.returncode == 0 and name in log.stdout.decode()
    testbed.login_exec("bob", ["rm", "-f", path])


async def test_a_rendered_qsub_script_runs(testbed) -> None:  # type: ignore[no-untyped-def]
    env = testbed.profile_env()
    pbs_site = Site(load_bundled_profile("testbed-pbs", env))
    slurm_site = site_on_testbed(testbed)
    name = f"doctor-live-pbs-{secrets.token_hex(4)}"
    try:
        script = render_script(pbs_site.profile, _request(name))
        assert "#PBS -l nodes=1:ppn=1" in script
        job_id = await _run_to_end(slurm_site.client(), pbs_site.client(), script)
    finally:
        await pbs_site.close()
        await slurm_site.close()
    # Slurm's qsub wrapper puts its own -N (the script file's name) and -o on sbatch's
    # command line, which win over the script's "#PBS -N" / "#PBS -o": the output lands
    # in ~/SCRIPTNAME.oJOBID, not at the rendered path.
    found = testbed.login_exec("bob", ["find", "/home/bob", "-maxdepth", "1",
                                       "-name", f"*.o{job_id}"]).stdout.decode().split()
    assert len(found) == 1, found
    log = testbed.login_exec("bob", ["cat", found[0]])
    assert log.returncode == 0 and name in log.stdout.decode()
    stem = found[0].removesuffix(f".o{job_id}")
    testbed.login_exec("bob", ["rm", "-f", found[0], f"{stem}.e{job_id}"])

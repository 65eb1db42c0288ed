"""Pure parts of hpcbridge.dask: job lists, worker commands and scripts, views, export."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import dask
import pytest
import yaml
from dask_jobqueue.slurm import SLURMJob

from hpcbridge.dask.build import caps_for, worker_request
from hpcbridge.dask.facts import (
    other_jobs,
    pick_association,
    pick_qos,
)
from hpcbridge.dask.job import WorkerContext, worker_argv, worker_script
from hpcbridge.dask.jobqueue import jobqueue_config, jobqueue_yaml
from hpcbridge.dask.view import hub_dashboard_link, jobs_summary
from hpcbridge.dask.worker import worker_args
from hpcbridge.errors import LimitExceeded
from hpcbridge.jobs import JobInfo, JobState
from slurm_testbed.profiles import load_bundled_profile
from hpcbridge.schedulers.base import Association, QosLimits
from hpcbridge.schedulers.slurm import SlurmDialect, parse_user_jobs

user_jobs_command = SlurmDialect().user_jobs_command

PROFILE = load_bundled_profile("testbed", {})

SQUEUE = """\
101|101|RUNNING|None|alice|2|4G|hpcb-dask-abc123
102|102|PENDING|QOSMaxJobsPerUserLimit|alice|8|16G|notebook
103|103|RUNNING|None|bob|2|4G|hpcb-dask-bob
104|104|PENDING|Priority|alice|1|1G|evil
105|999|RUNNING|None|alice|1|1G|forged line
200|200_1|RUNNING|None|alice|2|4G|hpcb-dask-arr
200|200_[2-3]|PENDING|Resources|alice|2|4G|hpcb-dask-arr
garbage line
"""


def test_user_jobs_command_is_argv_with_name_last() -> None:
    cmd = user_jobs_command("alice")
    assert cmd.argv[0] == "squeue" and "--user=alice" in cmd.argv
    assert cmd.argv[-1].endswith("|%j")


def test_parse_user_jobs_keeps_only_the_users_rows() -> None:
    jobs = parse_user_jobs(SQUEUE, "alice")
    ids = [j.job_id for j in jobs]
    assert "103" not in ids  # bob's
    assert ids[:2] == ["101", "102"]
    first = jobs[0]
    assert (first.state, first.cores, first.memory_mb, first.name) == (
        JobState.RUNNING, 2, 4096, "hpcb-dask-abc123")
    assert jobs[1].reason == "QOSMaxJobsPerUserLimit"


def test_a_job_name_with_pipes_stays_in_the_name() -> None:
    jobs = parse_user_jobs("7|7|RUNNING|None|alice|1|1G|a|b|c\n", "alice")
    assert jobs[0].name == "a|b|c" and jobs[0].job_id == "7"


def test_a_job_name_cannot_forge_another_users_job() -> None:
    # a newline in a name starts a new line; it must still name the asking user
    forged = "7|7|RUNNING|None|alice|1|1G|x\n8|8|RUNNING|None|bob|64|1T|y\n"
    assert [j.job_id for j in parse_user_jobs(forged, "alice")] == ["7"]


def test_other_jobs_skip_ours_and_our_array_tasks() -> None:
    jobs = parse_user_jobs(SQUEUE, "alice")
    others = other_jobs(jobs, ours=["101", "200"])
    # 102 and 104 are pending, 105 running: all count; our 101 and array 200 do not
    assert (others.count, others.cores, others.memory_mb) == (3, 10, 18432)


def test_pick_association_prefers_the_partition_row() -> None:
    rows = [Association("proj_a", "alice"), Association("proj_a", "alice", partition="debug",
                                                         max_jobs=2),
            Association("proj_b", "alice")]
    assert pick_association(rows, "proj_a", "debug").max_jobs == 2
    assert pick_association(rows, "proj_a", "regular").partition is None
    assert pick_association(rows, "proj_b", "debug").account == "proj_b"
    assert pick_association([], None, "debug") is None


def test_pick_qos_by_name_or_default() -> None:
    qos = [QosLimits("normal"), QosLimits("high")]
    assoc = Association("a", "u", default_qos="high")
    assert pick_qos(qos, assoc, None).name == "high"
    assert pick_qos(qos, None, None).name == "normal"
    assert pick_qos(qos, assoc, "normal").name == "normal"
    assert pick_qos([], None, None) is None


def _ctx(processes: int = 1, **over) -> WorkerContext:  # type: ignore[no-untyped-def]
    req, _ = worker_request(PROFILE, "alice", "hpcb-dask-abc123", **over)
    from dataclasses import replace

    return WorkerContext(profile=PROFILE, client=None, user="alice",  # type: ignore[arg-type]
                         request=replace(req.to_request(), memory=str(req.memory),
                                         walltime=str(req.walltime)),
                         processes=processes, lifetime=timedelta(seconds=111),
                         lifetime_stagger=timedelta(seconds=9))


def test_worker_argv_splits_cores_and_memory_between_processes() -> None:
    argv = worker_argv(_ctx(2, cores=4, memory="8G"), "tcp://10.0.0.1:8786", "w-1",
                       array=False)
    assert argv[:4] == ["python", "-m", "distributed.cli.dask_worker", "tcp://10.0.0.1:8786"]
    text = " ".join(argv)
    assert "--nthreads 2" in text and f"--memory-limit {4 * 2**30}" in text
    assert "--nworkers 2" in text
    assert "--lifetime 111s --lifetime-stagger 9s --no-lifetime-restart" in text


def test_one_process_has_no_nworkers() -> None:
    assert "--nworkers" not in worker_argv(_ctx(), "tcp://h:1", "w", array=False)


def test_worker_script_goes_through_the_profile() -> None:
    script = worker_script(_ctx(), "tcp://10.0.0.1:8786", "hpcb-dask-abc123-0")
    assert script.startswith("#!/bin/bash -l\n")
    assert "#SBATCH --job-name=hpcb-dask-abc123" in script
    assert "#SBATCH --partition=debug" in script and "#SBATCH --time=00:30:00" in script
    assert "#SBATCH --cpus-per-task=2" in script and "#SBATCH --mem=4G" in script
    assert "exec /opt/hpcbridge/venv/bin/python -m distributed.cli.dask_worker" in script
    assert "--array" not in script


def test_worker_jobs_export_the_submitting_environment() -> None:
    # --export=NONE would make slurmd run `su -` per job (up to 1 s late on Slurm 22.05)
    script = worker_script(_ctx(), "tcp://10.0.0.1:8786", "w")
    assert "#SBATCH --export=ALL" in script and "--export=NONE" not in script
    from dataclasses import replace

    kept = worker_script(replace(_ctx(), inherit_env=False), "tcp://10.0.0.1:8786", "w")
    assert "#SBATCH --export=NONE" in kept and "--export=ALL" not in kept


def test_array_script_has_one_array_directive_and_a_task_name() -> None:
    script = worker_script(_ctx(), "tcp://10.0.0.1:8786", "hpcb-dask-abc123-0", 8)
    lines = script.splitlines()
    assert [ln for ln in lines if "--array" in ln] == ["#SBATCH --array=0-7"]
    # among the directives, before the first command
    assert lines.index("#SBATCH --array=0-7") < lines.index("set -e")
    assert "-m hpcbridge.dask.worker" in script
    assert "--name 'hpcb-dask-abc123-0-{task}'" in script


def test_worker_request_refuses_values_over_the_partition() -> None:
    with pytest.raises(LimitExceeded, match="max_walltime"):
        worker_request(PROFILE, "alice", "hpcb-dask-x", walltime="02:00:00")


def test_caps_from_the_testbed_profile() -> None:
    req, _ = worker_request(PROFILE, "alice", "hpcb-dask-x")
    caps = caps_for(PROFILE, req)
    assert (caps.partition_max_jobs, caps.max_workers, caps.max_cores, caps.max_memory_mb) == (
        4, 4, 8, 16384)


def test_array_worker_name_gets_the_task_id() -> None:
    argv = ["tcp://h:1", "--name", "c-3-{task}", "--nthreads", "1"]
    assert worker_args(argv, {"SLURM_ARRAY_TASK_ID": "5"})[2] == "c-3-5"


def test_array_worker_outside_an_array_stops() -> None:
    with pytest.raises(SystemExit, match="job array"):
        worker_args(["--name", "x-{task}"], {})


def test_dashboard_through_the_hub_proxy() -> None:
    env = {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}
    assert hub_dashboard_link(8787, env) == "/user/alice/proxy/8787/status"
    assert hub_dashboard_link(8787, {}) is None
    assert hub_dashboard_link(None, env) is None


def test_jobs_summary() -> None:
    start = datetime(2026, 11, 23, 12, 3)
    infos = [JobInfo("1", JobState.RUNNING), JobInfo("2", JobState.RUNNING),
             JobInfo("3", JobState.PENDING, reason="Resources", start_time=start),
             JobInfo("4", JobState.CANCELLED)]
    assert jobs_summary(infos) == "2 running, 1 pending (Resources, start ~12:03)"
    assert jobs_summary([JobInfo("4", JobState.COMPLETED)]) == "none"


def test_jobqueue_export_is_read_by_dask_jobqueue() -> None:
    text = jobqueue_yaml(PROFILE)
    assert text.startswith("# dask-jobqueue configuration exported from hpcbridge")
    config = yaml.safe_load(text)
    assert config == jobqueue_config(PROFILE)
    flat = {f"jobqueue.slurm.{k}": v for k, v in config["jobqueue"]["slurm"].items()}
    with dask.config.set(flat):
        job = SLURMJob(scheduler="tcp://h:1", name="w")
        script = job.job_script()
    assert "#SBATCH -p debug" in script and "#SBATCH -t 00:30:00" in script
    assert "/opt/hpcbridge/venv/bin/python" in script and "--lifetime=1530s" in script


def test_jobqueue_export_for_pbs() -> None:
    config = jobqueue_config(load_bundled_profile("testbed-pbs", {}))
    assert list(config["jobqueue"]) == ["pbs"]


def _dask_cli(argv: list[str]) -> int:
    import argparse

    from hpcbridge.cli import dask as dask_cli

    parser = argparse.ArgumentParser(prog="hpcbridge")
    dask_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_prints_jobqueue_yaml(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    testbed = Path(__file__).resolve().parents[2] / "site_profiles" / "testbed.yaml"
    assert _dask_cli(["dask", "jobqueue", "--user", "alice", "--site", str(testbed)]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["jobqueue"]["slurm"]["queue"] == "debug"


def test_cli_without_a_profile_says_so(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # never silently the testbed's profile
    for name in ("HPCBRIDGE_SITE_PROFILE", "HPCBRIDGE_SITE_PROFILE_JSON"):
        monkeypatch.delenv(name, raising=False)
    for command in ("jobqueue", "orphans"):
        assert _dask_cli(["dask", command, "--user", "alice"]) == 1
        assert "no site profile" in capsys.readouterr().err


def test_cli_reports_a_bad_profile(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "site.yaml"
    bad.write_text("site: x\n")
    assert _dask_cli(["dask", "jobqueue", "--site", str(bad)]) == 1
    assert "hpcbridge dask jobqueue:" in capsys.readouterr().err

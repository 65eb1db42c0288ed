"""Job logs go to a folder under the home (``job_logs``), not to the home's top level."""

from __future__ import annotations

import pytest

from hpcbridge.errors import ProfileError
from hpcbridge.profiles import JobRequest, render_script, validate_request
from hpcbridge.profiles.loader import load_profile_text
from hpcbridge.profiles.request import job_log_folder
from slurm_testbed.profiles import bundled_profile_text, load_bundled_profile


def test_logs_default_to_a_private_folder_under_the_home():
    profile = load_bundled_profile("testbed", {})
    req = validate_request(profile, JobRequest(user="alice", preset="debug"))
    assert req.log_folder == "/home/alice/.hpcbridge/logs" == job_log_folder(profile, None,
                                                                            "alice")
    assert "#SBATCH --output=/home/alice/.hpcbridge/logs/%x-%j.log" in render_script(
        profile, req)
    pbs = load_bundled_profile("testbed-pbs", {})
    assert "#PBS -o /home/alice/.hpcbridge/logs/hpcbridge.log" in render_script(
        pbs, JobRequest(user="alice"))


def _with_job_logs(value: str):
    text = bundled_profile_text("testbed").replace(
        "    scheduler: slurm\n", f"    scheduler: slurm\n    job_logs: {value!r}\n", 1)
    assert "job_logs" in text
    return load_profile_text(text, "<test>", {})


def test_the_folder_is_configurable_and_stays_under_the_home():
    assert job_log_folder(_with_job_logs("logs/hpc"), None, "bob") == "/home/bob/logs/hpc"
    for bad in ("/tmp/logs", "../bob", "a/../../b", "a b", "a;b", "", "x/.."):
        with pytest.raises(ProfileError, match="job_logs"):
            _with_job_logs(bad)

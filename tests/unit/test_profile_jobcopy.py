"""The job copy of a site profile (hpcbridge/profiles/jobcopy.py): what a notebook server
the hub starts receives, to check batch and Dask requests against the hub's limits."""

from __future__ import annotations

import pytest

from hpcbridge.errors import ProfileError
from hpcbridge.profiles import SiteProfile, load_profile_text, validate_request
from hpcbridge.profiles.jobcopy import JOB_PROFILE_ENV, job_copy, job_copy_json, profile_in_job
from hpcbridge.profiles.request import JobRequest
from slurm_testbed.profiles import bundled_profile_text

SECRET = "s3cr3t-db-password"


@pytest.fixture
def profile() -> SiteProfile:
    text = bundled_profile_text("testbed").replace(
        "hub:\n", f"hub:\n  db_url: postgresql+psycopg://hub:{SECRET}@db/hub\n", 1)
    return load_profile_text(text, "testbed.yaml", {})


def test_the_job_copy_keeps_the_limits_and_drops_the_hubs_settings(profile) -> None:
    text = job_copy_json(profile)
    assert SECRET not in text and "id_ed25519" not in text and "known_hosts" not in text
    copy = SiteProfile.model_validate_json(text)
    assert copy == job_copy(profile)
    assert copy.clusters["tb"].transport.kind == "local"
    assert copy.clusters["tb"].transport.sudo is False
    assert copy.clusters["tb"].partitions == profile.clusters["tb"].partitions
    assert copy.notebooks == profile.notebooks and copy.dask == profile.dask
    request = JobRequest(user="alice", partition="debug", walltime="00:20:00")
    assert validate_request(copy, request) == validate_request(profile, request)


def test_a_job_finds_its_profile(profile, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("HPCBRIDGE_SITE_PROFILE", raising=False)
    monkeypatch.delenv(JOB_PROFILE_ENV, raising=False)
    with pytest.raises(ProfileError, match="no site profile"):
        profile_in_job()
    monkeypatch.setenv(JOB_PROFILE_ENV, job_copy_json(profile))
    assert profile_in_job() == job_copy(profile)
    other = tmp_path / "site.yaml"
    other.write_text(bundled_profile_text("testbed-pbs"))
    monkeypatch.setenv("HPCBRIDGE_SITE_PROFILE", str(other))
    assert profile_in_job().site == "testbed-pbs"  # a file the site set wins
    monkeypatch.setenv(JOB_PROFILE_ENV, "{}")
    monkeypatch.delenv("HPCBRIDGE_SITE_PROFILE")
    with pytest.raises(ProfileError, match="not a site profile"):
        profile_in_job()

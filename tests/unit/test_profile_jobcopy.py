"""The job copy of a site profile (hpcbridge/profiles/jobcopy.py): what a notebook server
the hub starts receives, to check batch and Dask requests against the hub's limits."""

from __future__ import annotations

import pytest

from hpcbridge.errors import ProfileError, RequestError
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


def test_the_job_copy_of_a_server_holds_its_own_cluster_only() -> None:
    two = load_profile_text(bundled_profile_text("testbed-two-clusters"), "two.yaml", {})
    copy = SiteProfile.model_validate_json(job_copy_json(two, "tb22"))
    assert list(copy.clusters) == ["tb22"] and copy.default_cluster == "tb22"
    assert copy.clusters["tb22"].transport.kind == "local"
    assert {p.name for p in copy.notebooks} == {"small-old", "debug-old"}
    # Dask from the notebook: on tb22, under tb22's limits (its debug partition: 4 cores)
    request = JobRequest(user="alice", partition="debug", cores=2, walltime="00:20:00")
    assert validate_request(copy, request).cluster == "tb22"
    with pytest.raises(RequestError, match="cores_per_node 4"):
        validate_request(copy, JobRequest(user="alice", partition="debug", cores=8))
    with pytest.raises(RequestError, match="no such cluster 'tb'"):
        validate_request(copy, JobRequest(user="alice", cluster="tb"))
    assert list(job_copy(two, "tb").clusters) == ["tb"]
    assert list(job_copy(two).clusters) == ["tb", "tb22"]  # no server: every cluster


def test_a_dask_worker_of_another_cluster_falls_back_to_the_servers_cluster() -> None:
    text = bundled_profile_text("testbed-two-clusters").replace(
        "  worker:\n    partition: debug\n", "  worker:\n    cluster: tb\n    partition: gpu\n")
    two = load_profile_text(text, "two.yaml", {})
    worker = job_copy(two, "tb22").dask.worker
    assert (worker.cluster, worker.partition) == ("tb22", None)
    assert job_copy(two, "tb").dask.worker == two.dask.worker

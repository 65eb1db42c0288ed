"""Dask worker jobs started inside a server's job carry its id, for the server's stop."""

from __future__ import annotations

from hpcbridge.jobs import DASK_JOB_PREFIX, dask_cluster_name, dask_workers_of


def test_a_cluster_inside_a_job_names_the_job_and_its_stop_finds_only_those():
    name = dask_cluster_name("a1b2c3", "4711")
    assert name == "hpcb-dask-j4711-a1b2c3" and name.startswith(DASK_JOB_PREFIX)
    prefix = dask_workers_of("4711")
    assert prefix == "hpcb-dask-j4711-" and name.startswith(prefix)
    # another server's, or a cluster started outside any job
    assert not dask_cluster_name("a1b2c3", "47110").startswith(prefix)
    assert not dask_cluster_name("a1b2c3", "471").startswith(prefix)
    assert dask_cluster_name("a1b2c3", None) == "hpcb-dask-a1b2c3"


def test_only_the_leading_digits_of_an_id_are_used():
    assert dask_cluster_name("x", "7.pbs-server") == "hpcb-dask-j7-x"
    assert dask_workers_of("7.pbs-server") == "hpcb-dask-j7-"
    assert dask_cluster_name("x", "$(reboot)") == "hpcb-dask-x"
    assert dask_workers_of("$(reboot)") is None and dask_workers_of("") is None
    assert dask_cluster_name("x", "1" * 40) == "hpcb-dask-j" + "1" * 12 + "-x"

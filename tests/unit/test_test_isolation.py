"""The test session keeps away from the demo's testbed (``./dev hub``)."""

from __future__ import annotations

from slurm_testbed import cluster


def test_session_testbed_is_not_the_demos() -> None:
    assert cluster.testbed_name() != cluster.DEFAULT_NAME
    tb = cluster.Testbed()
    assert tb.name != cluster.DEFAULT_NAME
    assert tb.state_dir != cluster.default_state_dir(cluster.DEFAULT_NAME)

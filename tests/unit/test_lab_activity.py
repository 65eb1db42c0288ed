"""A busy kernel counts as use of the server (idle culling); an idle one does not."""

from __future__ import annotations

from datetime import datetime, timezone

from hpcbridge.lab.activity import SETTING, mark_if_busy
from hpcbridge.spawner.launch import lab_settings

T = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


def test_a_busy_kernel_marks_the_server_used_now() -> None:
    settings: dict = {}
    kernels = [{"execution_state": "idle"}, {"execution_state": "busy"}]
    assert mark_if_busy(settings, kernels, now=lambda: T)
    assert settings == {SETTING: T}


def test_idle_kernels_leave_the_last_activity_alone() -> None:
    # e.g. a kernel that only holds a Dask cluster: its server may be culled
    settings: dict = {SETTING: T}
    later = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    assert not mark_if_busy(settings, [{"execution_state": "idle"}, {}], now=lambda: later)
    assert settings == {SETTING: T}


def test_jupyter_server_counts_the_setting_and_the_launcher_enables_it() -> None:
    assert SETTING.endswith("_last_activity")  # Jupyter Server's hook for extensions
    assert "--ServerApp.jpserver_extensions=hpcbridge.lab.activity=True" in lab_settings({})

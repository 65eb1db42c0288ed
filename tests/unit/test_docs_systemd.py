"""The systemd units in docs/admin/systemd pass ``systemd-analyze verify`` cleanly.

The units name the installed paths of a production host; the test points their
``ExecStart`` at this machine's executables, so that verify checks every directive
(an unknown key or a bad value is a finding: verify prints it, and may still exit 0).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "docs" / "admin" / "systemd"
#: paths in the units -> executables here
STAND_INS = {
    "/opt/hpcbridge/venv/bin/jupyterhub": str(Path(sys.executable).with_name("jupyterhub")),
    "/usr/local/bin/configurable-http-proxy": shutil.which("configurable-http-proxy")
    or "/bin/true",
}


def _verifier() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is not installed")
        pytest.skip("systemd-analyze is not installed")
    return tool


@pytest.mark.parametrize("unit", sorted(p.name for p in UNITS.glob("*.service")))
def test_unit_verifies_without_findings(unit: str, tmp_path: Path) -> None:
    text = (UNITS / unit).read_text()
    for path, here in STAND_INS.items():
        text = text.replace(path, here)
    (tmp_path / unit).write_text(text)
    proc = subprocess.run([_verifier(), "verify", str(tmp_path / unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), (
        proc.stdout + proc.stderr)


def test_there_are_units_to_verify() -> None:
    assert {p.name for p in UNITS.glob("*.service")} >= {"jupyterhub.service",
                                                         "configurable-http-proxy.service"}

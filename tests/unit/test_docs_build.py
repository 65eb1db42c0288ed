"""The documentation site builds with warnings as errors (broken links and
anchors). CI installs mkdocs through the `docs` extra; without it the test skips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]'")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        check=False, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    # not --quiet: with it, mkdocs 1.6 forgets the warnings it counts for --strict
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "admin" / "doctor" / "index.html").exists()
    assert (tmp_path / "site" / "profile-reference" / "index.html").exists()


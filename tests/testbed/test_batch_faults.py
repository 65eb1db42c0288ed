"""Batch notebook runs from alice's PATH on the login node (issue 15): a run that its
walltime or its node ends is failed with that reason — what ``hpcbridge jobs`` shows (the
text JupyterLab's job list shows too, hpcbridge/batch/status.py), Slurm's own state, the
run's result file — and a run given an input folder reads it.

The runs go at once: one on the gpu partition (its only node) with a walltime of one
minute, one on the debug partition whose node is then killed (its container removed, as
a crashed machine) and restored, and one with ``--input`` on the gpu partition that
completes meanwhile.
"""

from __future__ import annotations

import json
import time

import pytest

from slurm_testbed import faults
from slurm_testbed.config import gpu_node
from tests.testbed.batchtools import _code, _notebook, home_text
from tests.testbed.hubtools import squeue

pytestmark = pytest.mark.testbed

FOLDER = "/home/alice/batchfaults"
SLEEPER = _notebook(
    _code("pause = 600", tags=("parameters",)),
    _code("import time"),
    _code("time.sleep(pause)"),
    _code("print('never')"),
)
READER = _notebook(
    _code("from pathlib import Path\n"
          "values = [int(v) for v in Path('data/values.txt').read_text().split()]\n"
          "Path('sum.txt').write_text(str(sum(values)))"),
)


def hpcbridge(testbed, *argv: str) -> str:  # type: ignore[no-untyped-def]
    """``hpcbridge ARGV`` as alice on the login node (the command on her PATH)."""
    proc = testbed.login_exec("alice", ["hpcbridge", *argv], timeout=120)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
    return proc.stdout.decode()


def listed(testbed, sid: str) -> str:  # type: ignore[no-untyped-def]
    """Job ``sid``'s line of ``hpcbridge jobs``."""
    lines = [ln for ln in hpcbridge(testbed, "jobs").splitlines() if f"job {sid}:" in ln]
    assert len(lines) == 1, lines
    return lines[0]


def wait_listed(testbed, sid: str, status: str, timeout: float) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = listed(testbed, sid)
        if line.startswith(status):
            return line
        time.sleep(3)
    raise AssertionError(f"job {sid} not {status} in {timeout} s: {line}")


def running_on(testbed, sid: str, timeout: float = 120) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = [n for i, s, n in squeue(testbed, "alice", "%i", "%T", "%N")
                 if i == sid and s == "RUNNING"]
        if nodes:
            return nodes[0]
        time.sleep(1)
    raise AssertionError(f"job {sid} did not start in {timeout} s")


@pytest.fixture
def sleeper(testbed):  # type: ignore[no-untyped-def]
    home_text(testbed, "alice", "mkdir", "-p", FOLDER)
    testbed.login_exec("alice", ["tee", f"{FOLDER}/sleep.ipynb"],
                       input=json.dumps(SLEEPER).encode(), check=True)
    testbed.login_exec("alice", ["tee", f"{FOLDER}/reader.ipynb"],
                       input=json.dumps(READER).encode(), check=True)
    home_text(testbed, "alice", "mkdir", "-p", f"{FOLDER}/data")
    testbed.login_exec("alice", ["tee", f"{FOLDER}/data/values.txt"], input=b"1 2 3 4\n",
                       check=True)
    yield f"{FOLDER}/sleep.ipynb"
    testbed.login_exec("alice", ["rm", "-rf", FOLDER])


def submitted(out: str) -> tuple[str, str]:
    return out.split()[1].rstrip(":"), out.split("outputs in ")[1].strip()


def test_walltime_end_and_node_failure_fail_the_run_with_that_reason_and_inputs_reach_it(  # type: ignore[no-untyped-def]
        testbed, sleeper) -> None:
    walltime, walltime_folder = submitted(hpcbridge(
        testbed, "run", sleeper, "--partition", "gpu", "--walltime", "00:01:00"))
    crash, _ = submitted(hpcbridge(
        testbed, "run", sleeper, "--partition", "debug", "--walltime", "00:10:00"))
    # an input folder is copied into the run's folder, its working directory; one
    # outside her home is refused, and nothing is left
    jobs = home_text(testbed, "alice", "ls", "/home/alice/jobs")
    refused = testbed.login_exec("alice", ["hpcbridge", "run", f"{FOLDER}/reader.ipynb",
                                           "--input", "/etc/hostname"], timeout=120)
    assert refused.returncode == 1 and b"outside your home folder" in refused.stderr
    assert home_text(testbed, "alice", "ls", "/home/alice/jobs") == jobs
    reader, reader_folder = submitted(hpcbridge(  # beside the walltime run: not killed
        testbed, "run", f"{FOLDER}/reader.ipynb", "--input", f"{FOLDER}/data",
        "--partition", "gpu"))
    node = running_on(testbed, crash)
    assert running_on(testbed, walltime) == gpu_node(len(testbed.info().nodes))
    assert node != gpu_node(len(testbed.info().nodes)), "both runs on one node: cannot " \
        "kill one run's node alone"
    assert listed(testbed, crash).startswith("IN_PROGRESS")

    with faults.node_killed(testbed, node):
        line = wait_listed(testbed, crash, "FAILED", timeout=150)
    assert line.endswith(f"job {crash}: failed: its node failed"), line

    line = wait_listed(testbed, walltime, "FAILED", timeout=180)
    # the scheduler's reason, and the cell that was running when the walltime came
    assert f"job {walltime}: failed: its walltime ended, in cell 3 (In [" in line, line
    assert "time.sleep(pause))" in line, line
    states = {sid: home_text(testbed, "alice", "sacct", "-n", "-X", "-P", "-j", sid,
                             "-o", "State").strip() for sid in (walltime, crash)}
    assert states == {walltime: "TIMEOUT", crash: "NODE_FAIL"}, states
    result = json.loads(home_text(testbed, "alice", "cat",
                                  f"{walltime_folder}/hpcbridge-result.json"))
    assert result["signal"] == "SIGTERM" and not result["ok"], result
    assert result["running_cell"]["source"] == "time.sleep(pause)", result

    assert listed(testbed, reader).startswith("COMPLETED")
    assert home_text(testbed, "alice", "cat", f"{reader_folder}/sum.txt") == "10"

"""The other Slurm generation's tests in a second pytest process, beside the main run.

A full run has two groups of testbed tests: the default generation's (most of them) and
the other generation's (tests marked ``both_generations`` with its id, and the
two-cluster tests). They ran one after the other, though the machine idles through most
of both: the tests wait on Slurm, on walltimes and on timeouts, not on the CPU. So when a
session holds both groups, the other generation's runs in a child pytest on testbeds of
its own (``<name>-g2``, ``<name>-g2-slurm2205``) and hub ports of its own, started once
the session's own testbed is up (so the two never build one image at once). Slow modules
marked ``beside`` go with it and run on the child's own testbed of the default
generation, so the two halves take about as long.

The child sends each report back as it is made (pytest's own report serialization, the
one pytest-xdist uses). When the session reaches the first item of that group, it logs
the child's reports as that item's own: the progress line, the failures, the short
summary, ``--durations`` and the exit status count them like any other test. An item the
child never reported (it crashed, or could not start) fails with the end of the child's
output. ``HPCBRIDGE_TEST_SPLIT=0`` runs everything in the one process, as before.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest import TestReport

#: set in the child: the file its reports go to (one JSON object a line)
REPORTS_ENV = "HPCBRIDGE_TEST_SPLIT_REPORTS"
#: "0" turns the split off
SWITCH_ENV = "HPCBRIDGE_TEST_SPLIT"
#: the child's testbed names end in this
SUFFIX = "-g2"
#: added to the session's hub ports for the child's hubs
PORT_SHIFT = 10000
#: how long the session waits for the child to stop its testbeds after its last report
CHILD_EXIT_TIMEOUT = 900


def child_env(parent: dict[str, str]) -> dict[str, str]:
    """The child's environment: testbeds and ports of its own, no demo, reports to a file."""
    from slurm_testbed.cluster import DEFAULT_NAME

    env = dict(parent)
    env["HPCBRIDGE_TESTBED_NAME"] = parent.get("HPCBRIDGE_TESTBED_NAME", DEFAULT_NAME) + SUFFIX
    env["HPCBRIDGE_TEST_PORT_OFFSET"] = str(
        int(parent.get("HPCBRIDGE_TEST_PORT_OFFSET", "0")) + PORT_SHIFT)
    env.pop("HPCBRIDGE_TESTBED_DIR", None)  # the session's own testbed's state folder
    env.pop("HPCBRIDGE_TEST_BESIDE_DEMO", None)  # the session watches the demo, once
    env[SWITCH_ENV] = "0"
    return env


class Child:
    """The child pytest: started once, read as it reports, waited for at the end."""

    def __init__(self, config: pytest.Config, nodeids: list[str]) -> None:
        self.config = config
        self.nodeids = nodeids
        self.folder = Path(tempfile.mkdtemp(prefix="hpcbridge-split-"))
        self.reports_path = self.folder / "reports.jsonl"
        self.log_path = self.folder / "child.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_error = ""
        self._offset = 0
        self._reports: dict[str, list[dict]] = {}
        self._finished: set[str] = set()

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-ra",
                "--basetemp", str(self.folder / "tmp")]
        for option in ("--slurm", "--slurm-generations"):
            value = self.config.getoption(option)
            if value:
                argv += [option, value]
        return [*argv, *self.nodeids]

    def start(self) -> None:
        if self.proc is not None or self.start_error:
            return
        env = child_env(dict(os.environ))
        env[REPORTS_ENV] = str(self.reports_path)
        self.reports_path.touch()
        _say(self.config, f"[split] {len(self.nodeids)} tests of the other generation run "
                          f"beside this session (testbed {env['HPCBRIDGE_TESTBED_NAME']}); "
                          f"their output: {self.log_path}")
        try:
            with self.log_path.open("wb") as log:
                self.proc = subprocess.Popen(self.argv(), cwd=self.config.rootpath, env=env,
                                             stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT)
        except OSError as exc:
            self.start_error = f"the child pytest did not start: {exc}"

    def _read(self) -> None:
        with self.reports_path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        self._offset += end
        for line in data[:end].splitlines():
            entry = json.loads(line)
            if "finished" in entry:
                self._finished.add(entry["finished"])
            else:
                self._reports.setdefault(entry["nodeid"], []).append(entry["report"])

    def reports(self, item: pytest.Item) -> Iterator[TestReport]:
        """The child's reports of item, once it finished it; a failure if it never will."""
        self.start()
        while True:
            self._read()
            if item.nodeid in self._finished:
                break
            if self.proc is None or self.proc.poll() is not None:
                self._read()
                if item.nodeid not in self._finished:
                    yield self._lost(item)
                    return
                break
            time.sleep(0.5)
        for data in self._reports.get(item.nodeid, []):
            yield self.config.hook.pytest_report_from_serializable(config=self.config, data=data)

    def _lost(self, item: pytest.Item) -> TestReport:
        if self.proc is None:
            why = self.start_error or "the child pytest was not started"
        else:
            why = f"the child pytest ended (exit {self.proc.returncode}) without reporting it"
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        return TestReport(item.nodeid, item.location, {}, "failed",
                          f"{why}; the end of its output ({self.log_path}):\n{tail}", "call")

    def finish(self) -> int | None:
        """Wait for the child to stop its testbeds; its exit status."""
        if self.proc is None:
            return None
        try:
            status = self.proc.wait(timeout=CHILD_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = self.proc.wait()
        if status == 0:  # its hubs' and tests' folders; the log stays
            shutil.rmtree(self.folder / "tmp", ignore_errors=True)
        return status


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():  # said while a test's output is captured
        reporter.write_line(line)


_child: Child | None = None
_group: set[str] = set()


def may_split(config: pytest.Config) -> bool:
    """Whether this session may hand tests to a child (not in one, not turned off)."""
    return not (os.environ.get(SWITCH_ENV, "1") == "0" or os.environ.get(REPORTS_ENV)
                or config.getoption("collectonly"))


def plan(config: pytest.Config, items: list[pytest.Item], other: set[str]) -> None:
    """Hand the other generation's items and those marked ``beside`` (nodeids in
    ``other``) to a child pytest when the session also runs the default generation's
    testbed tests."""
    global _child
    if not may_split(config):
        return
    if not other or not any(item.get_closest_marker("testbed") and item.nodeid not in other
                            for item in items):
        return
    _group.update(other)
    _child = Child(config, [item.nodeid for item in items if item.nodeid in other])


def default_testbed_up() -> None:
    """Called when the session's own testbed is up: the child may start its own."""
    if _child is not None:
        _child.start()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    if _child is None or item.nodeid not in _group:
        return None
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for report in _child.reports(item):
        ihook.pytest_runtest_logreport(report=report)
    # what this process set up for earlier items and nextitem does not need goes, as after
    # a test run here (pytest's teardown hook itself expects the item to have been set up)
    call = pytest.CallInfo.from_call(
        lambda: item.session._setupstate.teardown_exact(nextitem), "teardown")
    if call.excinfo is not None:
        ihook.pytest_runtest_logreport(report=ihook.pytest_runtest_makereport(item=item,
                                                                              call=call))
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _child is None:
        return
    status = _child.finish()
    if status not in (None, 0) and session.exitstatus == 0:
        _say(session.config, f"[split] the child pytest ended with exit status {status} "
                             f"after reporting every test; its output: {_child.log_path}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- in the child ----------------------------------------------------------------------

def _write(entry: dict) -> None:
    path = os.environ[REPORTS_ENV]
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, default=str) + "\n")


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: TestReport) -> None:
    if os.environ.get(REPORTS_ENV) and _config is not None:
        data = _config.hook.pytest_report_to_serializable(config=_config, report=report)
        _write({"nodeid": report.nodeid, "report": data})


def pytest_runtest_logfinish(nodeid: str) -> None:
    if os.environ.get(REPORTS_ENV) and _config is not None:
        _write({"finished": nodeid})


_config: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config

"""Pure parts of batch notebooks (hpcbridge/batch/): the request gate, parameters, the
job folder's files, what the job list shows, and the runner around papermill."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hpcbridge.batch import runner
from hpcbridge.batch.request import batch_request, notebook_parameters, parse_parameters
from hpcbridge.batch.spec import (
    RESULT_FILE,
    BatchSpec,
    describe_failure,
    failing_cell,
    folder_name,
    read_result,
)
from hpcbridge.batch.status import shown
from hpcbridge.errors import LimitExceeded, RequestError
from hpcbridge.jobs import JobInfo, JobState
from slurm_testbed.profiles import load_bundled_profile

COMMAND = ("python", "-m", "hpcbridge.batch.runner", "/home/alice/jobs/x")


def code(source: str, tags: tuple[str, ...] = (), outputs: list | None = None,
         count: int | None = None) -> dict:
    return {"cell_type": "code", "source": source, "metadata": {"tags": list(tags)},
            "outputs": outputs or [], "execution_count": count}


def notebook(*cells: dict) -> dict:
    return {"cells": list(cells), "metadata": {"kernelspec": {"name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def profile():
    return load_bundled_profile("testbed")


def request(profile, **kw):
    args = {"cluster": "tb", "environment": "default", "compute_type": None, "options": {},
            "command": COMMAND, "job_name": "hpcb-batch"}
    return batch_request(profile, "alice", **{**args, **kw})


# -- the profile's gate ------------------------------------------------------------------

def test_a_compute_type_is_a_preset_and_options_override_it(profile) -> None:
    req = request(profile, compute_type="debug")
    assert (req.partition, req.cores, str(req.walltime)) == ("debug", 1, "00:30:00")
    req = request(profile, compute_type="small", options={"cores": "3"})
    assert (req.partition, req.cores) == ("regular", 3)
    assert req.command == COMMAND and req.environment == "default"


def test_over_the_partitions_walltime_is_refused_with_the_limit(profile) -> None:
    with pytest.raises(LimitExceeded, match="over partition debug's max_walltime 00:30:00"):
        request(profile, options={"partition": "debug", "walltime": "01:00:00"})


def test_unknown_options_other_clusters_and_environments_are_refused(profile) -> None:
    with pytest.raises(RequestError, match="unknown option 'command'"):
        request(profile, options={"command": "rm -rf ~"})
    with pytest.raises(RequestError, match="no such environment 'gpu-ml'"):
        request(profile, environment="gpu-ml")
    with pytest.raises(RequestError, match="no such preset 'huge'"):
        request(profile, compute_type="huge")
    with pytest.raises(RequestError, match="run on cluster other"):
        request(profile, cluster="other")


# -- parameters ----------------------------------------------------------------------------

def test_the_parameters_cell_names_what_may_be_set() -> None:
    nb = notebook(code("import math"), code("n = 3\nlabel: str = 'x'\nn += 1\nf(y)",
                                            tags=("parameters",)))
    assert notebook_parameters(nb) == ["n", "label"]
    assert notebook_parameters(notebook(code("n = 3"))) is None
    with pytest.raises(RequestError, match="parameters cell is not valid Python"):
        notebook_parameters(notebook(code("n = (", tags=("parameters",))))


def test_parameter_values_are_python_literals_or_text() -> None:
    got = parse_parameters({"a": "3", "b": "0.5", "c": "'x'", "d": "hello world",
                            "e": "[1, 2]", "f": "True", "g": "{1, 2}", "h": "__import__('os')"},
                           list("abcdefgh"))
    assert got == {"a": 3, "b": 0.5, "c": "x", "d": "hello world", "e": [1, 2], "f": True,
                   "g": "{1, 2}", "h": "__import__('os')"}
    json.dumps(got)  # what the runner receives is JSON


def test_parameters_the_notebook_does_not_take_are_refused() -> None:
    with pytest.raises(RequestError, match=r"parameter 'nn' is not set .* did you mean 'n'"):
        parse_parameters({"nn": "1"}, ["n", "label"])
    with pytest.raises(RequestError, match="no cell tagged 'parameters'"):
        parse_parameters({"n": "1"}, None)
    with pytest.raises(RequestError, match="not a Python name"):
        parse_parameters({"a b": "1"}, ["a"])
    with pytest.raises(RequestError, match="not a Python name"):
        parse_parameters({"class": "1"}, ["class"])
    with pytest.raises(RequestError, match="longer than"):
        parse_parameters({"n": "x" * 10_001}, ["n"])
    assert parse_parameters({}, None) == {}


# -- the job folder ------------------------------------------------------------------------

def test_folder_names_are_plain() -> None:
    assert folder_name("analysis/My run (2).ipynb", "ab-12") == "My_run_2_-ab-12"
    assert folder_name("../.hidden.ipynb", "id") == "hidden-id"  # not a hidden folder
    assert folder_name("", "id") == "notebook-id"


def test_the_spec_round_trips(tmp_path: Path) -> None:
    spec = BatchSpec(job_id="j", cluster="tb", input="a.ipynb", outputs={"ipynb": "a-1.ipynb"},
                     parameters={"n": [1, 2]}, scheduler_job_id="42")
    spec.write(tmp_path)
    assert BatchSpec.read(tmp_path) == spec
    assert read_result(tmp_path) is None
    (tmp_path / RESULT_FILE).write_text("not json")
    assert read_result(tmp_path) is None


def test_the_failing_cell_is_found_and_described() -> None:
    error = {"output_type": "error", "ename": "ZeroDivisionError",
             "evalue": "division by zero", "traceback": []}
    nb = notebook(code("x = 1", count=1), code("n = 2", tags=("injected-parameters",), count=2),
                  {"cell_type": "markdown", "source": "text", "metadata": {}},
                  code(["y = x / 0\n", "print(y)"], outputs=[error], count=3),
                  code("z = 1"))
    cell = failing_cell(nb)
    assert cell == {"cell": 2, "execution_count": 3, "ename": "ZeroDivisionError",
                    "evalue": "division by zero", "source": "y = x / 0"}
    assert describe_failure({"failing_cell": cell}) == (
        "cell 2 (In [3]: y = x / 0): ZeroDivisionError: division by zero")
    assert failing_cell(notebook(code("x = 1"))) is None
    assert describe_failure({"error": "NoSuchKernel: python9"}) == "NoSuchKernel: python9"


# -- what the job list shows ---------------------------------------------------------------

def info(state: JobState, **kw) -> JobInfo:
    return JobInfo("42", state, **kw)


@pytest.mark.parametrize(("state", "kw", "result", "status", "message"), [
    (JobState.PENDING, {"reason": "Priority"}, None, "QUEUED", "job 42: queued (Priority)"),
    (JobState.RUNNING, {"nodes": ("c2",)}, None, "IN_PROGRESS", "job 42: running on c2"),
    (JobState.COMPLETED, {"exit_code": 0}, {"ok": True, "node": "c2"}, "COMPLETED",
     "job 42: completed on c2 (exit code 0)"),
    (JobState.ENDED_UNKNOWN, {}, {"ok": True}, "COMPLETED", "job 42: completed"),
    (JobState.FAILED, {}, {"ok": False, "exit_code": 1, "error": "NoSuchKernel"}, "FAILED",
     "job 42: failed (exit code 1): NoSuchKernel"),
    (JobState.FAILED, {"exit_code": 1},
     {"ok": False, "failing_cell": {"cell": 2, "execution_count": 2, "ename": "ValueError",
                                    "evalue": "bad", "source": "check()"}},
     "FAILED", "job 42: failed (exit code 1): cell 2 (In [2]: check()): ValueError: bad"),
    (JobState.TIMEOUT, {}, None, "FAILED", "job 42: failed: its walltime ended"),
    (JobState.NODE_FAIL, {}, None, "FAILED", "job 42: failed: its node failed"),
    # at the walltime the runner saw only a SIGTERM: the scheduler's reason wins
    (JobState.TIMEOUT, {"exit_code": 0},
     {"ok": False, "exit_code": 143, "error": "stopped by the scheduler (SIGTERM: ...)",
      "running_cell": {"cell": 2, "execution_count": None, "source": "time.sleep(600)"}},
     "FAILED", "job 42: failed: its walltime ended, in cell 2 (In [ ]: time.sleep(600)) "
               "(exit code 0)"),
    (JobState.FAILED, {"exit_code": 127}, None, "FAILED",
     "job 42: failed (exit code 127): the runner left no result; see the job's log"),
    (JobState.COMPLETED, {"exit_code": 0}, None, "FAILED",
     "job 42: failed (exit code 0): the runner left no result; see the job's log"),
    (JobState.CANCELLED, {}, None, "STOPPED", "job 42: cancelled"),
])
def test_states_as_the_job_list_shows_them(state, kw, result, status, message) -> None:
    view = shown("42", info(state, **kw), result)
    assert (view.status, view.message) == (status, message)
    assert view.ended == state.is_terminal
    assert view.running == (state is JobState.RUNNING)


def test_an_outage_keeps_the_status_shown() -> None:
    view = shown("42", info(JobState.UNKNOWN, reason="timed out"), None, previous="IN_PROGRESS")
    assert view.status == "IN_PROGRESS" and "not answering" in view.message
    assert not view.ended


# -- the runner ----------------------------------------------------------------------------

def staged(folder: Path, nb: dict, outputs: dict[str, str]) -> BatchSpec:
    (folder / "in.ipynb").write_text(json.dumps(nb))
    spec = BatchSpec(job_id="j", cluster="tb", input="in.ipynb", outputs=outputs,
                     parameters={"n": 5}, scheduler_job_id="42")
    spec.write(folder)
    return spec


def test_the_runner_passes_parameters_and_records_success(tmp_path: Path) -> None:
    calls = []

    def execute(src, out, **kw):
        calls.append((src, out, kw))
        done = notebook(code("n = 5"))
        done["metadata"]["papermill"] = {"duration": 2.5}
        done["cells"][0]["metadata"]["papermill"] = {"duration": 2.0}
        Path(out).write_text(json.dumps(done))

    html = []
    spec = staged(tmp_path, notebook(code("n = 1", tags=("parameters",))),
                  {"ipynb": "in-1.ipynb", "html": "in-1.html"})
    result = runner.run(tmp_path, spec, execute=execute, to_html=lambda a, b: html.append(b))
    (src, out, kw), = calls
    assert (src, out) == (str(tmp_path / "in.ipynb"), str(tmp_path / "in-1.ipynb"))
    assert kw["parameters"] == {"n": 5} and kw["cwd"] == str(tmp_path)
    assert kw["kernel_name"] is None  # the notebook names its kernel
    assert result["ok"] and result["exit_code"] == 0
    assert (result["papermill_seconds"], result["cells_seconds"]) == (2.5, 2.0)
    assert html == [tmp_path / "in-1.html"]
    assert read_result(tmp_path) == result


def test_the_runner_records_the_failing_cell_and_still_writes_outputs(tmp_path: Path) -> None:
    def execute(src, out, **kw):
        error = {"output_type": "error", "ename": "KeyError", "evalue": "'x'"}
        Path(out).write_text(json.dumps(notebook(code("d['x']", outputs=[error], count=1))))
        raise RuntimeError("PapermillExecutionError: ...")

    html = []
    nb = notebook(code("n = 1"))
    del nb["metadata"]["kernelspec"]
    spec = staged(tmp_path, nb, {"ipynb": "in-1.ipynb", "html": "in-1.html"})
    result = runner.run(tmp_path, spec, execute=execute, to_html=lambda a, b: html.append(b))
    assert not result["ok"] and result["exit_code"] == 1
    assert result["failing_cell"]["ename"] == "KeyError" and "error" not in result
    assert html  # the executed notebook with its error is kept, as HTML too


def test_the_runner_reports_an_error_outside_cells(tmp_path: Path) -> None:
    seen = {}

    def execute(src, out, **kw):
        seen.update(kw)
        raise RuntimeError("No such kernel named python9")

    nb = notebook(code("n = 1"))
    del nb["metadata"]["kernelspec"]
    spec = staged(tmp_path, nb, {"ipynb": "in-1.ipynb"})
    result = runner.run(tmp_path, spec, execute=execute, to_html=lambda a, b: None)
    assert seen["kernel_name"] == "python3"  # a notebook without a kernelspec
    assert result["error"] == "RuntimeError: No such kernel named python9"
    assert describe_failure(result) == result["error"]


def test_a_sweep_task_runs_its_own_parameters_in_its_folder(tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(runner, "_papermill", lambda src, out, **kw: calls.append((out, kw)))
    spec = staged(tmp_path, notebook(code("n = 1", tags=("parameters",))),
                  {"ipynb": "in-1.ipynb"})
    from dataclasses import replace
    replace(spec, sweep=[{"n": 1}, {"n": 2}]).write(tmp_path)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setattr(runner.os, "dup2", lambda a, b: None)  # keep pytest's output
    assert runner.main([str(tmp_path)]) == 0
    (out, kw), = calls
    assert out == str(tmp_path / "task-1" / "in-1.ipynb") and kw["parameters"] == {"n": 2}
    assert kw["cwd"] == str(tmp_path / "task-1")
    assert read_result(tmp_path / "task-1")["ok"]
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    with pytest.raises(SystemExit, match="inside its job array only"):
        runner.main([str(tmp_path)])


def test_a_sigterm_writes_the_result_with_the_running_cell_at_once(tmp_path: Path) -> None:
    running = code("time.sleep(pause)", count=2)
    running["metadata"]["papermill"] = {"status": "running"}
    done = code("pause = 600")
    done["metadata"]["papermill"] = {"status": "completed"}
    (tmp_path / "out.ipynb").write_text(json.dumps(notebook(done, running)))
    handler = runner.on_sigterm(tmp_path, tmp_path / "out.ipynb", 0.0)
    with pytest.raises(SystemExit) as stopped:
        handler(15, None)
    assert stopped.value.code == 143
    result = read_result(tmp_path)
    assert result["signal"] == "SIGTERM" and not result["ok"] and result["exit_code"] == 143
    assert result["running_cell"] == {"cell": 2, "execution_count": 2,
                                      "source": "time.sleep(pause)"}
    assert describe_failure(result) == (
        f"{runner.STOPPED}, in cell 2 (In [2]: time.sleep(pause))")


def test_the_notebook_gets_the_specs_profile_unless_one_is_set(tmp_path: Path, monkeypatch
                                                                ) -> None:
    seen = []
    monkeypatch.setattr(runner, "_papermill", lambda src, out, **kw: seen.append(
        (os.environ.get("HPCBRIDGE_SITE_PROFILE_JSON"), os.environ.get("HPCBRIDGE_SITE_PROFILE"))))
    monkeypatch.setattr(runner.os, "dup2", lambda a, b: None)  # keep pytest's output
    monkeypatch.setattr(runner.signal, "signal", lambda *a: None)  # pytest's own handlers
    monkeypatch.delenv("HPCBRIDGE_SITE_PROFILE_JSON", raising=False)
    monkeypatch.delenv("HPCBRIDGE_SITE_PROFILE", raising=False)
    from dataclasses import replace
    spec = staged(tmp_path, notebook(code("n = 1")), {"ipynb": "in-1.ipynb"})
    replace(spec, profile={"site": "x"}).write(tmp_path)
    runner.main([str(tmp_path)])
    monkeypatch.setenv("HPCBRIDGE_SITE_PROFILE", "/etc/site.yaml")  # the site's own wins
    monkeypatch.delenv("HPCBRIDGE_SITE_PROFILE_JSON")
    runner.main([str(tmp_path)])
    assert seen == [('{"site": "x"}', None), (None, "/etc/site.yaml")]


def test_kernels_talk_over_private_unix_sockets_not_tcp_ports(monkeypatch) -> None:
    # a sweep's tasks start kernels on one node at once: TCP ports raced ("Address
    # already in use"); Unix sockets in a private folder cannot
    import papermill

    seen = {}

    def execute(src, out, config, **kw):
        manager = config["KernelManager"]
        folder = os.path.dirname(manager["ip"])
        seen.update(transport=manager["transport"], mode=os.stat(folder).st_mode & 0o777,
                    folder=folder)

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    runner._papermill("in.ipynb", "out.ipynb", parameters={})
    assert seen["transport"] == "ipc" and seen["mode"] == 0o700
    assert not os.path.exists(seen["folder"])  # removed after the run


def test_a_sweep_task_sees_the_jobs_inputs(tmp_path: Path, monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(runner, "_papermill", lambda src, out, cwd, **kw: seen.append(
        (Path(cwd) / "data" / "t.csv").read_text()))
    monkeypatch.setattr(runner.os, "dup2", lambda a, b: None)  # keep pytest's output
    monkeypatch.setattr(runner.signal, "signal", lambda *a: None)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("1,2")
    spec = staged(tmp_path, notebook(code("n = 1", tags=("parameters",))),
                  {"ipynb": "in-1.ipynb"})
    from dataclasses import replace
    replace(spec, sweep=[{"n": 1}], inputs=["data"]).write(tmp_path)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    assert runner.main([str(tmp_path)]) == 0
    assert seen == ["1,2"] and (tmp_path / "task-0" / "data").is_symlink()

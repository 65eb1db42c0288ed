"""``hpcbridge run`` and ``hpcbridge jobs`` (hpcbridge/cli/batch.py) with a fake scheduler
behind the client's methods; tests/testbed/test_batch_live.py runs them on the login node."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest

from hpcbridge.batch.spec import RESULT_FILE, BatchSpec
from hpcbridge.cli import batch as cli
from hpcbridge.cli import main
from hpcbridge.jobs import JobState
from hpcbridge.schedulers import QosLimits, UserJob
from tests.unit.test_batch_scheduler import PARAMETERIZED, FakeSlurm, in_server


@pytest.fixture
def slurm(tmp_path: Path, monkeypatch) -> FakeSlurm:  # type: ignore[no-untyped-def]
    in_server(monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "nb.ipynb").write_text(json.dumps(PARAMETERIZED))
    monkeypatch.chdir(tmp_path / "work")
    fake = FakeSlurm()
    monkeypatch.setattr(cli, "client_for", lambda profile, cluster: fake)
    monkeypatch.setattr(cli, "FOLLOW_EVERY", 0.0)
    return fake


def folders(home: Path) -> list[Path]:
    return sorted((home / "jobs").glob("*")) if (home / "jobs").exists() else []


def test_run_submits_the_notebook_with_its_parameters(slurm, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["run", "nb.ipynb", "-p", "n=9", "--preset", "debug", "--html"]) == 0
    (folder,) = folders(tmp_path)
    spec = BatchSpec.read(folder)
    assert spec.parameters == {"n": 9} and spec.scheduler_job_id == "101"
    assert sorted(spec.outputs) == ["html", "ipynb"] and spec.input == "nb.ipynb"
    # the job's notebook sees the profile it was checked against: the job copy (no hub
    # settings, local transports), for hpcbridge.dask.cluster() inside the job
    assert spec.profile and spec.profile["site"] == "testbed"
    assert spec.profile["clusters"]["tb"]["transport"]["kind"] == "local"
    assert not spec.profile["hub"].get("connect_url")
    (user, script), = slurm.scripts
    assert user == getpass.getuser()  # as the caller, never anyone else
    assert "#SBATCH --partition=debug" in script and str(folder) in script
    assert capsys.readouterr().out == f"job 101: submitted; outputs in {folder}\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["--partition", "debug", "--walltime", "01:00:00"], "over partition debug's max_walltime"),
    (["-p", "m=1"], "parameter 'm' is not set in the notebook's parameters cell"),
    (["-p", "n"], "write KEY=VALUE"),
    (["--preset", "huge"], "no such preset 'huge'"),
])
def test_run_refuses_before_anything_is_stored(slurm, tmp_path, capsys, argv, message  # type: ignore[no-untyped-def]
                                               ) -> None:
    assert main(["run", "nb.ipynb", *argv]) == 1
    assert message in capsys.readouterr().err
    assert folders(tmp_path) == [] and slurm.scripts == []


def test_run_refuses_a_notebook_outside_the_home(slurm, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path.parent / "elsewhere.ipynb"
    outside.write_text(json.dumps(PARAMETERIZED))
    assert main(["run", str(outside)]) == 1
    assert "outside your home folder" in capsys.readouterr().err
    assert main(["run", "missing.ipynb"]) == 1
    assert "no notebook missing.ipynb" in capsys.readouterr().err


def test_run_wait_follows_the_job_to_its_end(slurm, tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    answers = iter([(JobState.RUNNING, {"nodes": ("c2",)}),
                    (JobState.COMPLETED, {"exit_code": 0})])
    real = slurm.status

    async def status(ids, *, as_user=None):  # type: ignore[no-untyped-def]
        state, kw = next(answers)
        slurm.set("101", state, **kw)
        if state is JobState.COMPLETED:
            (folder,) = folders(tmp_path)
            (folder / RESULT_FILE).write_text(json.dumps({"ok": True, "node": "c2"}))
        return await real(ids, as_user=as_user)

    monkeypatch.setattr(slurm, "status", status)
    assert main(["run", "nb.ipynb", "--wait"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == ["job 101: running on c2", "job 101: completed on c2 (exit code 0)"]


def test_jobs_lists_every_job_from_one_query_and_cancels(slurm, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        assert main(["run", "nb.ipynb"]) == 0
    slurm.set("102", JobState.RUNNING, nodes=("c1",))
    capsys.readouterr()
    assert main(["jobs"]) == 0
    assert [sorted(q) for q in slurm.queries] == [["101", "102", "103"]]  # one query
    out = capsys.readouterr().out
    assert "IN_PROGRESS" in out and "job 102: running on c1" in out
    assert out.count("QUEUED") == 2
    assert main(["jobs", "cancel", "102"]) == 0
    assert slurm.cancelled == [(getpass.getuser(), ["102"])]
    assert main(["jobs", "cancel", "999"]) == 1
    capsys.readouterr()
    assert main(["jobs", "outputs", "101"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith(str(tmp_path / "jobs" / "nb-"))
    assert sorted(listed[1:]) == ["  hpcbridge-job.json", "  nb.ipynb"]


def test_a_sweep_is_one_job_array_with_a_folder_per_task(slurm, tmp_path, capsys,  # type: ignore[no-untyped-def]
                                                         monkeypatch) -> None:
    (tmp_path / "work" / "sweep.yaml").write_text("- {n: 1}\n- {n: 2}\n- {n: '3'}\n"
                                                  "- {n: [4, 5]}\n- {n: 6}\n")
    slurm.qos_limits = [QosLimits("normal", max_jobs_per_user=3, max_submit_jobs_per_user=8)]
    assert main(["run", "nb.ipynb", "--sweep", "sweep.yaml", "--preset", "debug"]) == 0
    (folder,) = folders(tmp_path)
    assert BatchSpec.read(folder).sweep == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": [4, 5]},
                                            {"n": 6}]
    (_user, script), = slurm.scripts  # one submission, throttled to her QOS's 3
    assert [ln for ln in script.splitlines() if "--array" in ln] == ["#SBATCH --array=0-4%3"]
    assert "as one array of 5 tasks, at most 3 at once" in capsys.readouterr().out

    for i in range(5):  # the tasks end, each in its folder; one runs on
        if i == 4:
            slurm.set("101_4", JobState.RUNNING, nodes=("c2",))
            continue
        (folder / f"task-{i}").mkdir()
        cell = {"cell": 2, "execution_count": 2, "ename": "ValueError", "evalue": "odd",
                "source": "print(n * 2)"}
        (folder / f"task-{i}" / RESULT_FILE).write_text(json.dumps(
            {"ok": True} if i != 3 else {"ok": False, "exit_code": 1, "failing_cell": cell}))
        slurm.set(f"101_{i}", JobState.COMPLETED if i != 3 else JobState.FAILED)
    slurm.queries.clear()
    assert main(["jobs"]) == 0
    assert [sorted(q) for q in slurm.queries] == [[f"101_{i}" for i in range(5)]]
    head, *tasks = capsys.readouterr().out.splitlines()
    assert head == (f"IN_PROGRESS  {folder.name}  job 101: 3 of 5 completed, 1 failed, "
                    "1 running on c2; task 3 failed (exit code 1): cell 2 (In [2]: "
                    "print(n * 2)): ValueError: odd")
    assert [t.split()[:2] for t in tasks] == [
        ["COMPLETED", "task-0"], ["COMPLETED", "task-1"], ["COMPLETED", "task-2"],
        ["FAILED", "task-3"], ["IN_PROGRESS", "task-4"]]
    assert "job 101_4: running on c2" in tasks[4]
    assert main(["jobs", "outputs", "101_3"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == str(folder / "task-3")
    assert main(["jobs", "cancel", "101"]) == 0  # the whole array
    assert slurm.cancelled == [(getpass.getuser(), ["101"])]


def test_a_sweep_over_what_the_qos_lets_her_queue_is_refused(slurm, tmp_path, capsys  # type: ignore[no-untyped-def]
                                                            ) -> None:
    (tmp_path / "work" / "sweep.yaml").write_text("".join(f"- {{n: {i}}}\n" for i in range(6)))
    slurm.user_job_list = [UserJob(str(i), JobState.RUNNING, None, "alice", 1, 100, "x")
                           for i in range(3)]
    assert main(["run", "nb.ipynb", "--sweep", "sweep.yaml"]) == 1
    assert capsys.readouterr().err.strip() == (
        "hpcbridge run: a sweep of 6 runs does not fit: your QOS normal lets you queue 8 "
        "jobs at once and you have 3 queued or running, so at most 5 runs fit now; split "
        "the sweep or wait for jobs to end")
    assert folders(tmp_path) == [] and slurm.scripts == []


def test_a_sweep_refuses_a_set_the_notebook_does_not_take(slurm, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "work" / "sweep.yaml").write_text("- {n: 1}\n- {nn: 2}\n")
    assert main(["run", "nb.ipynb", "--sweep", "sweep.yaml"]) == 1
    assert "parameter 'nn' is not set" in capsys.readouterr().err
    (tmp_path / "work" / "sweep.yaml").write_text("n: 1\n")
    assert main(["run", "nb.ipynb", "--sweep", "sweep.yaml"]) == 1
    assert "not a list of parameter sets" in capsys.readouterr().err
    assert folders(tmp_path) == [] and slurm.scripts == []


def test_inputs_are_copied_into_the_jobs_folder(slurm, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    work = tmp_path / "work"
    (work / "data").mkdir()
    (work / "data" / "t.csv").write_text("1,2\n")
    (work / "models.txt").write_text("CESM2\n")
    assert main(["run", "nb.ipynb", "--input", "data", "--input", "models.txt"]) == 0
    (folder,) = folders(tmp_path)
    assert (folder / "data" / "t.csv").read_text() == "1,2\n"  # the working directory's
    assert (folder / "models.txt").read_text() == "CESM2\n"
    assert BatchSpec.read(folder).inputs == ["data", "models.txt"]


@pytest.mark.parametrize(("inputs", "message"), [
    (["/etc/hostname"], "is outside your home folder"),
    (["missing.txt"], "no input 'missing.txt'"),
    (["~"], "holds the job's own folder"),
    (["nb.ipynb"], "is called like another input or a file of the job (nb.ipynb)"),
    (["a/x.txt", "b/x.txt"], "is called like another input"),
])
def test_inputs_outside_the_home_or_clashing_are_refused(slurm, tmp_path, capsys, inputs,  # type: ignore[no-untyped-def]
                                                         message) -> None:
    for sub in ("a", "b"):
        (tmp_path / "work" / sub).mkdir()
        (tmp_path / "work" / sub / "x.txt").write_text(sub)
    argv = ["run", "nb.ipynb"]
    for path in inputs:
        argv += ["--input", str(tmp_path) if path == "~" else path]
    assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert folders(tmp_path) == [] and slurm.scripts == []


def test_an_input_link_out_of_the_home_is_refused(slurm, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "work" / "etc").symlink_to("/etc")
    assert main(["run", "nb.ipynb", "--input", "etc"]) == 1
    assert "outside your home folder" in capsys.readouterr().err
    assert folders(tmp_path) == []

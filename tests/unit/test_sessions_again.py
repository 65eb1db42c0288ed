""""Start again" of a batch run's record (hpcbridge/sessions/again.py, run as the user on
the login node by hpcbridge/spawner/sessionspage.py) with a fake scheduler behind the
client: the same notebook, parameters, inputs and request again, through the same
checks as every batch submission; refusals store nothing.
tests/testbed/test_sessions_live.py clicks it in Chromium on the testbed."""

from __future__ import annotations

import asyncio
import getpass
import io
import json
from pathlib import Path

import pytest

from hpcbridge.batch.spec import BatchSpec
from hpcbridge.cli import main
from hpcbridge.profiles import load_profile
from hpcbridge.profiles.jobcopy import job_copy
from hpcbridge.sessions import again, record
from hpcbridge.spawner import sessionspage
from tests.unit.test_batch_cli import folders, slurm  # noqa: F401 -- the fixture

PROFILE = job_copy(load_profile("site_profiles/testbed.yaml"), "tb")
USER = getpass.getuser()


def a_run(home: Path, slurm) -> dict:  # type: ignore[no-untyped-def]  # noqa: F811
    """A run of nb.ipynb (n=9, an input folder) and its record, as the runner leaves it."""
    (home / "work" / "data").mkdir()
    (home / "work" / "data" / "x.csv").write_text("1,2\n")
    assert main(["run", "nb.ipynb", "-p", "n=9", "-p", "label='7'", "--preset", "debug",
                 "--input", "data", "--html"]) == 1  # label is not a parameter here
    nb = json.loads((home / "work" / "nb.ipynb").read_text())
    nb["cells"][0]["source"] = "n = 1\nlabel = 'x'"
    (home / "work" / "nb.ipynb").write_text(json.dumps(nb))
    assert main(["run", "nb.ipynb", "-p", "n=9", "-p", "label='7'", "--preset", "debug",
                 "--input", "data", "--html"]) == 0
    (folder,) = folders(home)
    spec = BatchSpec.read(folder)
    rec = {**spec.session, "job_id": spec.scheduler_job_id, "start": {"nodes": ["c1"]}}
    record.write(record.path_of(home, rec["id"]), rec)
    return rec


def again_of(rid: str, slurm, profile=PROFILE):  # type: ignore[no-untyped-def]  # noqa: F811
    return asyncio.run(again.start_again(profile, USER, Path.home(), rid, client=slurm))


def test_start_again_submits_the_same_run_in_a_folder_of_its_own(slurm, tmp_path  # noqa: F811
                                                                 ) -> None:  # type: ignore[no-untyped-def]
    rec = a_run(tmp_path, slurm)
    answer = again_of(rec["id"], slurm)
    assert answer["job_id"] == "102" and answer["record"] != rec["id"]
    old, new = (Path(p) for p in (rec["folder"], answer["folder"]))
    assert new.parent == old.parent and new != old and folders(tmp_path) == sorted([old, new])
    first, second = BatchSpec.read(old), BatchSpec.read(new)
    # the same notebook, parameters (a string stays a string), outputs' kinds and inputs
    assert second.parameters == first.parameters == {"n": 9, "label": "7"}
    assert sorted(second.outputs) == ["html", "ipynb"] and second.inputs == ["data"]
    assert (new / "data" / "x.csv").read_text() == "1,2\n"
    assert (new / "nb.ipynb").read_text() == (old / "nb.ipynb").read_text()
    # the same request (a preset's values, as server records start again), a new record
    # naming the new folder
    assert second.session["request"] == {**first.session["request"], "preset": None}
    assert second.session["folder"] == str(new) and second.scheduler_job_id == "102"
    (_, one), (user, two) = slurm.scripts
    assert user == USER and two == one.replace(str(old), str(new))


def test_start_again_refusals_store_nothing(slurm, tmp_path) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    rec = a_run(tmp_path, slurm)
    before = folders(tmp_path)

    def refused(rid: str, **change) -> str:  # type: ignore[no-untyped-def]
        if change:
            record.write(record.path_of(tmp_path, rid), {**rec, "id": rid, **change})
        with pytest.raises(Exception) as caught:
            again_of(rid, slurm)
        return str(caught.value)

    shrunk = {**rec["request"], "walltime": "05:00:00"}
    assert "over partition debug's max_walltime" in refused("r-shrunk", request=shrunk)
    assert "not yours" in refused("r-foreign", user="someone-else")
    assert "not a batch run" in refused("r-server", kind="server")
    assert "outside your home" in refused("r-out", folder="/etc")
    assert "is gone" in refused("r-gone", folder=str(tmp_path / "jobs" / "nothing"))
    assert "no session record" in refused("r-none")
    assert "not a session id" in refused("../x")
    (tmp_path / ".hpcbridge" / "sessions" / "r-bad.json").write_text('{"schema": 1}')
    assert "cannot be used: schema is 1" in refused("r-bad")
    assert folders(tmp_path) == before and len(slurm.scripts) == 1


def test_the_command_reads_its_request_on_stdin(slurm, tmp_path, monkeypatch, capsys  # noqa: F811
                                                ) -> None:  # type: ignore[no-untyped-def]
    rec = a_run(tmp_path, slurm)
    capsys.readouterr()
    monkeypatch.setattr("hpcbridge.client.SchedulerClient.on_this_machine",
                        classmethod(lambda cls, dialect: slurm))
    given = {"id": rec["id"], "profile": json.loads(PROFILE.model_dump_json())}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(given)))
    assert again.main() == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["job_id"] == "102"
    assert sessionspage.again_answer(json.dumps(answer) + "\n", "") == answer
    monkeypatch.setattr("sys.stdin", io.StringIO("{not json"))
    assert again.main() == 2
    assert "not a request of the hub's" in json.loads(capsys.readouterr().out)["refused"]


def test_the_hub_reads_the_answer_or_names_what_went_wrong() -> None:
    said = sessionspage.again_answer("", "python3: No module named hpcbridge\n")
    assert said == {"refused": "the login node could not start it again: python3: No "
                               "module named hpcbridge"}
    assert sessionspage.again_answer('{"refused": "x"}', "") == {"refused": "x"}
    assert "no answer" in sessionspage.again_answer("", "")["refused"]
    rec = {"cluster": "tb", "request": {"environment": "modules-demo"}}
    assert sessionspage.again_argv(PROFILE, rec) == [
        "/opt/hpcbridge/venv/bin/python", "-m", "hpcbridge.sessions.again"]

"""`hpcbridge session list|show|export` over records in a home folder (no cluster)."""

from __future__ import annotations

import json
import zipfile

import pytest

from hpcbridge.cli import main
from hpcbridge.sessions import export, record


def a_record(record_id: str, tmp_path, **extra) -> dict:
    log = tmp_path / "logs" / "hpcb-nb-alice-42.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text("server log\n")
    return {
        "schema": record.SCHEMA, "id": record_id, "kind": "server", "user": "alice",
        "site": "testbed", "cluster": "tb", "profile_digest": "sha256:00", "job_id": "42",
        "request": {"partition": "debug", "cores": 2, "memory": "2G", "walltime": "00:10:00",
                    "environment": "default"},
        "start": {"nodes": ["c1"], "python_version": "3.13.5", "packages": {
            "source": "pip freeze", "not_from_an_index": ["Site_Tools"], "requirements": [
                "six==1.17.0", "hpcbridge @ file:///opt/hpcbridge/src", "site-tools==1.0",
                "-e git+https://example.org/x.git#egg=x", "numpy[extra]==2.1.0"]},
            "script": "#!/bin/bash -l\n#SBATCH --job-name=hpcb-nb-alice\n"
                      f"#SBATCH --output={log.parent}/%x-%j.log\nexec python\n"},
        "end": {"state": "completed", "elapsed_seconds": 600, "core_seconds": 1200,
                "nodes": ["c1"]},
        **extra}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("HPCBRIDGE_SITE_PROFILE", raising=False)
    monkeypatch.delenv("HPCBRIDGE_SITE_PROFILE_JSON", raising=False)
    return tmp_path


def test_list_newest_first_and_unreadable_named(home, capsys):
    for rid in ("20261130T070000Z-aaaaaa", "20261130T080000Z-bbbbbb"):
        record.write(record.path_of(home, rid), a_record(rid, home))
    (record.folder_of(home) / "20261130T090000Z-cccccc.json").write_text('{"schema": 2}')
    assert main(["session", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("20261130T090000Z-cccccc  unreadable: schema is 2")
    assert lines[1].startswith("20261130T080000Z-bbbbbb  server job 42")
    assert "debug/2c/default" in lines[1] and "nodes c1" in lines[1]
    assert "600 s" in lines[1] and "0.333 core-h" in lines[1] and "5 packages" in lines[1]


def test_show_and_refusals(home, capsys):
    rid = "20261130T070000Z-aaaaaa"
    record.write(record.path_of(home, rid), a_record(rid, home))
    assert main(["session", "show", rid]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == rid
    assert main(["session", "show", "../bob/x"]) == 1
    assert "not a session id" in capsys.readouterr().err
    assert main(["session", "show", "20261130T000000Z-zzzzzz"]) == 1
    assert "no session" in capsys.readouterr().err


def test_export_folder_and_zip(home, tmp_path, capsys):
    rid = "20261130T070000Z-aaaaaa"
    record.write(record.path_of(home, rid), a_record(rid, home))
    out = tmp_path / "exp"
    assert main(["session", "export", rid, "--to", str(out)]) == 0
    req = (out / "requirements.txt").read_text().splitlines()
    assert "six==1.17.0" in req and "numpy[extra]==2.1.0" in req
    assert "# not from an index: hpcbridge @ file:///opt/hpcbridge/src" in req
    assert "# not from an index: site-tools==1.0" in req
    env = (out / "environment.yml").read_text()
    assert "  - python=3.13" in env and '    - "six==1.17.0"' in env and "file://" not in env
    assert (out / "job.log").read_text() == "server log\n"
    assert (out / "job.sh").read_text().startswith("#!/bin/bash -l")
    assert json.loads((out / "record.json").read_text())["id"] == rid
    assert main(["session", "export", rid, "--to", str(tmp_path / "z"), "--zip"]) == 0
    with zipfile.ZipFile(tmp_path / "z.zip") as z:
        assert "z/requirements.txt" in z.namelist()


def test_batch_export_takes_the_runners_log_too(tmp_path):
    folder = tmp_path / "jobs" / "nb-1"
    folder.mkdir(parents=True)
    (folder / "job.log").write_text("papermill\n")
    rec = a_record("20261130T070000Z-aaaaaa", tmp_path, kind="batch", folder=str(folder))
    written = export.export(rec, tmp_path / "e")
    assert (written / "run.log").read_text() == "papermill\n"


def test_list_without_a_profile_still_lists(home, capsys):
    rid = "20261130T070000Z-aaaaaa"
    rec = a_record(rid, home)
    rec.pop("end")
    record.write(record.path_of(home, rid), rec)
    assert main(["session", "list"]) == 0
    captured = capsys.readouterr()
    assert "no site profile" in captured.err and "running or unknown" in captured.out

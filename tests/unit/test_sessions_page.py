""""My sessions" (hpcbridge/spawner/sessionspage.py) without a hub: what a record's row
shows, which records "Start again" refuses and why, and reading a home's records in two
commands whose output a record's text cannot forge (real find/awk, this machine)."""

from __future__ import annotations

import asyncio
import getpass
import json

from hpcbridge.client import SchedulerClient
from hpcbridge.profiles import load_profile
from hpcbridge.schedulers.slurm import SlurmDialect
from hpcbridge.sessions import origin, record
from hpcbridge.spawner import sessionspage
from hpcbridge.transport.local import LocalTransport

PROFILE = load_profile("site_profiles/testbed.yaml")
RID = "20261130T070000Z-aaaaaa"


def a_record(**change) -> dict:
    rec = {"schema": record.SCHEMA, "id": RID, "kind": "server", "user": "alice",
           "site": "testbed", "cluster": "tb", "job_id": "7",
           "profile_digest": origin.profile_digest(PROFILE, "tb"),
           "request": {"preset": None, "cluster": "tb", "partition": "debug", "cores": 2,
                       "memory": "2G", "gpus": 0, "walltime": "00:10:00",
                       "environment": "modules-demo", "nodes": 1, "account": None},
           "start": {"nodes": ["c2"], "modules": [{"name": "hpcbridge-demo", "version": "1.0"}],
                     "packages": {"requirements": ["six==1.17.0", "dask==2025.1.0"]}},
           "end": {"state": "cancelled", "description": "cancelled", "nodes": ["c2"],
                   "elapsed_seconds": 3725, "core_seconds": 7450}}
    rec.update(change)
    return rec


def test_row_shows_node_walltime_core_hours_packages_and_the_options():
    row = sessionspage.row(PROFILE, "alice", RID + ".json", record.dumps(a_record()))
    assert (row["nodes"], row["used"], row["core_hours"]) == ("c2", "1:02:05", "2.069")
    assert row["packages"] == ["six==1.17.0", "dask==2025.1.0"]
    assert row["modules"] == ["hpcbridge-demo/1.0"] and row["same_profile"]
    assert row["refused"] is None
    assert row["options"] == {"cluster": "tb", "partition": "debug", "cores": "2",
                              "memory": "2G", "gpus": "0", "walltime": "00:10:00",
                              "environment": "modules-demo"}


def test_start_again_refused_with_the_reason():
    def refused(user="alice", **change):
        return sessionspage.row(PROFILE, user, RID + ".json",
                                record.dumps(a_record(**change)))["refused"]

    shrunk = a_record()["request"] | {"walltime": "02:00:00"}
    assert "no longer allows" in refused(request=shrunk) and "walltime" in refused(request=shrunk)
    assert "not yours" in refused(user="bob")
    assert "without its folder" in refused(kind="batch")
    assert refused(kind="batch", folder="/home/alice/jobs/nb-1") is None
    edited = a_record()["request"] | {"partition": "debug\n#SBATCH --uid=0"}
    assert "no longer allows" in refused(request=edited)


def test_a_batch_copy_of_the_profile_has_the_hubs_digest():
    from hpcbridge.profiles.jobcopy import job_copy

    assert origin.profile_digest(job_copy(PROFILE, "tb"), "tb") == \
        origin.profile_digest(PROFILE, "tb")


def test_corrupted_or_foreign_schema_records_are_named_not_shown():
    for text, said in (('{"schema": "hpcbridge-session/1", "id": 3}', "id is"),
                       ("{not json", "not JSON"),
                       (record.dumps(a_record(request={"cmd": "id"})), "unknown keys: cmd")):
        row = sessionspage.row(PROFILE, "alice", RID + ".json", text)
        assert "cannot be used" in row["broken"] and said in row["broken"], row


def test_read_small_files_one_entry_per_file_whatever_the_text(tmp_path):
    folder = tmp_path / "sessions"
    folder.mkdir()
    forged = "x\nF/home/bob/.hpcbridge/sessions/evil.json\nL{}\n"
    (folder / "b.json").write_text(forged)
    (folder / "a.json").write_text(json.dumps({"a": [1, 2]}, indent=2) + "\n")
    (folder / "c.json").write_text("")
    (folder / ".new.d.json").write_text("{}")
    (folder / "big.json").write_text("x" * 5000)
    (folder / "note.txt").write_text("{}")
    client = SchedulerClient(SlurmDialect(), LocalTransport(sudo=""))
    found = asyncio.run(client.read_small_files(getpass.getuser(), str(folder), ".json",
                                                max_bytes=2048))
    assert set(found) == {"a.json", "b.json"}  # c.json is empty: nothing to show
    assert found["b.json"] == forged.rstrip("\n")
    assert json.loads(found["a.json"]) == {"a": [1, 2]}
    assert asyncio.run(client.read_small_files(getpass.getuser(), str(tmp_path / "none"),
                                               ".json", max_bytes=2048)) == {}


def test_the_page_writes_the_end_of_records_whose_job_ended():
    """A batch run's record has no end until someone sees the job end: the page asks
    once for all open records (one status query), completes those that ended from
    accounting and shows them so; running ones and others' records stay as they are."""
    from hpcbridge.jobs import JobInfo, JobState
    from tests.unit.test_sessions import FakeClient

    ended_text = ("7|7|COMPLETED|0:0|1|12|00:01|||c2|2026-11-30T07:00:00|"
                  "2026-11-30T07:00:12\n7.batch|7.batch|COMPLETED|0:0|1|12|00:01|92108K||c2|"
                  "2026-11-30T07:00:00|2026-11-30T07:00:12\n")

    queries: list[list[str]] = []

    class Client(FakeClient):
        async def status(self, ids, as_user=None):
            queries.append(list(ids))
            return {"7": JobInfo("7", JobState.COMPLETED), "8": JobInfo("8", JobState.RUNNING)}

    client = Client([SlurmDialect().parse_accounting(ended_text, ["7"])])

    class Site:
        profile = PROFILE

        def client(self, name):
            return client

    batch = a_record(kind="batch", folder="/home/alice/jobs/nb-1", job_id="7", end=None)
    running = a_record(id="20261130T070001Z-bbbbbb", job_id="8", end=None)
    foreign = a_record(id="20261130T070002Z-cccccc", job_id="7", end=None, user="bob")
    files = {f"{r['id']}.json": record.dumps(r) for r in (batch, running, foreign)}
    for name, text in files.items():
        client.files[f"/home/alice/{record.FOLDER}/{name}"] = text
    out = asyncio.run(sessionspage.with_ends(Site(), "alice", files))
    assert queries == [["7", "8"]]  # one query for the open records
    done = record.loads(out[f"{RID}.json"])
    assert done["end"]["state"] == "completed" and done["end"]["max_rss_mb"] == 89
    assert record.loads(client.files[f"/home/alice/{record.FOLDER}/{RID}.json"])["end"]
    assert out[f"{running['id']}.json"] == files[f"{running['id']}.json"]
    assert out[f"{foreign['id']}.json"] == files[f"{foreign['id']}.json"]
    row = sessionspage.row(PROFILE, "alice", f"{RID}.json", out[f"{RID}.json"])
    assert (row["state"], row["memory"]) == ("completed", ("89 MB", ""))

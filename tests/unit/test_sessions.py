"""Session records (issue K): the accounting parsers over recorded output, the record's
schema check, the job's capture and the end's merge (hpcbridge/sessions/)."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from hpcbridge.errors import SchedulerUnavailable
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.schedulers.pbs import PbsDialect
from hpcbridge.schedulers.slurm import SlurmDialect
from hpcbridge.sessions import capture, complete, record

FIXTURES = Path(__file__).parent.parent / "fixtures"


def session(**extra) -> dict:
    return json.loads(record.session_env(
        "20261130T073000Z-abc123", "server", user="alice", site="testbed", cluster="tb",
        profile_digest="sha256:00", request={"partition": "debug", "cores": 2,
                                             "memory": "2G", "walltime": "00:10:00",
                                             "environment": "default", "nodes": 1},
        extra=extra))


# -- accounting ---------------------------------------------------------------------------

def test_slurm_accounting_from_recorded_sacct():
    text = (FIXTURES / "slurm/recorded/24.11/sacct_usage.txt").read_text()
    found = SlurmDialect().parse_accounting(text, ["1", "2", "3"])
    assert set(found) == {"1", "2"}
    done, cancelled = found["1"], found["2"]
    assert done.state is JobState.COMPLETED and done.exit_code == 0
    assert (done.cores, done.elapsed_seconds, done.core_seconds) == (2, 6, 12)
    assert done.cpu_seconds == pytest.approx(0.939) and done.nodes == ("c1",)
    assert done.max_rss_mb is None and done.energy_joules is None  # not measured: unknown
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.state_text == "CANCELLED by 2001"


def test_slurm_accounting_takes_steps_maxima_and_node_fail():
    text = ("7|7|NODE_FAIL|0:0|4|30|00:10.500|||c2|2026-11-30T07:00:00|2026-11-30T07:00:30\n"
            "7.batch|7.batch|CANCELLED|0:9|4|30|00:10.500|512000K|1200|c2|"
            "2026-11-30T07:00:00|2026-11-30T07:00:30\n"
            "7.extern|7.extern|COMPLETED|0:0|4|30|00:00:00|100K|0|c2|x|y\n"
            "x\n71|71|COMPLETED|0:0\n")
    acct = SlurmDialect().parse_accounting(text, ["7"])["7"]
    assert acct.state is JobState.NODE_FAIL and acct.state_text == "NODE_FAIL"
    assert acct.max_rss_mb == pytest.approx(500.0) and acct.core_seconds == 120


def test_slurm_accounting_of_an_array_sums_its_tasks():
    text = ("9_0|10|COMPLETED|0:0|1|10|00:01|||c1|2026-11-30T07:00:00|2026-11-30T07:00:10\n"
            "9_1|9|FAILED|1:0|1|20|00:02|||c2|2026-11-30T07:00:00|2026-11-30T07:00:20\n")
    acct = SlurmDialect().parse_accounting(text, ["9"])["9"]
    assert acct.core_seconds == 30 and acct.elapsed_seconds == 20
    assert acct.nodes == ("c1", "c2")


def test_pbs_accounting_from_qstat_xf():
    text = (FIXTURES / "pbs/pbspro_qstat_xf_usage.txt").read_text()
    dialect = PbsDialect(history=True)
    assert dialect.accounting_command(["1250.pbs01"]).argv[:3] == ("qstat", "-x", "-f")
    acct = dialect.parse_accounting(text, ["1250.pbs01"])["1250.pbs01"]
    assert acct.state is JobState.CANCELLED and acct.cores == 4
    assert (acct.elapsed_seconds, acct.core_seconds, acct.cpu_seconds) == (602, 2408, 581)
    assert acct.max_rss_mb == 2048 and acct.nodes == ("cn01",)
    assert PbsDialect(history=False).accounting_command(["1250"]) is None


# -- the record ---------------------------------------------------------------------------

def test_record_round_trip_private_and_one_line(tmp_path):
    rec = {**session(), "job_id": "5", "start": {"nodes": ["c1"]}}
    path = record.path_of(tmp_path, rec["id"])
    record.write(path, rec)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text().count("\n") == 1 and path.read_text().startswith('{"schema"')
    assert record.read(path) == rec


@pytest.mark.parametrize(("change", "said"), [
    ({"schema": "hpcbridge-session/9"}, "schema is"),
    ({"id": "../bob/x"}, "id is"),
    ({"kind": "shell"}, "kind must be"),
    ({"request": {"cores": "2; rm"}}, "request.cores must be int"),
    ({"request": {"partition": "debug", "cmd": "x"}}, "unknown keys: cmd"),
    ({"request": "debug"}, "request must be an object"),
    ({"user": None}, "user must be str"),
    ({"end": []}, "end must be dict"),
])
def test_record_problems_name_what_is_wrong(change, said):
    wrong = record.problems({**session(), **change})
    assert any(said in w for w in wrong), wrong


def test_record_loads_refuses_what_is_not_a_record():
    for text, said in (("{", "not JSON"), ("[1]", "not a JSON object"),
                       ("[" * 100000, "nested too deeply")):
        with pytest.raises(ValueError, match=said):
            record.loads(text)


def test_ids_are_file_names_only():
    assert record.ID_PATTERN.fullmatch(record.new_id())
    for bad in ("", "../x", "a/b", ".hidden", "x" * 81):
        with pytest.raises(ValueError):
            record.path_of("/home/alice", bad)


# -- the job's capture ----------------------------------------------------------------------

def test_capture_modules_and_no_secrets():
    assert capture.modules({"LOADEDMODULES": "gcc/12.2:hpcbridge-demo/1.0:plain"}) == [
        {"name": "gcc", "version": "12.2"}, {"name": "hpcbridge-demo", "version": "1.0"},
        {"name": "plain", "version": ""}]
    kept = capture.without_secrets({"JUPYTERHUB_API_TOKEN": "t", "JPY_API_TOKEN": "t",
                                    "HPCBRIDGE_WARM_SECRET": "s", "AWS_SECRET_ACCESS_KEY": "k",
                                    "PATH": "/bin"})
    assert kept == {"PATH": "/bin"}


def test_capture_writes_the_start_and_keeps_an_end(tmp_path, monkeypatch):
    image = tmp_path / "img.sif"
    image.write_bytes(b"sif")
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "c3", "LOADEDMODULES": "m/1",
           "JUPYTERHUB_API_TOKEN": "sekrit-token", "APPTAINER_CONTAINER": str(image)}
    monkeypatch.setattr(capture, "_run", lambda argv, environ: (
        ["numpy==2.1.0"] if "JUPYTERHUB_API_TOKEN" not in environ else None))
    rec = session(job_name="hpcb-nb-alice", script="#!/bin/bash -l\n")
    path = record.path_of(tmp_path, rec["id"])
    record.write(path, {**rec, "end": {"state": "cancelled"}})  # the hub was first
    capture.capture(rec, env, str(tmp_path))
    written = record.read(path)
    assert written["job_id"] == "42" and written["end"] == {"state": "cancelled"}
    start = written["start"]
    assert start["nodes"] == ["c3"] and start["modules"] == [{"name": "m", "version": "1"}]
    assert start["packages"]["requirements"] == ["numpy==2.1.0"]
    assert start["container"]["digest"].startswith("sha256:")
    assert start["script"] == "#!/bin/bash -l\n" and "job_name" not in written
    assert "sekrit" not in path.read_text()


def test_array_tasks_share_the_arrays_id():
    assert capture.job_id({"SLURM_JOB_ID": "12", "SLURM_ARRAY_JOB_ID": "10"}) == "10"
    assert capture.job_id({"PBS_JOBID": "7.pbs"}) == "7.pbs"


# -- the end ------------------------------------------------------------------------------

class FakeClient:
    """Accounting answers in turn; a home of files (the user's side of the client)."""

    def __init__(self, answers, files=None, sampling=None) -> None:
        self.answers = list(answers)
        self.files = dict(files or {})
        self.sampling = sampling
        self.sampling_asked = 0

    async def memory_sampling(self, as_user=None):
        self.sampling_asked += 1
        if isinstance(self.sampling, Exception):
            raise self.sampling
        return self.sampling

    async def accounting(self, ids, as_user=None):
        # the last answer stays the scheduler's answer
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def read_private_file(self, user, path, max_bytes):
        return self.files.get(path)

    async def replace_private_file(self, user, path, content):
        self.files[path] = content.decode()


def ended_acct(state=JobState.NODE_FAIL):
    text = ("7|7|%s|0:0|4|30|00:10.5|||c2|2026-11-30T07:00:00|2026-11-30T07:00:30\n"
            % state.name)
    return SlurmDialect().parse_accounting(text, ["7"])


async def no_sleep(_seconds):
    return None


def test_complete_waits_for_the_end_then_writes_it_over_the_jobs_part():
    rec = {**session(), "job_id": "7", "start": {"nodes": ["c2"]}}
    path = f"/home/alice/{record.FOLDER}/{rec['id']}.json"
    running = SlurmDialect().parse_accounting(
        "7|7|RUNNING|0:0|4|3|00:00|||c2|2026-11-30T07:00:00|Unknown\n", ["7"])
    client = FakeClient([SchedulerUnavailable("down"), {}, running, ended_acct()],
                        {path: record.dumps(rec)})
    done = asyncio.run(complete.complete(client, "alice", "/home/alice", session(), "7",
                                         sleep=no_sleep))
    assert done is not None and done["start"] == {"nodes": ["c2"]}
    end = record.loads(client.files[path])["end"]
    assert end["state"] == "node_fail" and end["scheduler_state"] == "NODE_FAIL"
    assert end["core_seconds"] == 120 and end["nodes"] == ["c2"]


def test_complete_a_record_the_job_never_wrote_from_the_request():
    client = FakeClient([ended_acct()])
    done = asyncio.run(complete.complete(client, "alice", "/home/alice",
                                         session(job_name="x"), "7", sleep=no_sleep))
    assert done["start"] is None and done["end"]["state"] == "node_fail"
    assert "job_name" not in done and not record.problems(done)


def test_no_record_for_a_job_that_never_ran():
    never = SlurmDialect().parse_accounting(
        "8|8|CANCELLED by 2001|0:0|1|0|00:00|||None assigned|None|2026-11-30T07:00:00\n", ["8"])
    client = FakeClient([never])
    assert asyncio.run(complete.complete(client, "alice", "/home/alice", session(), "8",
                                         sleep=no_sleep)) is None
    assert client.files == {}
    # no accounting at all: the submitter's word decides
    client = FakeClient([None])
    assert asyncio.run(complete.complete(client, "alice", "/home/alice", session(), "8",
                                         ran=False, sleep=no_sleep)) is None
    info = JobInfo("8", JobState.ENDED_UNKNOWN, reason="left the queue")
    client = FakeClient([None])
    done = asyncio.run(complete.complete(client, "alice", "/home/alice", session(), "8",
                                         info=info, sleep=no_sleep))
    assert done["end"]["state"] == "ended_unknown" and done["end"]["accounting"] is None


def test_complete_rewrites_a_corrupted_record_from_the_request():
    path = f"/home/alice/{record.FOLDER}/{session()['id']}.json"
    client = FakeClient([ended_acct(JobState.TIMEOUT)], {path: '{"schema": 1'})
    done = asyncio.run(complete.complete(client, "alice", "/home/alice", session(), "7",
                                         sleep=no_sleep))
    assert done["end"]["state"] == "timeout" and not record.problems(done)


def test_core_hours():
    assert record.core_hours({"end": {"core_seconds": 7200}}) == 2.0
    assert record.core_hours({"end": None}) is None


CONFIG = (Path(__file__).parents[1] / "fixtures" / "slurm" / "scontrol_show_config.txt")


def test_the_sampling_interval_from_slurms_config():
    dialect = SlurmDialect()
    assert dialect.memory_sampling_command().argv == ("scontrol", "show", "config")
    assert dialect.parse_memory_sampling(CONFIG.read_text()) == 5  # the testbed's task=5
    for line, seconds in (("JobAcctGatherFrequency  = 30", 30),
                          ("JobAcctGatherFrequency  = energy=60,task=15", 15),
                          ("JobAcctGatherFrequency  = energy=60", 30),  # Slurm's default
                          ("JobAcctGatherFrequency  = task=0", 0),
                          ("JobAcctGatherFrequency  = task=x", None), ("nothing", None)):
        assert dialect.parse_memory_sampling(line + "\n") == seconds, line
    none = "JobAcctGatherFrequency  = 30\nJobAcctGatherType       = jobacct_gather/none\n"
    assert dialect.parse_memory_sampling(none) == 0


def test_a_record_without_peak_memory_says_why():
    def end(elapsed, rss, sampling):
        text = (f"7|7|COMPLETED|0:0|1|{elapsed}|00:01|||c2|2026-11-30T07:00:00|"
                f"2026-11-30T07:00:30\n7.batch|7.batch|COMPLETED|0:0|1|{elapsed}|00:01|"
                f"{rss}||c2|2026-11-30T07:00:00|2026-11-30T07:00:30\n")
        acct = SlurmDialect().parse_accounting(text, ["7"])["7"]
        return complete.end_part(acct, None, "hub", sampling)

    short = end(3, "", 5)
    assert short["max_rss_mb"] is None and short["max_rss_note"] == (
        "not sampled: the job ran 3 s, shorter than the scheduler's sampling interval (5 s)")
    assert end(12, "92108K", 5)["max_rss_mb"] == 89 and "max_rss_note" not in \
        end(12, "92108K", 5)
    assert end(40, "", 30)["max_rss_note"] == \
        "not sampled: the job ran 40 s, the scheduler samples every 30 s"
    assert end(60, "", 30)["max_rss_note"] == "not measured by the scheduler"
    assert end(3, "", None)["max_rss_note"] == "not measured by the scheduler"
    assert "samples no job's memory" in end(3, "", 0)["max_rss_note"]
    assert "max_rss_note" not in complete.end_part(None, None, "hub", 5)


def test_complete_asks_the_interval_only_without_a_peak():
    client = FakeClient([ended_acct()], sampling=10)  # 30 s job, no MaxRSS
    done = asyncio.run(complete.complete(client, "alice", "/home/alice", session(), "7",
                                         sleep=no_sleep))
    assert done["end"]["max_rss_note"] == "not measured by the scheduler"
    assert client.sampling_asked == 1
    client = FakeClient([ended_acct()], sampling=SchedulerUnavailable("down"))
    done = asyncio.run(complete.complete(client, "alice", "/home/alice", session(), "7",
                                         sleep=no_sleep))  # a failed ask costs the note only
    assert done["end"]["max_rss_note"] == "not measured by the scheduler"
    text = ("7|7|COMPLETED|0:0|1|30|00:01|||c2|2026-11-30T07:00:00|2026-11-30T07:00:30\n"
            "7.batch|7.batch|COMPLETED|0:0|1|30|00:01|2048K||c2|2026-11-30T07:00:00|"
            "2026-11-30T07:00:30\n")
    client = FakeClient([SlurmDialect().parse_accounting(text, ["7"])], sampling=5)
    done = asyncio.run(complete.complete(client, "alice", "/home/alice", session(), "7",
                                         sleep=no_sleep))
    assert done["end"]["max_rss_mb"] == 2.0 and client.sampling_asked == 0


def test_complete_waits_for_the_steps_of_a_cancelled_job():
    """scancel ends the job at once; its step (and the step's peak memory) ends when
    its processes are gone, KillWait later: the end waits for it, a while."""
    def acct(step_state, rss):
        return SlurmDialect().parse_accounting(
            "7|7|CANCELLED by 2001|0:0|1|25|00:01|||c1|2026-11-30T07:00:00|"
            "2026-11-30T07:00:25\n"
            f"7.batch|7.batch|{step_state}|0:0|1|25|00:01|{rss}||c1|2026-11-30T07:00:00|"
            "2026-11-30T07:00:30\n", ["7"])

    assert not acct("RUNNING", "")["7"].settled and acct("CANCELLED", "1024K")["7"].settled
    client = FakeClient([acct("RUNNING", ""), acct("CANCELLED", "184816K")])
    done = asyncio.run(complete.complete(client, "alice", "/home/alice", session(), "7",
                                         sleep=no_sleep))
    assert done["end"]["max_rss_mb"] == 180 and done["end"]["state"] == "cancelled"
    # the step reads CANCELLED before its usage came (seen on Slurm 24.11)
    client = FakeClient([acct("CANCELLED", ""), acct("COMPLETED", "184816K")])
    done = asyncio.run(complete.complete(client, "alice", "/home/alice", session(), "7",
                                         sleep=no_sleep))
    assert done["end"]["max_rss_mb"] == 180
    # no peak memory ever (a short job; a step that never ends) holds the end back for
    # SETTLE_SECONDS only, with the note; a failed node's job not at all
    client = FakeClient([acct("RUNNING", "")] * 5, sampling=30)
    done = asyncio.run(complete.complete(client, "alice", "/home/alice", session(), "7",
                                         pauses=(20.0,) * 4, sleep=no_sleep))
    assert done["end"]["state"] == "cancelled" and len(client.answers) == 2  # 0, 20, 40 s
    assert "shorter than the scheduler's sampling interval" in done["end"]["max_rss_note"]
    client = FakeClient([ended_acct()] * 3)
    asyncio.run(complete.complete(client, "alice", "/home/alice", session(), "7",
                                  pauses=(20.0,) * 2, sleep=no_sleep))
    assert len(client.answers) == 2

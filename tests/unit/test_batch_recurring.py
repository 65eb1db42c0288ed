"""Recurring batch notebooks: schedules (hpcbridge/batch/cron.py), our blocks in a user's
crontab (crontab.py), Slurm's scrontab facts, and job definitions in HpcScheduler
(jobdefs.py, recurring.py) over jupyter-scheduler's database with a fake scheduler. The
testbed test runs them with a real scrontab (tests/testbed/test_batch_live.py)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from jupyter_scheduler.exceptions import InputUriError, SchedulerError
from jupyter_scheduler.models import (
    CreateJobDefinition,
    CreateJobFromDefinition,
    ListJobsQuery,
    UpdateJobDefinition,
)
from jupyter_scheduler.orm import JobDefinition

from hpcbridge.batch import crontab
from hpcbridge.batch.app import Refused
from hpcbridge.batch.cron import check_time_zone, parse_schedule
from hpcbridge.batch.definition import DefinitionSpec, RunRecord, read_runs, write_run
from hpcbridge.batch.recurring import launch, profile_for
from hpcbridge.batch.spec import BatchSpec
from hpcbridge.client import SchedulerClient
from hpcbridge.errors import RequestError, SchedulerUnavailable, SubmitRefused, TransportError
from hpcbridge.jobs import JobState
from hpcbridge.profiles.jobcopy import JOB_PROFILE_ENV, job_copy_json
from hpcbridge.schedulers import SlurmDialect
from hpcbridge.transport.base import Result
from slurm_testbed.profiles import load_bundled_profile
from tests.unit import test_batch_scheduler as one_off
from tests.unit.test_sched_client import ScriptedLoginNode
from tests.unit.virtual_time import VirtualClock, let_tasks_run

PARAMETERIZED, FakeSlurm = one_off.PARAMETERIZED, one_off.FakeSlurm
home, make = one_off.home, one_off.make  # the fixtures: alice's home, HpcScheduler over a fake
DEF_ID = "6f1c2a4e-0b7d-4c3e-9a5f-1d2e3f4a5b6c"
OTHER_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


# -- schedules -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "spec"), [
    ("* * * * *", "* * * * *"),
    ("*/1 * * * *", "* * * * *"),  # scrontab refuses a step of 1
    ("0 6 * * MON-FRI", "0 6 * * 1-5"),
    ("30 2 1 jan,Jul *", "30 2 1 1,7 *"),
    ("@daily", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
    ("5/15 * * * *", "5-59/15 * * * *"),
    ("0 6 * * 7", "0 6 * * 7"),
    ("  0   6 * *   *  ", "0 6 * * *"),
])
def test_a_schedule_is_written_with_numbers_only(text: str, spec: str) -> None:
    assert parse_schedule(text).spec == spec


@pytest.mark.parametrize(("text", "message"), [
    ("", "the schedule is empty"),
    ("* * * *", "has 4 fields, not five: write five fields"),
    ("* * * * * /bin/sh", "has 6 fields, not five"),
    ("61 * * * *", "the schedule's minute field has 61: it must be from 0 to 59"),
    ("* 24 * * *", "hour field has 24"),
    ("* * 0 * *", "day of month field has 0"),
    ("* * * 13 *", "month field has 13"),
    ("* * * FOO *", "month field has 'FOO': write a number from 1 to 12 or a name"),
    ("*/0 * * * *", "step /0"),
    ("9-3 * * * *", "the range 9-3: its start is after its end"),
    ("$(id) * * * *", "is not a cron field"),
    ("* * * * *\n* * * * * rm", "is not a cron expression"),
    ("0 0 30 2 *", "names no day that exists in its months"),
    (None, "the schedule is empty"),
])
def test_a_bad_schedule_is_refused_with_a_sentence(text, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace("$", r"\$")):
        parse_schedule(text)


NOW = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)


def test_a_schedule_in_another_time_zone_runs_only_where_the_times_agree() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    daily, minutely = parse_schedule("0 6 * * *"), parse_schedule("*/5 * * * *")
    check_time_zone(None, daily, local=berlin, now=NOW)
    check_time_zone("Europe/Berlin", daily, local=berlin, now=NOW)
    check_time_zone("Europe/Paris", daily, local=berlin, now=NOW)  # the same rules
    check_time_zone("UTC", minutely, local=berlin, now=NOW)  # whole hours apart
    with pytest.raises(RequestError, match=r"its own time zone \(Europe/Berlin\).*in UTC"):
        check_time_zone("UTC", daily, local=berlin, local_name="Europe/Berlin", now=NOW)
    with pytest.raises(RequestError, match="at other times in Asia/Kolkata"):
        check_time_zone("Asia/Kolkata", minutely, local=timezone.utc, now=NOW)
    with pytest.raises(RequestError, match="'Mars/Base' is not one this server knows"):
        check_time_zone("Mars/Base", daily, local=timezone.utc, now=NOW)


# -- our blocks in a crontab -----------------------------------------------------------

COMMAND = ("/opt/venv/bin/python", "-m", "hpcbridge.batch.recurring",
           f"/home/alice/jobs/recurring/nb-{DEF_ID}")
DIRECTIVES = ["#SCRON --job-name=hpcb-cron", "#SCRON --partition=debug"]
USERS_OWN = ("# my own\nMAILTO=me\n#SCRON -t 5\n0 3 * * * /home/alice/backup.sh  \n\n"
             "#DISABLED: 0 4 * * * echo $HOME\n")


def test_our_block_goes_first_and_the_users_lines_stay_as_they_were() -> None:
    ours = crontab.block(DEF_ID, "*/15 * * * *", DIRECTIVES, COMMAND)
    text = crontab.render(crontab.parse(USERS_OWN), {DEF_ID: ours})
    assert text == "\n".join([
        f"# hpcbridge job definition {DEF_ID}: begin (managed by hpcbridge; edits here "
        "are replaced)", *DIRECTIVES, "*/15 * * * * " + " ".join(COMMAND),
        f"# hpcbridge job definition {DEF_ID}: end"]) + "\n" + USERS_OWN
    read = crontab.parse(text)
    assert read.blocks == {DEF_ID: ours} and ours.active and not ours.disabled
    assert "\n".join(read.others) + "\n" == USERS_OWN
    # a second definition, a pause, a removal: the user's lines never change
    paused = crontab.block(DEF_ID, "*/15 * * * *", DIRECTIVES, COMMAND, active=False)
    other = crontab.block(OTHER_ID, "0 6 * * *", DIRECTIVES, COMMAND)
    text = crontab.render(crontab.parse(text), {DEF_ID: paused, OTHER_ID: other})
    assert text.endswith(USERS_OWN) and text.count("#SCRON --partition") == 1
    read = crontab.parse(text)
    assert not read.blocks[DEF_ID].active and read.blocks[OTHER_ID].active
    # a paused block lends no options to the next entry: no #SCRON line, no entry
    assert [ln for ln in paused.lines if ln.startswith("#SCRON") or ln[0] != "#"] == []
    text = crontab.render(read, {DEF_ID: None, OTHER_ID: None})
    assert text == USERS_OWN
    assert crontab.render(crontab.parse(""), {}) == ""


def test_an_entry_slurm_disabled_is_seen() -> None:
    ours = crontab.block(DEF_ID, "* * * * *", DIRECTIVES, COMMAND)
    lines = [ours.lines[0], *(crontab.DISABLED + ln for ln in ours.lines[1:-1]), ours.lines[-1]]
    block = crontab.parse("\n".join(lines) + "\n").blocks[DEF_ID]
    assert block.disabled and not block.active


@pytest.mark.parametrize(("text", "message"), [
    (f"# hpcbridge job definition {DEF_ID}: begin\n* * * * * x\n", "has no end line"),
    (f"# hpcbridge job definition {DEF_ID}: end\n", "without its begin line"),
    (f"# hpcbridge job definition {DEF_ID}: begin\n# hpcbridge job definition {OTHER_ID}: "
     f"end\n", "ends with another's end line"),
    (f"# hpcbridge job definition {DEF_ID}: begin\n# hpcbridge job definition {OTHER_ID}: "
     f"begin\n", "has no end line"),
])
def test_a_broken_block_stops_every_change(text: str, message: str) -> None:
    with pytest.raises(crontab.CrontabError, match=message):
        crontab.parse(text)


@pytest.mark.parametrize("command", [
    ("/opt/python", "-m", "x", "/home/alice/jobs/recurring/a b"),
    ("/opt/python", "-m", "x", "/home/alice/$(id)"),
    ("/opt/python", "-m", "x", "/home/alice/x\n* * * * * rm -rf ~"),
    ("/opt/python", "-m", "x", "/home/alice/100%"),
    ("/opt/python", "'quoted'"),
    (),
])
def test_no_word_a_shell_or_crontab_reads_twice_reaches_a_line(command) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="crontab line cannot carry"):
        crontab.block(DEF_ID, "* * * * *", DIRECTIVES, command)


def test_only_checked_schedules_ids_and_directives_reach_a_line() -> None:
    with pytest.raises(ValueError, match="not a checked schedule"):
        crontab.block(DEF_ID, "* * * * * echo", DIRECTIVES, COMMAND)
    with pytest.raises(ValueError, match="not a job definition id"):
        crontab.block("../x", "* * * * *", DIRECTIVES, COMMAND)
    with pytest.raises(ValueError, match="not a directive line"):
        crontab.block(DEF_ID, "* * * * *", ["#SCRON -p debug\n* * * * * rm"], COMMAND)


# -- Slurm's scrontab --------------------------------------------------------------------

def test_slurm_writes_scron_lines_without_what_scrontab_refuses() -> None:
    from hpcbridge.batch.recurring import launcher_request
    from hpcbridge.profiles import JobRequest, validate_request

    profile = load_bundled_profile("testbed")
    run = validate_request(profile, JobRequest(user="alice", preset="debug"))
    launcher = launcher_request(profile, run, COMMAND)
    lines = SlurmDialect().crontab_directives(launcher)
    assert all(ln.startswith("#SCRON --") for ln in lines)
    assert "#SCRON --no-requeue" not in lines  # "Invalid option found in #SCRON line"
    assert {"#SCRON --job-name=hpcb-cron", "#SCRON --cpus-per-task=1", "#SCRON --mem=1G",
            "#SCRON --time=00:05:00", "#SCRON --open-mode=append",
            "#SCRON --partition=debug"} <= set(lines)


async def test_the_client_reads_and_writes_the_crontab_as_the_user() -> None:
    node = ScriptedLoginNode({"scrontab": Result(1, "no crontab for alice\n", "")})
    client = SchedulerClient(SlurmDialect(), node)
    assert await client.read_crontab("alice") == ""
    node.answers["scrontab"] = Result(0, "0 3 * * * /bin/true\n", "")
    assert await client.read_crontab("alice") == "0 3 * * * /bin/true\n"
    await client.write_crontab("alice", "* * * * * /bin/true\n")
    assert node.calls[-1] == (("scrontab", "-"), "alice", b"* * * * * /bin/true\n")
    node.answers["scrontab"] = Result(1, "There are errors in your crontab.\n",
                                      "scrontab: error: bad step value\n")
    with pytest.raises(SubmitRefused, match="scrontab refused the crontab: bad step value"):
        await client.write_crontab("alice", "*/1 * * * * /bin/true\n")
    node.answers["scrontab"] = Result(1, "", "scrontab: fatal: scrontab is disabled on this "
                                             "cluster\n")
    with pytest.raises(SubmitRefused, match="scrontab is disabled on this cluster"):
        await client.write_crontab("alice", "")
    with pytest.raises(SubmitRefused, match="scrontab is disabled on this cluster"):
        await client.read_crontab("alice")  # not an empty crontab (recurring: auto asks)
    node.answers["scrontab"] = TransportError("command not found: scrontab")
    with pytest.raises(SubmitRefused, match="this machine has no scrontab command"):
        await client.read_crontab("alice")
    node.answers["scrontab"] = Result(1, "", "scrontab: error: Unable to contact slurm "
                                             "controller (connect failure)\n")
    with pytest.raises(SchedulerUnavailable):
        await client.read_crontab("alice")


# -- job definitions in the notebook server ----------------------------------------------

class FakeScron(FakeSlurm):
    """FakeSlurm with the user's crontab."""

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.crontab = text
        self.writes = 0
        self.refuse_crontab: Exception | None = None

    async def read_crontab(self, user: str) -> str:
        assert user == "alice"
        return self.crontab

    async def write_crontab(self, user: str, text: str) -> None:
        assert user == "alice"
        if self.refuse_crontab:
            raise self.refuse_crontab
        self.writes += 1
        self.crontab = text


def definition(**kw) -> CreateJobDefinition:  # type: ignore[no-untyped-def]
    fields = {"input_uri": "work/nb.ipynb", "runtime_environment_name": "default",
              "compute_type": "debug", "name": "nightly", "output_formats": ["ipynb"],
              "parameters": {"n": "3"}, "schedule": "*/15 * * * *", "timezone": None}
    return CreateJobDefinition(**{**fields, **kw})


def definition_rows(sched) -> list:  # type: ignore[no-untyped-def]
    with sched.db_session() as session:
        return session.query(JobDefinition).all()


async def test_a_definition_becomes_a_crontab_entry_beside_the_users_own(make, home: Path
                                                                         ) -> None:
    slurm = FakeScron(USERS_OWN)
    sched = make(slurm, VirtualClock())
    def_id = await sched.create_job_definition(definition())
    folder = home / "jobs" / "recurring" / f"nb-{def_id}"
    block = crontab.parse(slurm.crontab).blocks[def_id]
    entry = [ln for ln in block.lines if not ln.startswith("#")]
    assert entry == [f"*/15 * * * * {sched.launcher_python} -m hpcbridge.batch.recurring "
                     f"{folder}"]
    assert "#SCRON --job-name=hpcb-cron" in block.lines
    assert slurm.crontab.endswith(USERS_OWN) and slurm.scripts == []  # nothing runs yet
    spec = DefinitionSpec.read(folder)
    assert (spec.schedule, spec.parameters, spec.compute_type) == ("*/15 * * * *",
                                                                   {"n": "3"}, "debug")
    assert spec.jobs_folder == str(home / "jobs") and spec.formats == ["ipynb"]
    assert folder.stat().st_mode & 0o777 == 0o700
    assert json.loads((folder / "nb.ipynb").read_text()) == PARAMETERIZED
    assert json.loads((folder / "site-profile.json").read_text())["site"] == "testbed"
    (row,) = definition_rows(sched)
    assert (row.job_definition_id, row.schedule, row.active) == (def_id, "*/15 * * * *", True)


@pytest.mark.parametrize(("change", "message"), [
    ({"schedule": "61 * * * *"}, "the schedule's minute field has 61"),
    ({"schedule": "* * * * * ; touch x"}, "not five"),
    ({"schedule": "0 6 * * *", "timezone": "Asia/Kolkata"}, "its own time zone"),
    ({"runtime_environment_parameters": {"walltime": "01:00:00"}},
     "walltime 01:00:00 is over partition debug's max_walltime 00:30:00"),
    ({"runtime_environment_parameters": {"cores": 64}}, "cores_per_node 8"),
    ({"parameters": {"m": "1"}}, "parameter 'm' is not set in the notebook's parameters cell"),
    ({"input_uri": "../bob/nb.ipynb"}, "outside your home folder"),
    ({"input_uri": "work/missing.ipynb"}, "does not exist"),
    ({"output_formats": ["pdf"]}, "output format 'pdf' is not offered"),
    ({"package_input_folder": True}, "a job definition runs without its input folder"),
])
async def test_a_refused_definition_stores_nothing(make, home: Path, tmp_path: Path, change,
                                                   message) -> None:
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "nb.ipynb").write_text(json.dumps(PARAMETERIZED))
    slurm = FakeScron(USERS_OWN)
    sched = make(slurm, VirtualClock())
    with pytest.raises((Refused, InputUriError), match=message):  # both answered with 400
        await sched.create_job_definition(definition(**change))
    assert not (home / "jobs").exists() and definition_rows(sched) == []
    assert slurm.writes == 0 and slurm.crontab == USERS_OWN


async def test_a_schedule_the_scheduler_refuses_stores_nothing(make, home: Path) -> None:
    slurm = FakeScron(USERS_OWN)
    slurm.refuse_crontab = SubmitRefused("scrontab refused the crontab: Job violates "
                                         "accounting/QOS policy")
    sched = make(slurm, VirtualClock())
    with pytest.raises(Refused, match="the schedule was not changed: scrontab refused "
                                      "the crontab: Job violates"):
        await sched.create_job_definition(definition())
    assert list((home / "jobs").iterdir()) == [] and definition_rows(sched) == []
    assert slurm.crontab == USERS_OWN


async def test_a_cluster_without_schedules_refuses_them(make, monkeypatch, home: Path) -> None:
    profile = load_bundled_profile("testbed")
    cluster = profile.clusters["tb"].model_copy(update={"recurring": "off"})
    profile = profile.model_copy(update={"clusters": {"tb": cluster}})
    monkeypatch.setenv(JOB_PROFILE_ENV, job_copy_json(profile))
    slurm = FakeScron()
    sched = make(slurm, VirtualClock())
    with pytest.raises(SchedulerError, match=r"cluster tb does not run notebooks on a "
                                             r"schedule .*recurring is off"):
        await sched.create_job_definition(definition())
    assert not (home / "jobs").exists() and slurm.writes == 0


async def test_user_text_never_reaches_the_crontab(make, home: Path) -> None:
    name = "a b;$(touch x)\n* * * * * rm.ipynb"
    (home / "work" / name).write_text(json.dumps(PARAMETERIZED))
    slurm = FakeScron()
    sched = make(slurm, VirtualClock())
    def_id = await sched.create_job_definition(definition(
        input_uri=f"work/{name}", name="n'; rm -rf ~\n* * * * * x",
        parameters={"n": "1\n* * * * * /bin/sh -c 'id'"}))
    (block,) = crontab.parse(slurm.crontab).blocks.values()
    assert slurm.crontab.count("\n") == len(block.lines) and "$" not in slurm.crontab
    assert all(crontab.SAFE_WORD.fullmatch(w) for w in block.lines[-2].split()[5:])
    folder = home / "jobs" / "recurring" / f"a_b_touch_x_rm-{def_id}"
    assert DefinitionSpec.read(folder).parameters["n"].startswith("1\n")  # JSON only


async def test_pause_resume_reschedule_and_delete(make, home: Path) -> None:
    slurm = FakeScron(USERS_OWN)
    sched = make(slurm, VirtualClock())
    def_id = await sched.create_job_definition(definition())
    folder = home / "jobs" / "recurring" / f"nb-{def_id}"

    await sched.update_job_definition(def_id, UpdateJobDefinition(active=False))
    block = crontab.parse(slurm.crontab).blocks[def_id]
    assert not block.active and not DefinitionSpec.read(folder).active
    assert definition_rows(sched)[0].active is False and slurm.crontab.endswith(USERS_OWN)

    await sched.update_job_definition(def_id, UpdateJobDefinition(active=True))
    assert crontab.parse(slurm.crontab).blocks[def_id].active

    await sched.update_job_definition(def_id, UpdateJobDefinition(schedule="0 6 * * MON"))
    block = crontab.parse(slurm.crontab).blocks[def_id]
    assert any(ln.startswith("0 6 * * 1 ") for ln in block.lines)
    assert definition_rows(sched)[0].schedule == "0 6 * * 1"
    assert DefinitionSpec.read(folder).schedule == "0 6 * * 1"

    (home / "work" / "other.ipynb").write_text(json.dumps(PARAMETERIZED))
    await sched.update_job_definition(def_id, UpdateJobDefinition(
        input_uri="work/other.ipynb", parameters={"n": "4"}))
    assert DefinitionSpec.read(folder).input == "other.ipynb"  # the same folder
    assert (folder / "other.ipynb").is_file() and definition_rows(sched)[0].input_filename \
        == "other.ipynb"
    job_id = await sched.create_job_from_definition(def_id, CreateJobFromDefinition())
    assert BatchSpec.read(home / "jobs" / f"other-{job_id}").parameters == {"n": 4}

    before = slurm.crontab
    with pytest.raises(SchedulerError, match="hour field has 25"):
        await sched.update_job_definition(def_id, UpdateJobDefinition(schedule="0 25 * * *"))
    assert slurm.crontab == before and definition_rows(sched)[0].schedule == "0 6 * * 1"

    await sched.delete_job_definition(def_id)
    assert slurm.crontab == USERS_OWN and not folder.exists() and definition_rows(sched) == []


async def test_each_run_is_checked_submitted_and_listed_as_a_job_of_the_definition(
        make, home: Path, monkeypatch) -> None:
    slurm, clock = FakeScron(), VirtualClock()
    sched = make(slurm, clock)
    def_id = await sched.create_job_definition(definition())
    folder = home / "jobs" / "recurring" / f"nb-{def_id}"
    monkeypatch.delenv(JOB_PROFILE_ENV)  # the cron job has no server's environment
    profile = profile_for(folder)  # the copy saved with the definition
    first = await launch(profile, slurm, "alice", home, folder, now=1_796_000_000)
    assert first.scheduler_job_id == "101" and first.error is None
    run_folder = home / "jobs" / f"nb-{first.job_id}"
    spec = BatchSpec.read(run_folder)
    assert (spec.definition_id, spec.parameters, spec.scheduler_job_id) == (def_id, {"n": 3},
                                                                            "101")
    (_, script), = slurm.scripts
    assert "#SBATCH --job-name=hpcb-batch" in script and str(run_folder) in script

    # the profile changed meanwhile: the next run passes the gate again and is refused
    spec_file = DefinitionSpec.read(folder)
    DefinitionSpec(**{**spec_file.__dict__, "options": {"walltime": "01:00:00"}}).write(folder)
    second = await launch(profile, slurm, "alice", home, folder, now=1_796_000_060)
    assert second.scheduler_job_id is None and len(slurm.scripts) == 1
    assert second.error and "over partition debug's max_walltime" in second.error
    assert [r.job_id for r in read_runs(folder)] == [first.job_id, second.job_id]

    listed = (await sched.list_jobs(ListJobsQuery(job_definition_id=def_id))).jobs
    shown = {j.job_id: j for j in listed}
    assert shown[first.job_id].status.value == "QUEUED" and shown[first.job_id].name == "nightly"
    assert shown[second.job_id].status.value == "FAILED"
    assert "not submitted: " in (shown[second.job_id].status_message or "")
    assert sched._tracked == {"101": first.job_id}  # the run is followed like a one-off job
    slurm.set("101", JobState.RUNNING, nodes=("c2",))
    await let_tasks_run()
    await clock.advance(10)
    assert (await sched.get_job(first.job_id)).status_message == "job 101: running on c2"
    # a second look adds nothing twice, nor does a second server of hers (one list)
    assert len((await sched.list_jobs(ListJobsQuery(job_definition_id=def_id))).jobs) == 2
    monkeypatch.setenv(JOB_PROFILE_ENV, job_copy_json(profile))
    other = make(FakeScron(), clock)
    other._add_run(other._definition(def_id), read_runs(folder)[0])
    assert len((await other.list_jobs(ListJobsQuery(job_definition_id=def_id))).jobs) == 2


async def test_run_now_submits_at_once_and_a_refusal_stores_nothing(make, home: Path) -> None:
    slurm = FakeScron()
    sched = make(slurm, VirtualClock())
    def_id = await sched.create_job_definition(definition())
    job_id = await sched.create_job_from_definition(
        def_id, CreateJobFromDefinition(parameters={"n": "5"}))
    job = await sched.get_job(job_id)
    assert job.job_definition_id == def_id and job.status_message == "job 101: submitted on " \
                                                                     "schedule"
    assert BatchSpec.read(home / "jobs" / f"nb-{job_id}").parameters == {"n": 5}
    folder = home / "jobs" / "recurring" / f"nb-{def_id}"
    with pytest.raises(Refused, match="parameter 'm' is not set"):
        await sched.create_job_from_definition(def_id, CreateJobFromDefinition(
            parameters={"m": "1"}))
    assert len(read_runs(folder)) == 1 and len(slurm.scripts) == 1


def test_run_records_round_trip(tmp_path: Path) -> None:
    write_run(tmp_path, RunRecord("a", 2, "17"))
    write_run(tmp_path, RunRecord("b", 1, error="not submitted: x"))
    (tmp_path / "runs" / "c.json").write_text("{broken")
    (tmp_path / "runs" / "d.json").write_text(json.dumps({"job_id": "e", "create_time": 3}))
    assert read_runs(tmp_path) == [RunRecord("b", 1, error="not submitted: x"),
                                   RunRecord("a", 2, "17")]

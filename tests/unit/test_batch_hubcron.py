"""Schedules the hub keeps (hpcbridge/batch/hubcron.py): the next minute of a schedule,
what a registration may carry, the state file across a restart, and the minute's check
with a scheduler client that records submissions. The live test runs it on the Slurm
22.05 testbed, which has no scrontab (tests/testbed/test_batch_hubcron_live.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from jupyter_scheduler.exceptions import SchedulerError
from jupyter_scheduler.models import UpdateJobDefinition

from hpcbridge.batch import hubclient, hubcron
from hpcbridge.batch.app import Refused
from hpcbridge.batch.cron import next_run, parse_schedule
from hpcbridge.batch.definition import DefinitionSpec
from hpcbridge.errors import IdentityRefused, RequestError, SchedulerUnavailable, SubmitRefused
from slurm_testbed.profiles import load_bundled_profile
from tests.unit import test_batch_scheduler as one_off
from tests.unit.test_batch_recurring import FakeScron, definition, definition_rows
from tests.unit.virtual_time import VirtualClock

home, make = one_off.home, one_off.make  # the fixtures: alice's home, HpcScheduler over a fake

DEF_ID = "6f1c2a4e-0b7d-4c3e-9a5f-1d2e3f4a5b6c"
BODY = {"cluster": "tb", "schedule": "*/5 * * * *", "folder": "/home/alice/jobs/recurring/sq",
        "python": "/opt/venv/bin/python", "compute_type": "debug", "active": True}


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(("schedule", "after", "expected"), [
    ("* * * * *", "2026-11-30 11:30:20", "2026-11-30 11:31"),
    ("*/5 * * * *", "2026-11-30 11:30:00", "2026-11-30 11:35"),  # strictly after
    ("0 6 * * 1-5", "2026-11-28 07:00", "2026-11-30 06:00"),  # Saturday → Monday
    ("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"),
    ("0 0 1 * 1", "2026-11-30 00:00", "2026-12-01 00:00"),  # day of month OR of week
    ("0 0 13 * 5", "2026-11-01 00:00", "2026-11-06 00:00"),  # the first Friday wins
    ("59 23 31 12 *", "2026-12-31 23:59", "2027-12-31 23:59"),
])
def test_the_next_run_is_the_first_selected_minute_after(schedule: str, after: str,
                                                           expected: str) -> None:
    found = next_run(parse_schedule(schedule), datetime.fromisoformat(after))
    assert found == datetime.fromisoformat(expected)


def test_a_day_that_never_comes_is_refused_unless_a_weekday_selects_days() -> None:
    assert next_run(parse_schedule("0 0 31 4 1"), datetime(2026, 1, 1)) is not None  # Mondays
    with pytest.raises(RequestError):
        parse_schedule("0 0 31 4 *")  # refused before it could be kept


@pytest.mark.parametrize(("change", "words"), [
    ({"schedule": "61 * * * *"}, "minute field has 61"),
    ({"folder": "/home/alice/x; rm -rf ~"}, "folder must be an absolute path"),
    ({"folder": "jobs/relative"}, "folder must be an absolute path"),
    ({"folder": "/home/alice/../bob"}, "folder must be an absolute path"),
    ({"python": "/usr/bin/python\n#SBATCH --qos=high"}, "python must be"),
    ({"command": ["/bin/sh"]}, "keys from"),
    ({"options": {"walltime": ["01:00:00"]}}, "plain values"),
    ({"active": "yes"}, "true or false"),
    ({"timezone": "Mars/Olympus"}, "not one this server knows"),
])
def test_a_registration_is_checked_before_it_is_kept(change: dict, words: str) -> None:
    with pytest.raises(RequestError, match=words.replace("(", r"\(")):
        hubcron.parse_entry({**BODY, **change}, "alice", DEF_ID, 0.0)


def test_a_registration_names_a_definition_id() -> None:
    with pytest.raises(RequestError, match="not a job definition id"):
        hubcron.parse_entry(BODY, "alice", "../../etc", 0.0)


class RecordingClient:
    """A scheduler client that records what it is asked to submit."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.submitted: list[tuple[str, str, str | None]] = []
        self.fail = fail

    async def submit(self, user: str, script: str, log_folder: str | None = None) -> str:
        if self.fail is not None:
            raise self.fail
        self.submitted.append((user, script, log_folder))
        return str(100 + len(self.submitted))


class Identity:
    def __init__(self, refused: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.refused = refused

    async def check(self, cluster: str | None, user: str) -> None:
        if user in self.refused:
            raise IdentityRefused(f"the hub does not act as {user!r}")


class FakeSite:
    def __init__(self, recurring: str = "hub", **client: Exception) -> None:
        profile = load_bundled_profile("testbed", env={})
        cluster = profile.clusters["tb"].model_copy(update={"recurring": recurring})
        self.profile = profile.model_copy(update={"clusters": {"tb": cluster}})
        self.identity = Identity()
        self.recorder = RecordingClient(**client)

    def client(self, name: str | None = None) -> RecordingClient:
        return self.recorder


def keeper(tmp_path: Path, **site: object) -> hubcron.HubRecurring:
    return hubcron.HubRecurring(FakeSite(**site), tmp_path / hubcron.STATE_FILE)  # type: ignore[arg-type]


def register(k: hubcron.HubRecurring, now: float, **change: object) -> hubcron.Entry:
    entry = hubcron.parse_entry({**BODY, **change}, "alice", DEF_ID, now)
    return asyncio.run(k.register(entry))


def test_each_due_minute_submits_the_launcher_as_the_user(tmp_path: Path) -> None:
    k = keeper(tmp_path)
    register(k, at("2026-11-30 11:31:10"))
    assert asyncio.run(k.tick(at("2026-11-30 11:34:59"))) == []  # not yet
    assert len(asyncio.run(k.tick(at("2026-11-30 11:35:01")))) == 1
    assert asyncio.run(k.tick(at("2026-11-30 11:36:01"))) == []  # once per minute
    ((user, script, log_folder),) = k.site.recorder.submitted
    assert user == "alice" and log_folder
    # the launcher of hpcbridge/batch/recurring.py, small, on the definition's partition
    assert "/opt/venv/bin/python -m hpcbridge.batch.recurring " \
           "/home/alice/jobs/recurring/sq" in script
    assert "--partition=debug" in script and "--job-name=hpcb-cron" in script
    assert k.store.entries[("alice", DEF_ID)].last_job == "101"


def test_minutes_missed_while_the_hub_was_down_run_once_after_a_restart(tmp_path: Path) -> None:
    k = keeper(tmp_path)
    register(k, at("2026-11-30 11:31:10"))
    assert asyncio.run(k.tick(at("2026-11-30 11:35:01")))
    # the hub stops; an hour (12 runs) passes; a new hub reads the state file
    again = keeper(tmp_path)
    assert again.store.entries[("alice", DEF_ID)].checked_until == at("2026-11-30 11:35:01")
    assert len(asyncio.run(again.tick(at("2026-11-30 12:35:30")))) == 1
    assert asyncio.run(again.tick(at("2026-11-30 12:36:01"))) == []
    assert len(again.site.recorder.submitted) == 1


def test_nothing_runs_paused_deleted_or_for_a_refused_user(tmp_path: Path) -> None:
    k = keeper(tmp_path)
    register(k, at("2026-11-30 11:31:10"), active=False)
    assert asyncio.run(k.tick(at("2026-11-30 12:00:01"))) == []
    # resumed: the minutes it was paused through do not run
    register(k, at("2026-11-30 12:00:30"))
    assert asyncio.run(k.tick(at("2026-11-30 12:04:59"))) == []
    assert k.remove("alice", DEF_ID)
    assert asyncio.run(k.tick(at("2026-11-30 13:00:01"))) == []
    assert keeper(tmp_path).store.entries == {}  # gone after a restart too
    register(k, at("2026-11-30 13:00:30"))
    k.site.identity.refused = {"alice"}
    asyncio.run(k.tick(at("2026-11-30 13:05:01")))
    assert k.site.recorder.submitted == []
    assert "does not act as" in (k.store.entries[("alice", DEF_ID)].last_error or "")


def test_a_user_the_hub_no_longer_has_runs_nothing_and_leaves_the_file(tmp_path: Path) -> None:
    k = keeper(tmp_path)
    register(k, at("2026-11-30 11:31:10"))
    k.user_exists = lambda name: name != "alice"  # the admin deleted her
    assert asyncio.run(k.tick(at("2026-11-30 11:35:01"))) == []
    assert k.site.recorder.submitted == [] and keeper(tmp_path).store.entries == {}


def test_a_scheduler_that_cannot_be_asked_keeps_the_run_due(tmp_path: Path) -> None:
    k = keeper(tmp_path, fail=SchedulerUnavailable("slurmctld does not answer"))
    register(k, at("2026-11-30 11:31:10"))
    asyncio.run(k.tick(at("2026-11-30 11:35:01")))
    k.site.recorder.fail = None
    assert len(asyncio.run(k.tick(at("2026-11-30 11:36:01")))) == 1
    assert len(k.site.recorder.submitted) == 1


def test_a_registration_over_the_limits_or_for_another_keeper_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="max_walltime"):
        register(keeper(tmp_path), 0.0, options={"walltime": "09:00:00"})
    with pytest.raises(RequestError, match="does not run schedules kept by the hub"):
        register(keeper(tmp_path, recurring="scrontab"), 0.0)
    k = keeper(tmp_path)
    k.site.identity.refused = {"alice"}
    with pytest.raises(IdentityRefused):
        register(k, 0.0)
    assert not (tmp_path / hubcron.STATE_FILE).exists()  # a refusal stores nothing


def test_the_state_file_is_private(tmp_path: Path) -> None:
    k = keeper(tmp_path)
    register(k, 0.0)
    assert (tmp_path / hubcron.STATE_FILE).stat().st_mode & 0o077 == 0
    assert replace(k.store.entries[("alice", DEF_ID)], last_error=None).folder == BODY["folder"]


# -- the notebook server's side (hpcbridge/batch/jobdefs.py, hubclient.py) ---------------

class FakeHub:
    """The hub's recurring API: records calls, answers as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict | None]] = []
        self.answer: tuple[int, bytes] = (200, b"{}")

    def __call__(self, method: str, url: str, token: str, body: dict | None
                 ) -> tuple[int, bytes]:
        assert token == "server-token"
        self.calls.append((method, url.rsplit("/", 1)[1], body))
        return self.answer


DISABLED = SubmitRefused("scrontab refused the crontab: scrontab is disabled on this cluster")
NO_SCRONTAB = SubmitRefused("this machine has no scrontab command, which recurring jobs "
                            "need; ask the site to install it")


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:  # type: ignore[no-untyped-def]
    hub = FakeHub()
    monkeypatch.setattr(hubclient, "_call", hub)
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://hub:8081/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "server-token")
    return hub


@pytest.mark.parametrize("why", [NO_SCRONTAB, DISABLED])
async def test_without_scrontab_auto_gives_the_definition_to_the_hub(
        make, home: Path, fake_hub: FakeHub, why: Exception) -> None:  # type: ignore[no-untyped-def]
    slurm = FakeScron()

    async def refuse(user: str) -> str:
        raise why

    slurm.read_crontab = refuse  # type: ignore[method-assign]
    sched = make(slurm, VirtualClock())
    def_id = await sched.create_job_definition(definition())
    folder = home / "jobs" / "recurring" / f"nb-{def_id}"
    ((method, where, body),) = fake_hub.calls
    assert (method, where) == ("PUT", def_id)
    assert body == {"cluster": "tb", "schedule": "*/15 * * * *", "timezone": None,
                    "folder": str(folder), "python": sched.launcher_python,
                    "environment": "default", "compute_type": "debug", "options": {},
                    "active": True}
    # what the hub checks again accepts it; parameters and the notebook never go there
    assert hubcron.parse_entry(body, "alice", def_id, 0.0).folder == str(folder)
    assert DefinitionSpec.read(folder).keeper == "hub" and slurm.writes == 0

    await sched.update_job_definition(def_id, UpdateJobDefinition(active=False))
    await sched.update_job_definition(def_id, UpdateJobDefinition(schedule="0 6 * * MON"))
    assert [(c[0], c[2]["active"], c[2]["schedule"]) for c in fake_hub.calls[1:]] == [
        ("PUT", False, "*/15 * * * *"), ("PUT", False, "0 6 * * 1")]
    await sched.delete_job_definition(def_id)
    assert fake_hub.calls[-1] == ("DELETE", def_id, None)
    assert not folder.exists() and definition_rows(sched) == []


def _definition_files(home: Path) -> list[Path]:
    return list(home.rglob("hpcbridge-definition.json"))


async def _refuse(user: str) -> str:
    raise NO_SCRONTAB


async def test_auto_does_not_guess_while_the_scheduler_cannot_be_asked(
        make, home: Path, fake_hub: FakeHub) -> None:  # type: ignore[no-untyped-def]
    slurm = FakeScron()

    async def away(user: str) -> str:
        raise SchedulerUnavailable("slurmctld does not answer")

    slurm.read_crontab = away  # type: ignore[method-assign]
    sched = make(slurm, VirtualClock())
    with pytest.raises(SchedulerError, match="cannot be asked"):
        await sched.create_job_definition(definition())
    assert fake_hub.calls == [] and definition_rows(sched) == []


async def test_a_definition_the_hub_refuses_stores_nothing(make, home: Path,
                                                           fake_hub: FakeHub) -> None:
    slurm = FakeScron()
    slurm.read_crontab = _refuse  # type: ignore[method-assign]
    fake_hub.answer = (403, b'{"status": 403, "message": "the hub does not act as alice"}')
    sched = make(slurm, VirtualClock())
    with pytest.raises(Refused, match="the schedule was not changed: the hub does not act"):
        await sched.create_job_definition(definition())
    assert not _definition_files(home) and definition_rows(sched) == []
    assert [c[0] for c in fake_hub.calls] == ["PUT", "DELETE"]  # the rollback asks too


def test_on_pbs_the_hub_submits_the_same_launcher_as_a_pbs_job() -> None:
    from hpcbridge.profiles import load_profile, render_script

    profile = load_profile(Path(__file__).resolve().parents[2] / "site_profiles"
                           / "example-pbspro.yaml")
    cluster = profile.clusters["derecho"].model_copy(update={"recurring": "hub"})
    profile = profile.model_copy(update={"clusters": {"derecho": cluster}})
    entry = hubcron.parse_entry({**BODY, "cluster": "derecho", "compute_type": None,
                                 "options": {"partition": "develop"}}, "alice", DEF_ID, 0.0)
    script = render_script(profile, hubcron.launcher_for(profile, entry))
    assert "#PBS -N hpcb-cron" in script and "#PBS -l select=1:ncpus=1:mem=1gb" in script
    assert script.rstrip().endswith("exec /opt/venv/bin/python -m hpcbridge.batch.recurring "
                                    "/home/alice/jobs/recurring/sq")

"""The warm pool's bookkeeping and the node-side launcher, without a cluster.

The pool runs against a recording stand-in for the site (transport, submit, poller); its
behaviour on the real scheduler is in tests/testbed/test_spawner_warm.py.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from hpcbridge.errors import IdentityRefused
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.profiles import JobRequest, validate_request
from slurm_testbed.profiles import load_bundled_profile
from hpcbridge.profiles.loader import load_profile_text
from hpcbridge.spawner import launch, warm
from hpcbridge.spawner.api import parse_warm_body

WARM = {"presets": ["debug"], "per_user": 1, "max_jobs": 3, "max_idle": "00:05:00"}


class Recorder:
    """Transport + client + poller of one cluster, recording what the pool asks."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.folders: list[str] = []
        self.scripts: list[tuple[str, str]] = []
        self.tracked: dict[str, str] = {}
        self.subscribers: list = []

    async def stage_private_file(self, user: str, folder: str, content: bytes,
                                 prefix: str = "env.", also=()) -> str:
        self.folders.extend(also)
        path = f"{folder}/{prefix}{len(self.files):010d}"
        self.files[path] = content
        return path

    async def remove_file(self, user, path) -> None:
        self.files.pop(path, None)

    async def submit(self, user: str, script: str) -> str:
        self.scripts.append((user, script))
        return str(1000 + len(self.scripts))

    def subscribe(self, callback, job_id=None):  # offers every change, as with none
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def track(self, job_id, user=None, wake=True) -> None:
        self.tracked[job_id] = user

    def untrack(self, job_id) -> None:
        self.tracked.pop(job_id, None)

    def end(self, job_id: str, state: JobState = JobState.COMPLETED) -> None:
        info = JobInfo(job_id=job_id, state=state)
        for callback in list(self.subscribers):
            callback(SimpleNamespace(job_id=job_id, previous=None, current=info))


class Identity:
    """Refuses the names given, as hpcbridge/identity.py refuses system accounts."""

    def __init__(self, refused: tuple[str, ...] = ()) -> None:
        self.refused = set(refused)

    async def check(self, cluster, user: str) -> None:
        if user in self.refused:
            raise IdentityRefused(f"the hub does not act as {user!r}: a system account")


def site(pool_settings: dict | None = WARM, refused: tuple[str, ...] = ()):
    profile = load_bundled_profile("testbed", {})
    if pool_settings is not None:
        profile = profile.model_copy(update={"hub": profile.hub.model_copy(update={
            "warm_pool": type(profile.hub.warm_pool).model_validate(pool_settings)})})
    rec = Recorder()
    return SimpleNamespace(profile=profile, client=lambda name=None: rec,
                           poller=lambda name=None: rec, identity=Identity(refused)), rec


def request(user: str, **options) -> object:
    return validate_request(load_bundled_profile("testbed", {}),
                            JobRequest.from_options(options, user=user))


def run(coro):
    return asyncio.run(coro)


def test_fill_submits_per_user_jobs_as_the_user_with_a_private_secret_file():
    async def go():
        s, rec = site()
        pool = warm.WarmPool(s)
        made = await pool.fill("alice", "http://hub:8081/hub/api")
        again = await pool.fill("alice", "http://hub:8081/hub/api")  # already has one
        return pool, rec, made, again

    _, rec, made, again = run(go())
    assert len(made) == 1 and again == []
    (user, script), = rec.scripts
    assert user == "alice"
    assert "--job-name=hpcb-warm-alice-debug" in script and "--partition=debug" in script
    assert "-m hpcbridge.spawner.launch --warm /home/alice/.hpcbridge/env." in script
    # the job's log folder is made with the env file's, before the job is submitted
    assert "#SBATCH --output=/home/alice/.hpcbridge/logs/%x-%j.log" in script
    assert rec.folders == ["/home/alice/.hpcbridge/logs"]
    doc = json.loads(next(iter(rec.files.values())))
    assert doc["HPCBRIDGE_WARM_ID"] == made[0].warm_id
    secret = doc["HPCBRIDGE_WARM_SECRET"]
    assert len(secret) >= 40 and secret not in script
    assert made[0].secret_digest != secret
    assert rec.tracked == {made[0].job_id: "alice"}


def test_no_warm_job_for_a_refused_identity():
    async def go():
        s, rec = site(refused=("hpcbridge",))
        return rec, await warm.WarmPool(s).fill("hpcbridge", "http://hub/hub/api")

    rec, made = run(go())
    assert made == [] and rec.scripts == [] and rec.files == {}


def test_site_bound_and_disabled_pool():
    async def go():
        s, rec = site()
        pool = warm.WarmPool(s)
        for user in ("alice", "bob", "carol", "dave"):
            await pool.fill(user, "http://hub/hub/api")
        off = warm.WarmPool(site({})[0])
        return pool, rec, off, await off.fill("alice", "http://hub/hub/api")

    pool, rec, off, none = run(go())
    assert len(rec.scripts) == 3 and len(pool.waiting()) == 3  # max_jobs: 3
    assert not off.enabled and none == []


def test_take_matches_the_same_job_of_the_same_user_only():
    async def go():
        s, _ = site()
        pool = warm.WarmPool(s)
        (alice,) = await pool.fill("alice", "u")
        (bob,) = await pool.fill("bob", "u")
        return pool, alice, bob

    pool, alice, bob = run(go())
    assert pool.take("carol", request("carol", preset="debug")) is None
    assert pool.take("alice", request("alice", preset="debug", cores=2)) is None
    assert pool.take("alice", request("alice", preset="small")) is None
    # the same job spelled out field by field is the same job
    same = request("alice", partition="debug", cores=1, memory="2G", walltime="00:30:00")
    assert pool.take("alice", same) is alice
    assert pool.take("alice", request("alice", preset="debug")) is None  # taken already
    assert pool.take("bob", request("bob", preset="debug")) is bob


async def one_warm_job(user: str):
    """A pool with one warm job of ``user``, and the secret its env file holds."""
    s, rec = site()
    pool = warm.WarmPool(s)
    (job,) = await pool.fill(user, "u")
    secret = json.loads(next(iter(rec.files.values())))["HPCBRIDGE_WARM_SECRET"]
    return pool, rec, job, secret


def test_long_poll_needs_the_secret_and_hands_over_the_environment():
    async def go():
        pool, _, job, secret = await one_warm_job("alice")
        with pytest.raises(warm.UnknownWarmJob):
            await pool.wait_for_owner(job.warm_id, "wrong")
        with pytest.raises(warm.UnknownWarmJob):
            await pool.wait_for_owner("nope", secret)
        assert await pool.wait_for_owner(job.warm_id, secret, hold=0.01) is None
        waiting = asyncio.ensure_future(pool.wait_for_owner(job.warm_id, secret, hold=5))
        await asyncio.sleep(0)  # the poll starts and waits
        assert job.connected
        taken = pool.take("alice", request("alice", preset="debug"))
        pool.hand_over(taken, {"JUPYTERHUB_API_TOKEN": "tok"})
        env = await waiting
        with pytest.raises(warm.UnknownWarmJob):  # handed over once, then gone
            await warm.wait_for_owner(job.warm_id, secret)
        return env

    assert run(go()) == {"JUPYTERHUB_API_TOKEN": "tok"}


def test_a_warm_job_that_ends_leaves_the_pool_and_its_poll_is_told_to_stop():
    async def go():
        pool, rec, job, secret = await one_warm_job("alice")
        waiting = asyncio.ensure_future(pool.wait_for_owner(job.warm_id, secret, hold=5))
        await asyncio.sleep(0)  # the poll starts and waits
        rec.end(job.job_id, JobState.TIMEOUT)
        with pytest.raises(warm.UnknownWarmJob):
            await waiting
        return pool, rec

    pool, rec = run(go())
    assert pool.jobs == {} and rec.tracked == {}


def test_profile_checks_the_warm_pool():
    from hpcbridge.errors import ProfileError
    from slurm_testbed.profiles import bundled_profile_text

    assert load_bundled_profile("testbed", {}).hub.warm_pool.presets == []  # off by default

    def problems(settings: str) -> str:
        text = bundled_profile_text("testbed").replace("\nhub:\n", f"\nhub:\n{settings}", 1)
        with pytest.raises(ProfileError) as err:
            load_profile_text(text, "site.yaml", env={})
        return str(err.value)

    message = problems('  warm_pool:\n    presets: [debgu, debug]\n    max_idle: "00:30:00"\n')
    assert "site.yaml:" in message and "no such preset 'debgu'" in message
    assert "max_idle 00:30:00 is not less than preset 'debug' walltime 00:30:00" in message
    message = problems("  warm_pool:\n    presets: [debug]\n    identity: pool\n")
    assert "hub.warm_pool.identity: 'pool' is not allowed" in message
    message = problems("  warm_pool:\n    presets: [debug]\n    per_user: 9\n")
    assert "hub.warm_pool.per_user" in message


@pytest.mark.parametrize("body", [None, [], {"id": "a"}, {"id": "a", "secret": 1},
                                  {"id": "a", "secret": "b", "port": 1}, {"id": "", "secret": "b"},
                                  {"id": "a" * 65, "secret": "b"}])
def test_warm_poll_body_is_exactly_id_and_secret(body):
    with pytest.raises(ValueError):
        parse_warm_body(body)


def test_port_report_retries_while_the_hub_is_away_and_stops_on_refusal():
    answers = [OSError("refused"), (503, b""), (201, b"{}")]
    sent = []

    def post(url, body, headers, timeout):
        sent.append((url, body, headers))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    launch.report_port("http://hub/hub/api/", "tok", 40000, post=post, sleep=lambda s: None)
    assert [s[0] for s in sent] == ["http://hub/hub/api/batchspawner"] * 3
    assert sent[0][1] == {"port": 40000} and sent[0][2] == {"Authorization": "token tok"}

    with pytest.raises(SystemExit, match="HTTP 400"):
        launch.report_port("http://hub/hub/api", "tok", 40000,
                           post=lambda *a: (400, b"bad"), sleep=lambda s: None)
    with pytest.raises(SystemExit, match=r"unreachable|HTTP 0"):
        launch.report_port("http://hub/hub/api", "tok", 40000, patience=-1,
                           post=lambda *a: (_ for _ in ()).throw(OSError("down")),
                           sleep=lambda s: None)


def test_warm_launcher_waits_then_takes_the_environment_or_ends():
    answers = [(204, b""), OSError("hub restarting"), (200, b'{"env": {"A": "1"}}')]

    def post(url, body, headers, timeout):
        assert url == "http://hub/hub/api/hpcbridge/warm"
        assert body == {"id": "w", "secret": "s"} and headers == {}
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert launch.wait_for_owner("http://hub/hub/api", "w", "s", 60, post=post,
                                 sleep=lambda s: None) == {"A": "1"}
    assert launch.wait_for_owner("http://hub/hub/api", "w", "s", 60,
                                 post=lambda *a: (410, b""), sleep=lambda s: None) is None
    assert launch.wait_for_owner("http://hub/hub/api", "w", "s", 0,
                                 post=lambda *a: (204, b""), sleep=lambda s: None) is None


def test_service_url_gets_the_reported_port():
    env = {"JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:0/user/alice/"}
    launch.set_service_port(env, 41234)
    assert env["JUPYTERHUB_SERVICE_URL"] == "http://0.0.0.0:41234/user/alice/"

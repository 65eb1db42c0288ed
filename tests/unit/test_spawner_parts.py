"""Pure parts of the spawner: port-callback bodies, job environment, form, re-attach."""

from __future__ import annotations

import asyncio
import json

import pytest

from slurm_testbed.profiles import load_bundled_profile
from hpcbridge.schedulers import PbsDialect, SlurmDialect
from hpcbridge.spawner import form, jobenv
from hpcbridge.spawner.api import parse_port_body
from hpcbridge.spawner.reattach import detached_servers, referenced_jobs


@pytest.mark.parametrize("body", [
    {"port": 5555, "batch_query_cmd": "id"}, {"batch_query_cmd": "id"}, {"port": "5555"},
    {"port": 5555.0}, {"port": True}, {"port": 80}, {"port": 70000}, [5555], None, "5555",
    {"port": 5555, "ip": "1.2.3.4"}, {},
])
def test_port_body_accepts_only_a_port(body):
    with pytest.raises(ValueError):
        parse_port_body(body)


def test_port_body_ok():
    assert parse_port_body({"port": 40123}) == 40123


def test_env_document_drops_the_hubs_paths_and_keeps_the_token():
    doc = json.loads(jobenv.env_document({"PATH": "/hub/bin", "JUPYTERHUB_API_TOKEN": "t",
                                          "PYTHONPATH": "/x", "JUPYTERHUB_USER": "alice"}))
    assert doc == {"JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_USER": "alice"}


def test_job_names_are_scheduler_safe():
    assert jobenv.job_name("alice", "") == "hpcb-nb-alice"
    assert jobenv.job_name("a@b.c", "my server;rm") == "hpcb-nb-a_b.c-my_server_rm"


def test_a_tagged_hubs_jobs_and_an_untagged_hubs_never_share_a_prefix():
    tagged = jobenv.job_name("alice", "", "test")
    assert tagged == "hpcb-nb.test-alice" and tagged.startswith(jobenv.job_prefix("test"))
    assert not tagged.startswith(jobenv.job_prefix(""))
    assert not jobenv.job_name("alice", "").startswith(jobenv.job_prefix("test"))
    assert jobenv.job_prefix("a b;c") == "hpcb-nb.a_b_c-"


def test_launch_command_names_only_the_file():
    cmd = jobenv.launch_command("/home/alice/.hpcbridge/env.X")
    assert cmd == ("python", "-m", "hpcbridge.spawner.launch", "/home/alice/.hpcbridge/env.X")


def test_form_escapes_and_lists_partitions_and_accounts():
    html = form.render(load_bundled_profile("testbed", {}), "alice", accounts=["proj_a"],
                       last_end="node fail (<b>)")
    assert 'value="debug"' in html and 'value="gpu"' in html
    assert 'value="proj_a"' in html
    assert "&lt;b&gt;" in html and "<b>" not in html


def test_form_data_to_options_keeps_unknown_fields_for_refusal():
    opts = form.options_from_form({"partition": ["debug"], "cores": [""], "cmd": ["id"]})
    assert opts == {"partition": "debug", "cmd": "id"}


def test_detached_servers_and_referenced_jobs():
    users = [{"name": "alice", "servers": {
        "": {"ready": True, "state": {"job_id": "1"}},
        "second": {"ready": False, "pending": None, "state": {"job_id": "2"}},
        "third": {"ready": False, "pending": "spawn", "state": {"job_id": "3"}},
        "old": {"ready": False, "pending": None, "state": {}},
    }}]
    assert list(detached_servers(users)) == [("alice", "second", "2")]
    assert referenced_jobs(users, "tb") == {("tb", "1"), ("tb", "2"), ("tb", "3")}


def test_active_jobs_parsers_keep_only_the_names_asked_for():
    names = {"hpcb-nb-alice", "hpcb-nb-bob"}
    jobs = SlurmDialect().parse_active_jobs("12|alice|RUNNING|hpcb-nb-alice|x\nbad line\n"
                                            "13|alice|RUNNING|hpcb-nb-alice\n", names)
    assert [(j.job_id, j.user, j.name) for j in jobs] == [("13", "alice", "hpcb-nb-alice")]
    pbs = PbsDialect().parse_active_jobs(
        "Job Id: 7.server\n    Job_Name = hpcb-nb-bob\n    Job_Owner = bob@login\n"
        "    job_state = Q\n", names)
    assert [(j.job_id, j.user, j.name) for j in pbs] == [("7.server", "bob", "hpcb-nb-bob")]


class _Poller:
    woken = 0

    def wake(self) -> None:
        self.woken += 1


def _reattached_spawner(job_token: str, hub_token: str):
    from types import SimpleNamespace

    from hpcbridge.spawner.spawner import HpcSpawner

    spawner = HpcSpawner(user=SimpleNamespace(name="alice"))
    spawner.job_id, spawner.api_token = "7", hub_token
    spawner.token_digest = jobenv.token_digest(job_token)
    poller = _Poller()
    spawner._poller = lambda: poller
    return spawner, poller


def test_port_is_taken_only_with_the_jobs_token_while_a_start_waits():
    async def body():
        spawner, poller = _reattached_spawner("job-token", "new-token")
        assert not spawner.accepts_port_from("job-token")  # no start under way
        spawner._port = asyncio.get_running_loop().create_future()
        for other in ("new-token", "", None, "job-token "):
            assert not spawner.accepts_port_from(other)
        assert spawner.accepts_port_from("job-token")
        spawner.port_reported(40123, "job-token")
        assert spawner._port.result() == 40123 and spawner.reported_port == 40123
        assert poller.woken == 1
        assert not spawner.accepts_port_from("job-token")  # once
        return spawner

    # the job's token is the server's again: JupyterHub re-registers its OAuth client with it
    assert asyncio.run(body()).api_token == "job-token"


def test_a_fresh_start_keeps_the_token_jupyterhub_made():
    async def body():
        spawner, _ = _reattached_spawner("same", "same")
        spawner._port = asyncio.get_running_loop().create_future()
        spawner.port_reported(40123, "same")
        return spawner

    assert asyncio.run(body()).api_token == "same"


def test_a_job_waiting_for_reattach_is_told_to_retry_only_with_its_own_token():
    from types import SimpleNamespace

    from hpcbridge.spawner.api import _awaits_reattach

    def user(**states):
        spawners = {name: SimpleNamespace(state=state) for name, state in states.items()}
        return SimpleNamespace(orm_user=SimpleNamespace(orm_spawners=spawners))

    digest = jobenv.token_digest("t")
    assert _awaits_reattach(user(a={"job_id": "1", "token_digest": digest}), "t")
    assert not _awaits_reattach(user(a={"job_id": "1", "token_digest": digest}), "u")
    assert not _awaits_reattach(user(a={"token_digest": digest, "reported_port": 4000}), "t")
    assert not _awaits_reattach(user(a=None, b={}), "t")
    assert not _awaits_reattach(user(a={"token_digest": digest}), "")


def test_the_oauth_client_gets_the_jobs_token_with_the_port_in_one_commit():
    from types import SimpleNamespace

    from jupyterhub.utils import compare_token, hash_token

    async def body():
        spawner, _ = _reattached_spawner("job-token", "new-token")
        client = SimpleNamespace(secret=hash_token("new-token"))
        spawner.orm_spawner = SimpleNamespace(name="", server=None, oauth_client=client)
        saved = []
        spawner._save_state_now = lambda: saved.append(
            (spawner.reported_port, compare_token(client.secret, "job-token")))
        spawner._port = asyncio.get_running_loop().create_future()
        spawner.port_reported(40123, "job-token")
        return saved

    # a hub killed after this finds a server whose OAuth client matches its token
    assert asyncio.run(body()) == [(40123, True)]


def test_get_url_finds_a_server_whose_start_the_hub_did_not_see_end():
    from types import SimpleNamespace

    def spawner_with(server_port: int):
        spawner, _ = _reattached_spawner("t", "t")
        spawner.load_state({"job_id": "7", "node": "c1", "reported_port": 40123,
                            "token_digest": jobenv.token_digest("t")})
        spawner.server = SimpleNamespace(port=server_port, url=f"http://vm:{server_port}/")

        async def address():
            return "10.0.0.5"

        spawner._node_address = address
        return spawner

    assert asyncio.run(spawner_with(56265).get_url()) == "http://10.0.0.5:40123"
    assert asyncio.run(spawner_with(40123).get_url()) == "http://vm:40123/"


def _hub_db():
    """JupyterHub's own database schema, in memory: alice with a server and two tokens."""
    from jupyterhub import orm

    db = orm.new_session_factory("sqlite://")()
    alice, bob = orm.User(name="alice"), orm.User(name="bob")
    db.add_all([alice, bob, orm.OAuthClient(identifier="jupyterhub")])
    db.commit()
    server = orm.Spawner(name="", user=alice)
    db.add(server)
    db.commit()
    return db, alice, bob, server


def test_the_jobs_token_is_revoked_when_the_job_is_dropped_after_a_restart():
    from types import SimpleNamespace

    from jupyterhub import orm

    db, alice, _, server = _hub_db()
    job_token = alice.new_api_token(note="Server at /user/alice/", scopes=[])
    spawner, _ = _reattached_spawner("x", "x")
    spawner.orm_spawner, spawner.user = server, SimpleNamespace(name="alice")
    spawner.api_token = job_token
    spawner.token_digest = jobenv.token_digest(job_token)  # as start() does at submit
    row_id = orm.APIToken.find(db, job_token).id
    assert spawner.get_state()["token_id"] == row_id
    # a restart rebuilds the spawner from its state, without the token
    spawner.load_state(spawner.get_state())
    spawner.api_token = ""
    spawner.clear_state()  # JupyterHub's stop of a server whose job ended
    assert db.get(orm.APIToken, row_id) is None


def test_revoking_spares_this_starts_token_and_other_users_tokens():
    from types import SimpleNamespace

    from jupyterhub import orm

    db, alice, bob, server = _hub_db()
    spawner, _ = _reattached_spawner("x", "x")
    spawner.orm_spawner, spawner.user = server, SimpleNamespace(name="alice")
    current = alice.new_api_token(scopes=[])
    spawner.api_token = current
    spawner.token_id = orm.APIToken.find(db, current).id
    spawner._revoke_job_token()
    assert orm.APIToken.find(db, current) is not None
    bobs = bob.new_api_token(scopes=[])
    spawner.token_id = orm.APIToken.find(db, bobs).id
    spawner._revoke_job_token()
    assert orm.APIToken.find(db, bobs) is not None


class _Row:
    server = None
    state = None


class _Session:
    def __init__(self) -> None:
        self.deleted: list = []

    def delete(self, row) -> None:
        self.deleted.append(row)

    def commit(self) -> None:
        pass


def _refused_named(monkeypatch, **overrides):
    """A spawner of a named server whose REST spawn was refused, and its session."""
    from types import SimpleNamespace

    from jupyterhub.apihandlers.base import APIHandler

    from hpcbridge.spawner import guard

    session = _Session()
    monkeypatch.setattr(guard, "object_session", lambda row: session)
    row = _Row()
    user = SimpleNamespace(spawners={}, orm_spawners={"r": row})
    spawner = SimpleNamespace(name="r", accepted_options=None, last_end=None,
                              handler=APIHandler.__new__(APIHandler), _spawn_future=None,
                              user=user, orm_spawner=row, active=False, _log_name="alice:r",
                              log=SimpleNamespace(info=lambda *a: None))
    for key, value in overrides.items():
        setattr(spawner, key, value)
    user.spawners["r"] = spawner
    return spawner, session


@pytest.mark.parametrize("case, removed", [
    ("new", True), ("default server", False), ("ran before", False), ("ended before", False),
    ("form", False), ("in use again", False), ("replaced", False)])
def test_a_refused_rest_spawn_removes_only_a_named_server_that_never_ran(
        monkeypatch, case, removed):
    from hpcbridge.spawner import guard

    overrides = {"default server": {"name": ""}, "ran before": {"accepted_options": {}},
                 "ended before": {"last_end": "TIMEOUT"}, "form": {"handler": object()}
                 }.get(case, {})

    async def refuse() -> list:
        spawner, session = _refused_named(monkeypatch, **overrides)
        spawner._spawn_future = asyncio.get_running_loop().create_future()
        guard.forget_unused_server(spawner)
        if case == "in use again":  # a request after the refusal started it again
            spawner.active = True
        if case == "replaced":  # JupyterHub replaced the failed spawner with a new one
            spawner.user.spawners["r"] = object()
        spawner._spawn_future.set_exception(guard.Refusal(400, "64 cores: at most 8"))
        await asyncio.sleep(0)
        return session.deleted

    assert bool(asyncio.run(refuse())) is removed


def test_a_port_reported_to_this_start_while_it_asks_the_scheduler_is_kept():
    """After a hub restart the queued job starts and reports its port (with its token)
    while the re-attaching start still waits for the scheduler's answer: the job is this
    start's, not one whose port an earlier start took (seen live: it was cancelled)."""
    from hpcbridge.jobs import JobInfo, JobState
    from hpcbridge.spawner import adopt

    async def body():
        spawner, _ = _reattached_spawner("job-token", "new-token")
        spawner._port = asyncio.get_running_loop().create_future()

        async def fresh_info():
            spawner.port_reported(40123, "job-token")  # the callback, during the await
            return JobInfo("7", JobState.RUNNING, nodes=("c1",))

        spawner._fresh_info = fresh_info
        return await adopt.reattachable(spawner), spawner

    kept, spawner = asyncio.run(body())
    assert kept and spawner.job_id == "7" and spawner._port.result() == 40123

"""Hostile input, pure parts: forged scheduler output, hub users named like system
accounts, hostile bodies and values, refused options, private hub files. The same
attacks against a real hub are in tests/testbed/test_hostile_input.py."""

from __future__ import annotations

import asyncio
import getpass
import json
import stat
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
from tornado import web

from hpcbridge.client import SchedulerClient
from hpcbridge.errors import IdentityRefused, RequestError, quote
from hpcbridge.hubrun import make_private
from hpcbridge.identity import IdentityGate, account_refusal, parse_passwd
from hpcbridge.profiles import JobRequest, validate_request
from slurm_testbed.profiles import load_bundled_profile
from hpcbridge.schedulers import PbsDialect, SlurmDialect
from hpcbridge.site import Site
from hpcbridge.spawner import guard
from hpcbridge.spawner.api import json_body, nesting_depth, parse_port_body
from hpcbridge.spawner.reattach import owned_jobs, sweep_orphans
from hpcbridge.transport.base import Result

PASSWD = {
    "alice": "alice:x:2001:2000::/home/alice:/bin/bash",
    "bob": "bob:x:2002:2000::/home/bob:/bin/bash",
    "carol": "carol:x:2003:2000::/home/carol:/bin/bash",
    "hpcbridge": "hpcbridge:x:2100:2000::/var/lib/hpcbridge:/bin/bash",
    "slurm": "slurm:x:64030:64030::/nonexistent:/usr/sbin/nologin",
    "daemon": "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
    "lp": "lp:x:7:7:lp:/var/spool/lpd:/bin/bash",
}


class LoginNode:
    """Slurm and getent as the testbed's login node answers them: squeue prints only jobs
    named exactly one of ``--name`` (as it does, checked on the testbed)."""

    def __init__(self, jobs: Sequence[tuple[str, str, str]] = ()) -> None:
        self.jobs = list(jobs)  # (id, user, name)
        self.calls: list[tuple[tuple[str, ...], str | None]] = []

    async def run(self, argv: Sequence[str], *, user: str | None = None,
                  stdin: bytes | None = None, timeout: float | None = None) -> Result:
        self.calls.append((tuple(argv), user))
        if argv[0] == "getent":
            keys = [a for a in argv[2:] if a != "--"]
            lines = [PASSWD[u] for u in keys if u in PASSWD]
            return Result(0 if len(lines) == len(keys) else 2, "\n".join(lines), "")
        if argv[0] == "squeue":
            names = next(a for a in argv if a.startswith("--name=")).split("=", 1)[1]
            wanted = names.split(",")
            out = "".join(f"{j}|{u}|RUNNING|{n}\n" for j, u, n in self.jobs if n in wanted)
            return Result(0, out, "")
        return Result(0, "", "")

    async def close(self) -> None:
        pass

    def cancels(self) -> list[tuple[str | None, tuple[str, ...]]]:
        return [(user, argv[2:]) for argv, user in self.calls if argv[0] == "scancel"]


def site_on(node: LoginNode) -> Site:
    site = Site(load_bundled_profile("testbed", {}))
    site._clients["tb"] = SchedulerClient(SlurmDialect(), node)
    return site


# -- 1. forged scheduler output ---------------------------------------------------------

def test_slurm_asks_for_the_hubs_exact_names_in_chunks() -> None:
    names = [f"hpcb-nb-user{i}" for i in range(250)]
    commands = SlurmDialect().active_jobs_commands(names)
    assert len(commands) == 3
    assert all(c.argv[-1] == "--format=%A|%u|%T|%j" for c in commands)
    asked = [n for c in commands for n in c.argv[-2].removeprefix("--name=").split(",")]
    assert asked == names
    with pytest.raises(ValueError):
        SlurmDialect().active_jobs_commands(["hpcb-nb-bob,x"])
    with pytest.raises(ValueError):
        SlurmDialect().active_jobs_commands(["x\n1|bob|RUNNING|hpcb-nb-bob"])


def test_slurm_active_jobs_keep_only_the_names_asked_for() -> None:
    out = "12|alice|RUNNING|hpcb-nb-alice\n13|bob|RUNNING|hpcb-nb-bob|x\nbad line\n"
    jobs = SlurmDialect().parse_active_jobs(out, {"hpcb-nb-alice", "hpcb-nb-bob"})
    assert [(j.job_id, j.user, j.name) for j in jobs] == [("12", "alice", "hpcb-nb-alice")]


def test_owned_jobs_are_the_hubs_users_and_servers() -> None:
    users = [{"name": "alice", "servers": {"": {}, "second": {}}}, {"name": "bob"}]
    assert owned_jobs(users) == {("alice", "hpcb-nb-alice"), ("alice", "hpcb-nb-alice-second"),
                                 ("bob", "hpcb-nb-bob")}
    assert owned_jobs(users[1:], "t") == {("bob", "hpcb-nb.t-bob")}


def test_the_sweep_cancels_only_the_hubs_own_orphans() -> None:
    forged = "x\n2|bob|RUNNING|hpcb-nb-bob\n3|bob|RUNNING|hpcb-nb-bob"
    node = LoginNode([
        ("1", "alice", forged),              # alice's job: its name forges two records
        ("2", "bob", "analysis"),            # bob's batch job
        ("3", "bob", "hpcb-nb-bob"),         # bob's server's job
        ("4", "carol", "hpcb-nb-carol"),     # an orphan of the hub
        ("5", "alice", "hpcb-nb-bob"),       # alice's job with bob's notebook name
        ("6", "hpcbridge", "hpcb-nb-hpcbridge"),  # of a hub user the hub never acts as
    ])
    users = [{"name": "alice"}, {"name": "bob", "servers": {"": {"state": {"job_id": "3"}}}},
             {"name": "carol"}, {"name": "hpcbridge"}]
    site = site_on(node)
    cancelled = asyncio.run(sweep_orphans(site, users, lambda: users))
    assert cancelled == ["4"] and node.cancels() == [("carol", ("4",))]
    getents = [argv for argv, user in node.calls if argv[0] == "getent"]
    assert getents == [("getent", "passwd", "--", "alice", "bob", "carol")]  # one lookup
    squeues = [(argv, user) for argv, user in node.calls if argv[0] == "squeue"]
    assert [user for _, user in squeues] == ["hpcbridge"]  # the status user asks
    assert "hpcb-nb-hpcbridge" not in squeues[0][0][-2]


class PbsNode:
    """qstat -f lists every job; qstat -f ID only that one."""

    def __init__(self, listing: str, alone: dict[str, str]) -> None:
        self.listing, self.alone = listing, alone

    async def run(self, argv: Sequence[str], *, user: str | None = None,
                  stdin: bytes | None = None, timeout: float | None = None) -> Result:
        if list(argv) == ["qstat", "-f"]:
            return Result(0, self.listing, "")
        return Result(0, "".join(self.alone.get(j, "") for j in argv[2:]), "")

    async def close(self) -> None:
        pass


def test_pbs_matches_are_confirmed_by_a_query_of_that_job_alone() -> None:
    bob_hidden = "Job Id:\t5\n\tJob_Name = analysis\n\tJob_Owner = bob@l\n\tjob_state = R\n"
    carol = "Job Id:\t8\n\tJob_Name = hpcb-nb-carol\n\tJob_Owner = carol@l\n\tjob_state = Q\n"
    # bob's job 5 is not in the listing (not visible to the status user); alice's job 6
    # has a name that makes up a block for 5
    listing = ("Job Id:\t6\n\tJob_Name = x\n"
               "Job Id:\t5\n\tJob_Name = hpcb-nb-bob\n\tJob_Owner = bob@l\n\tjob_state = R\n"
               + carol)
    client = SchedulerClient(PbsDialect(), PbsNode(listing, {"5": bob_hidden, "8": carol}))
    jobs = asyncio.run(client.active_jobs(["hpcb-nb-bob", "hpcb-nb-carol"]))
    assert [(j.job_id, j.user, j.name) for j in jobs] == [("8", "carol", "hpcb-nb-carol")]


# -- 5. identity ------------------------------------------------------------------------

def test_passwd_entries_match_the_name_exactly() -> None:
    root = "root:x:0:0:root:/root:/bin/bash"
    assert parse_passwd(root, "0") is None  # getent passwd 0 answers with root
    assert parse_passwd(PASSWD["alice"], "alice").uid == 2001  # type: ignore[union-attr]
    cluster = load_bundled_profile("testbed", {}).clusters["tb"]
    lp = parse_passwd(PASSWD["lp"], "lp")
    assert "min_uid 1000" in (account_refusal("tb", cluster, "lp", lp) or "")
    assert "nologin" in (account_refusal("tb", cluster, "slurm",
                                         parse_passwd(PASSWD["slurm"], "slurm")) or "")
    assert "knows no account" in (account_refusal("tb", cluster, "dave", None) or "")


@pytest.mark.parametrize("user, rule, asks", [
    ("hpcbridge", "status_user", False),
    ("root", "system account", False),
    ("nobody", "system account", False),
    ("hubuser", "own account", False),
    ("0", "not a valid user name", False),
    ("dave", "knows no account", True),
    ("slurm", "nologin", True),
    ("daemon", "min_uid", True),
    ("Robert'); --", "not a valid user name", False),
])
def test_identities_the_hub_never_acts_as(monkeypatch, user: str, rule: str,
                                          asks: bool) -> None:
    monkeypatch.setattr(getpass, "getuser", lambda: "hubuser")  # the hub process's account
    node = LoginNode()
    site = site_on(node)
    with pytest.raises(IdentityRefused, match=rule):
        asyncio.run(site.identity.check("tb", user))
    # nothing ran as the user; only the name rules' passes ask getent, as the status user
    assert [u for _, u in node.calls] == (["hpcbridge"] if asks else [])


def test_an_ordinary_user_passes_once_and_is_remembered() -> None:
    node = LoginNode()
    site = site_on(node)

    async def twice() -> None:
        await site.identity.check("tb", "alice")
        await site.identity.check(None, "alice")

    asyncio.run(twice())
    assert node.calls == [(("getent", "passwd", "--", "alice"), "hpcbridge")]
    gate = IdentityGate(site, ttl=0)
    assert asyncio.run(gate.allowed("tb", "bob")) and not asyncio.run(gate.allowed("tb", "lp"))


def test_a_spawn_for_a_refused_identity_is_http_403() -> None:
    site = site_on(LoginNode())
    with pytest.raises(web.HTTPError) as info:
        asyncio.run(guard.check_identity(site, None, "hpcbridge"))
    assert info.value.status_code == 403 and "status_user" in str(info.value)
    assert info.value.log_message is None  # JupyterHub logs str(); tornado would repeat it
    assert guard.name_refused(site, None, "root") and not guard.name_refused(site, None, "bob")


# -- 6. hostile bodies and values ---------------------------------------------------------

def test_nesting_depth_ignores_brackets_in_strings() -> None:
    assert nesting_depth(b'{"port": 1}') == 1
    assert nesting_depth(b'{"a": "[[[[\\"[[["}') == 1
    assert nesting_depth(b"[" * 5000 + b"]" * 5000) == 5000


@pytest.mark.parametrize("raw, status", [
    (b"[" * 2000 + b"]" * 2000, 400),
    (b"[" * 5000 + b"]" * 5000, 413),
    (b'{"port": "' + b"7" * 10_000 + b'"}', 413),
    (b'{"port": \xff}', 400),
    (b"{not json", 400),
])
def test_hostile_bodies_are_refused_before_parsing(raw: bytes, status: int) -> None:
    with pytest.raises(web.HTTPError) as info:
        json_body(raw)
    assert info.value.status_code == status and len(info.value.log_message or "") < 100


def test_a_bad_port_is_quoted_briefly() -> None:
    with pytest.raises(ValueError) as info:
        parse_port_body(json.loads('{"port": "' + "9" * 3000 + '"}'))
    assert len(str(info.value)) < 150


def test_quote_is_short_for_any_value() -> None:
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    for value in ("x" * 10**6, deep, {"k" * 10**5: 1}, 10**500):
        assert len(quote(value)) < 100


@pytest.mark.parametrize("options", [
    {"memory": "4G" + "$" * 10**6}, {"x" * 10**6: 1}, {f"k{i}": 1 for i in range(10**4)},
    {"partition": "p" * 10**6}, {"walltime": "1" * 10**6}, {"cores": "9" * 10**6},
    {"preset": "q" * 10**6}, {"environment": ["x"] * 10**5},
])
def test_the_request_gate_quotes_a_short_prefix(options: dict) -> None:
    profile = load_bundled_profile("testbed", {})
    with pytest.raises(RequestError) as info:
        validate_request(profile, JobRequest.from_options(options, user="alice"))
    assert len(str(info.value)) < 400, str(info.value)[:500]


# -- 7. private hub state -----------------------------------------------------------------

def test_make_private_fixes_an_existing_folder(tmp_path) -> None:
    folder = tmp_path / "hub"
    (folder / "sub").mkdir(parents=True)
    for name in ("jupyterhub.sqlite", "sub/x"):
        (folder / name).write_text("x")
        (folder / name).chmod(0o644)
    folder.chmod(0o755)
    make_private(folder)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.rglob("*")]}
    assert modes == {"hub": 0o700, "sub": 0o700, "jupyterhub.sqlite": 0o600, "x": 0o600}


# -- 8. refused options -------------------------------------------------------------------

def test_refused_options_give_way_to_the_last_accepted_ones() -> None:
    spawner = SimpleNamespace(job_id="7", user_options={"preset": "debug"},
                              accepted_options=None, orm_spawner=None)
    assert guard.remember_options(spawner) == {"preset": "debug"}
    spawner.job_id, spawner.user_options = None, {"memory": "4G$(id)"}
    assert guard.remember_options(spawner) == {"preset": "debug"}  # no job: kept as was
    guard.restore_options(spawner)
    assert spawner.user_options == {"preset": "debug"}
    fresh = SimpleNamespace(job_id=None, user_options={"cmd": "id"}, accepted_options=None,
                            orm_spawner=None)
    guard.restore_options(fresh)
    assert fresh.user_options == {}


def test_no_dask_workers_as_a_service_account_through_a_site() -> None:
    from hpcbridge.dask.build import cluster

    profile = load_bundled_profile("testbed", {})
    for user in ("hpcbridge", "root", "nobody"):
        with pytest.raises(IdentityRefused):
            cluster(profile, site=object(), user=user)  # refused before the site is used


def test_getent_runs_as_the_hubs_own_identity_never_as_the_user_if_it_has_one() -> None:
    from hpcbridge.identity import _asker, _asks_for_others
    from hpcbridge.profiles.model import LocalTransport

    cluster = load_bundled_profile("testbed", {}).clusters["tb"]
    assert _asker(cluster, "alice") == "hpcbridge" and _asks_for_others(cluster)
    local = cluster.model_copy(update={"status_user": None, "transport": LocalTransport()})
    assert _asker(local, "alice") is None and _asks_for_others(local)  # the hub process
    ssh_alone = cluster.model_copy(update={"status_user": None})
    assert _asker(ssh_alone, "alice") == "alice" and not _asks_for_others(ssh_alone)

"""HpcSpawner's start/stop serialization and outage waits, against a fake cluster.

The fake cluster does what a login node does: a command that was sent runs to its end
(the file is made, the job is queued) even when the hub stops waiting for its answer.
Gates hold an answer back, so that a stop can land at every await of start().
"""

from __future__ import annotations

import asyncio
import subprocess
from types import SimpleNamespace

import pytest
from tornado import web

from hpcbridge.client import SchedulerClient
from hpcbridge.errors import Unreachable
from hpcbridge.jobs import JobInfo, JobState
from slurm_testbed.profiles import load_bundled_profile
from hpcbridge.schedulers import PbsDialect, SlurmDialect
from hpcbridge.spawner import messages, serving, teardown
from hpcbridge.spawner.spawner import HpcSpawner

STAGES = ("mkdir", "mktemp", "dd", "sbatch")


class FakeCluster:
    """The login node (a transport under a real client) and the poller of one cluster,
    with gates on the answers."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, str] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.reached = {stage: asyncio.Event() for stage in STAGES}
        self.subscribers: list = []
        self._tracked: dict[str, str | None] = {}
        self.client = SchedulerClient(SlurmDialect(), self)  # type: ignore[arg-type]
        self.down = 0  # commands that fail as unreachable before one gets through
        self._changed = asyncio.Event()

    async def until(self, ready) -> None:
        """Until ``ready()``, checked after every submission and subscription."""
        while not ready():
            self._changed.clear()
            await self._changed.wait()

    async def _answer(self, stage: str) -> None:
        self.reached[stage].set()
        if stage in self.gates:
            await self.gates[stage].wait()

    async def run(self, argv, user=None, stdin=None, timeout=None):
        if self.down:
            self.down -= 1
            raise Unreachable("cannot connect to login")
        if argv[0] == "mktemp":
            path = f"{argv[2]}/env.{len(self.files):010d}"
            self.files[path] = b""
            await self._answer("mktemp")
            return subprocess.CompletedProcess(argv, 0, path + "\n", "")
        if argv[0] == "dd":
            self.files[argv[1].removeprefix("of=")] = stdin
        if argv[0] == "getent":
            return subprocess.CompletedProcess(argv, 0, f"10.0.0.9 {argv[2]}\n", "")
        if argv[0] == "rm":
            self.files.pop(argv[-1], None)
        if argv[0] == "scancel":
            for job_id in argv[2:]:
                self.jobs[job_id] = "CANCELLED"
        if "sbatch" in argv:
            job_id = str(100 + len(self.jobs))
            self.jobs[job_id] = "PENDING"  # queued, whether or not the answer is awaited
            self._changed.set()
            await self._answer("sbatch")
            return subprocess.CompletedProcess(argv, 0, f"{job_id}\n", "")
        if argv[0] in self.reached:
            await self._answer(argv[0])
        return subprocess.CompletedProcess(argv, 0, "", "")

    # -- poller --
    def subscribe(self, callback, job_id=None):  # offers every change, as with none
        self.subscribers.append(callback)
        self._changed.set()
        return lambda: self.subscribers.remove(callback)

    def track(self, job_id, user=None, wake=True) -> None:
        self._tracked[job_id] = user

    def untrack(self, job_id) -> None:
        self._tracked.pop(job_id, None)

    @property
    def tracked(self) -> dict[str, str | None]:
        return dict(self._tracked)

    def info(self, job_id):
        return None

    def wake(self) -> None:
        pass

    def publish(self, info: JobInfo) -> None:
        for callback in list(self.subscribers):
            callback(SimpleNamespace(job_id=info.job_id, previous=None, current=info))

    @property
    def live_jobs(self) -> list[str]:
        return [j for j, state in self.jobs.items() if state != "CANCELLED"]


class FakeSite:
    def __init__(self, cluster: FakeCluster) -> None:
        self.profile = load_bundled_profile("testbed", {})
        self.fake = cluster
        self.later: list[tuple] = []
        self.identity = SimpleNamespace(check=_anyone)

    def cluster_name(self, name=None) -> str:
        return name or next(iter(self.profile.clusters))

    def cluster(self, name=None):
        return self.profile.clusters[self.cluster_name(name)]

    def client(self, name=None):
        return self.fake.client

    def poller(self, name=None):
        return self.fake

    def outage(self, name=None) -> None:
        return None  # the cluster answers

    def cancel_later(self, cluster, user, job_id, *, env_file=None) -> None:
        self.later.append((job_id, env_file))

    async def node_address(self, cluster, node, user=None) -> str:
        return await self.fake.client.resolve_host(node, as_user=user)

    async def user_accounts(self, cluster, user) -> list[str]:
        return ["proj_a"]

    async def budget(self, cluster, account, user) -> None:
        return None  # no budget: every request is affordable


async def _anyone(cluster, user) -> None:
    """The identity check passes: a regular user."""


class Spawner(HpcSpawner):
    """HpcSpawner on a fake site, outside a hub."""

    def __init__(self, site: FakeSite, **kw) -> None:
        super().__init__(user=SimpleNamespace(name="alice", url="/user/alice/"),
                         api_token="server-token", **kw)
        self._fake_site = site

    @property
    def site(self):
        return self._fake_site

    def get_env(self) -> dict:
        return {"JUPYTERHUB_API_TOKEN": "server-token"}


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(serving, "RETRY_PAUSES", (0.001, 0.004))
    monkeypatch.setattr(teardown, "ABANDON_GRACE", 0.001)
    monkeypatch.setattr(serving, "listening", _never_listening)


async def _never_listening(host, port, timeout, every=0.05) -> bool:
    return False


async def _reach(cluster: FakeCluster, stage: str, start: asyncio.Future) -> None:
    """Until the start sends ``stage``'s command; fails if the start ended before."""
    reached = asyncio.ensure_future(cluster.reached[stage].wait())
    await asyncio.wait([reached, start], return_when=asyncio.FIRST_COMPLETED)
    if not reached.done():
        reached.cancel()
        raise AssertionError(f"start() ended before {stage}: {start.exception()!r}")


async def _cancelled_at(stage: str, *, then_stop: bool):
    """Start, cancel start() while ``stage``'s answer is held back, let it arrive."""
    cluster = FakeCluster()
    cluster.gates[stage] = asyncio.Event()
    spawner = Spawner(FakeSite(cluster))
    start = asyncio.ensure_future(spawner.start())
    await _reach(cluster, stage, start)
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    # JupyterHub polls before it stops: "no job" would skip stop()
    assert await spawner.poll() is None
    cluster.gates[stage].set()
    if then_stop:
        await spawner.stop()
    else:  # JupyterHub failed to stop it (its DELETE can end in HTTP 500)
        await asyncio.wait([spawner._abandoning])
        await asyncio.wait([spawner._discarding])
    return cluster, spawner


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("then_stop", [True, False])
def test_a_start_cancelled_at_any_await_leaves_no_job_and_no_file(stage, then_stop):
    async def go():
        cluster, spawner = await _cancelled_at(stage, then_stop=then_stop)
        assert cluster.live_jobs == []
        assert cluster.files == {}
        assert spawner.job_id is None and spawner.env_file is None
        assert await spawner.poll() == 0
    asyncio.run(go())


def test_a_stop_while_the_job_waits_for_its_port_cancels_it_and_removes_the_file():
    async def go():
        cluster = FakeCluster()
        spawner = Spawner(FakeSite(cluster))
        start = asyncio.ensure_future(spawner.start())
        await _following(cluster, spawner, start)
        start.cancel()
        await asyncio.wait([start])
        await spawner.stop()
        assert cluster.live_jobs == [] and cluster.files == {}
    asyncio.run(go())


def test_the_next_start_waits_for_the_last_ones_clean_up():
    async def go():
        cluster = FakeCluster()
        cluster.gates["sbatch"] = asyncio.Event()
        spawner = Spawner(FakeSite(cluster))
        first = asyncio.ensure_future(spawner.start())
        await _reach(cluster, "sbatch", first)
        first.cancel()
        await asyncio.wait([first])
        second = asyncio.ensure_future(spawner.start())
        await asyncio.sleep(0)
        assert len(cluster.jobs) == 1  # nothing new while the first submission runs
        cluster.gates["sbatch"].set()
        await cluster.until(lambda: len(cluster.jobs) == 2 and cluster.subscribers)
        assert cluster.jobs["100"] == "CANCELLED"
        assert spawner.job_id == "101" and cluster.jobs["101"] == "PENDING"
        second.cancel()
        await asyncio.wait([second])
        await spawner.stop()
        assert cluster.live_jobs == []
    asyncio.run(go())


def test_an_outage_during_the_clean_up_is_handed_to_cancel_later():
    async def go():
        cluster = FakeCluster()
        site = FakeSite(cluster)
        spawner = Spawner(site)
        start = asyncio.ensure_future(spawner.start())
        await _following(cluster, spawner, start)
        start.cancel()
        await asyncio.wait([start])
        env_file = spawner.env_file
        cluster.down = 1
        await spawner.stop()
        assert site.later == [("100", env_file)]
    asyncio.run(go())


async def _following(cluster: FakeCluster, spawner: Spawner, start: asyncio.Future) -> None:
    """Until the job is submitted and the spawner follows its state; fails if the start
    ended before."""
    following = asyncio.ensure_future(
        cluster.until(lambda: spawner.job_id and cluster.subscribers))
    await asyncio.wait([following, start], return_when=asyncio.FIRST_COMPLETED)
    if not following.done():
        following.cancel()
        raise AssertionError(f"start() ended before its job was followed: {start!r}")


def _running(job_id: str, *nodes: str) -> JobInfo:
    return JobInfo(job_id, JobState.RUNNING, nodes=nodes)


def test_a_port_reported_during_an_outage_waits_for_the_node_then_serves():
    async def go():
        cluster = FakeCluster()
        spawner = Spawner(FakeSite(cluster))
        start = asyncio.ensure_future(spawner.start())
        await _following(cluster, spawner, start)
        job_id = spawner.job_id
        spawner.port_reported(40001, "server-token")
        # the scheduler cannot be asked: no node, no failure; the user is told it waits
        cluster.publish(JobInfo(job_id, JobState.UNKNOWN, reason="ssh: refused"))
        while "waiting until the scheduler answers" not in (await spawner._events.get())[
                "message"]:
            pass
        assert not start.done()
        cluster.down = 3  # and the login node cannot resolve names for a while
        cluster.publish(_running(job_id, "c2"))
        assert await start == "http://10.0.0.9:40001"
        assert spawner.last_end is None
    asyncio.run(go())


def test_a_job_that_ends_while_its_node_is_unknown_fails_the_spawn_with_the_reason():
    async def go():
        cluster = FakeCluster()
        spawner = Spawner(FakeSite(cluster))
        start = asyncio.ensure_future(spawner.start())
        await _following(cluster, spawner, start)
        spawner.port_reported(40001, "server-token")
        cluster.publish(JobInfo(spawner.job_id, JobState.NODE_FAIL))
        with pytest.raises(web.HTTPError, match="node fail"):
            await start
    asyncio.run(go())


@pytest.mark.parametrize("dialect", [SlurmDialect(), PbsDialect()])
def test_a_job_without_any_record_ended_for_an_unknown_reason(dialect):
    info = dialect.absent_info("4242")
    assert info.state is JobState.ENDED_UNKNOWN and info.state is not JobState.COMPLETED
    assert info.state.is_terminal and not info.state.is_active
    assert messages.describe_end(info) == (
        "ended, reason unknown (left the queue; no record of how it ended)")


def test_the_last_end_survives_a_stop_and_a_new_spawner_object():
    site = FakeSite(FakeCluster())
    spawner = Spawner(site)
    spawner.job_id, spawner.last_end = "7", "ended, reason unknown"
    spawner.clear_state()  # what JupyterHub does after the server stopped
    state = spawner.get_state()
    assert "job_id" not in state and state["last_end"] == "ended, reason unknown"
    again = Spawner(site)
    again.load_state(state)
    assert again.last_end == "ended, reason unknown"


def test_cancel_later_removes_the_file_and_cancels_once_the_outage_ends():
    from hpcbridge.site import Site

    async def go():
        cluster = FakeCluster()
        site = Site(load_bundled_profile("testbed", {}))
        site._clients[site.cluster_name()] = cluster.client
        cluster.files["/home/alice/.hpcbridge/env.1"] = b"token"
        cluster.jobs["100"] = "PENDING"
        cluster.down = 3  # three tries meet the outage
        site.cancel_later(None, "alice", "100", env_file="/home/alice/.hpcbridge/env.1",
                          pause=0.001, max_pause=0.002)
        await asyncio.wait(set(site._retries))
        assert cluster.files == {} and cluster.live_jobs == []
    asyncio.run(go())


def test_a_cancellation_swallowed_inside_start_still_cleans_up():
    entered = asyncio.Event()

    class Swallowing(Spawner):
        async def _wait_until_serving(self) -> str:
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                pass  # what Python 3.11's wait_for does when its inner result races a cancel
            return "http://10.0.0.9:40001"

    async def go():
        cluster = FakeCluster()
        spawner = Swallowing(FakeSite(cluster))
        start = asyncio.ensure_future(spawner.start())
        await entered.wait()
        start.cancel()
        with pytest.raises(asyncio.CancelledError):
            await start
        await asyncio.wait([spawner._abandoning])
        await asyncio.wait([spawner._discarding])
        assert cluster.live_jobs == [] and cluster.files == {}
    asyncio.run(go())


def test_a_start_cancelled_by_a_hub_shutting_down_keeps_the_queued_job_and_its_file(
        monkeypatch):
    monkeypatch.setattr(teardown, "ABANDON_GRACE", 3600.0)

    async def go():
        cluster = FakeCluster()
        spawner = Spawner(FakeSite(cluster))
        start = asyncio.ensure_future(spawner.start())
        await _following(cluster, spawner, start)
        start.cancel()  # the hub's shutdown cancels every task; then its loop ends
        await asyncio.wait([start])
        return cluster
    cluster = asyncio.run(go())
    assert cluster.live_jobs == ["100"] and len(cluster.files) == 1

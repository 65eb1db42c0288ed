"""Faults on the live testbed: what the client and the poller report, and what they cost.

Each test restores the cluster before it ends (the fault helpers' context managers and
``finally`` blocks), because every testbed test of a CI run shares one cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
import time
from collections.abc import AsyncIterator, Iterable

import pytest
import requests

from hpcbridge.client import SchedulerClient
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.poller import StateChange, StatusPoller
from hpcbridge.transport import local as local_transport
from slurm_testbed import faults
from slurm_testbed.cluster import PYTHON
from slurm_testbed.profiles import site_on_testbed

STATUS_USER = "hpcbridge"  # the testbed profile's status_user


class Recorder:
    """Every state change the poller publishes, with the time it arrived."""

    def __init__(self, poller: StatusPoller) -> None:
        self.seen: list[tuple[float, StateChange]] = []
        poller.subscribe(lambda change: self.seen.append((time.monotonic(), change)))

    def states(self, job_id: str, since: float = 0.0, until: float = float("inf")
               ) -> list[JobState]:
        return [c.current.state for t, c in self.seen
                if c.job_id == job_id and since <= t <= until]


@pytest.fixture
async def client(testbed) -> AsyncIterator[SchedulerClient]:  # type: ignore[no-untyped-def]
    site = site_on_testbed(testbed)
    try:
        yield site.client("tb")
    finally:
        await site.close()


def poller_for(client: SchedulerClient, interval: float = 2.0) -> StatusPoller:
    return StatusPoller(client, interval=interval, min_gap=0.2, backoff_max=4.0,
                        query_as=STATUS_USER, forget_terminal=False)


async def wait_state(poller: StatusPoller, job_ids: Iterable[str], wanted: set[JobState],
                     timeout: float = 120) -> dict[str, JobInfo]:
    """Until every job's latest word is one of ``wanted``; the latest words."""
    ids = list(job_ids)
    deadline = time.monotonic() + timeout
    while True:
        infos = {j: poller.info(j) for j in ids}
        if all(i is not None and i.state in wanted for i in infos.values()):
            return infos  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"not {sorted(s.value for s in wanted)} after {timeout:.0f} s:"
                                 f" {infos}")
        poller.wake()
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def watching(testbed, client: SchedulerClient, jobs: list[str],  # type: ignore[no-untyped-def]
                   interval: float = 2.0) -> AsyncIterator[tuple[StatusPoller, Recorder]]:
    """A running poller tracking alice's ``jobs``, once all run; cancels them at the end."""
    poller = poller_for(client, interval)
    record = Recorder(poller)
    try:
        async with poller:
            for j in jobs:
                poller.track(j, "alice")
            await wait_state(poller, jobs, {JobState.RUNNING})
            yield poller, record
    finally:
        faults.cancel_jobs(testbed, jobs)


async def submit(client: SchedulerClient, *extra: str, seconds: int = 600,
                 user: str = "alice") -> str:
    return await client.submit(user, faults.sleep_script(seconds, extra=extra))


def test_sdiag_parser() -> None:
    text = ("Remote Procedure Call statistics by message type\n"
            "\tREQUEST_JOB_INFO                        ( 2003) count:7      ave_time:233\n"
            "\tREQUEST_PARTITION_INFO                  ( 2009) count:2      ave_time:209\n"
            "\nRemote Procedure Call statistics by user\n"
            "\talice           (    2001) count:3      ave_time:204    total_time:612\n"
            "\t2100            (    2100) count:6      ave_time:196    total_time:392\n"
            "\nPending RPC statistics\n\tNo pending RPCs\n")
    stats = faults.parse_sdiag(text)
    assert stats.by_type == {"REQUEST_JOB_INFO": 7, "REQUEST_PARTITION_INFO": 2}
    assert stats.by_user == {"alice": 3, "2100": 6} and stats.user("x", 2100) == 6
    assert stats.total == 9
    assert faults.parse_sdiag(text).minus(stats).by_type == {}


def _alice_serving(hub) -> dict:  # type: ignore[no-untyped-def]
    if not hub.server("alice").get("ready"):
        r = hub.spawn("alice", {"preset": "debug"})
        assert r.status_code in (201, 202), r.text
    return hub.wait_ready("alice")


@pytest.mark.testbed
async def test_slurmctld_down_60s_is_unknown_never_gone(testbed, client, hub) -> None:  # type: ignore[no-untyped-def]
    """The poller says UNKNOWN, never an end; over the same outage the session's hub
    drops no running server and alice's server answers after it (one 60 s outage for
    both: the hub's check was an outage of its own)."""
    server = await asyncio.to_thread(_alice_serving, hub)
    token = await asyncio.to_thread(hub.user_token, "alice")
    long_job = await submit(client)
    short_job = await submit(client, seconds=20)  # ends while the controller is down
    jobs = [long_job, short_job]
    async with watching(testbed, client, jobs) as (poller, record):
        with faults.slurmctld_stopped(testbed):
            stopped = time.monotonic()
            await wait_state(poller, jobs, {JobState.UNKNOWN}, timeout=45)
            while (left := 60 - (time.monotonic() - stopped)) > 0:
                ready = (await asyncio.to_thread(hub.server, "alice")).get("ready")
                assert ready, "server dropped during the outage"
                await asyncio.sleep(min(5.0, left))
            during = {j: record.states(j, since=stopped) for j in jobs}
        restarted = time.monotonic()
        await wait_state(poller, [long_job], {JobState.RUNNING})
        final = await wait_state(poller, [short_job], {JobState.COMPLETED}, timeout=180)
    for job_id, states in during.items():
        assert JobState.UNKNOWN in states
        assert not any(s.is_terminal for s in states), (job_id, states)
    assert not any(s.is_terminal for s in record.states(long_job))
    assert all(not s.is_terminal for s in record.states(short_job, until=restarted))
    assert final[short_job].extra.get("absent") is None  # the true end, not a guess
    # a poll round of the hub (status_interval 3 s) after the controller is back
    await asyncio.sleep(max(0.0, 12 - (time.monotonic() - restarted)))
    after = await asyncio.to_thread(hub.server, "alice")
    assert after.get("ready") and after["state"]["job_id"] == server["state"]["job_id"]
    status = await asyncio.to_thread(
        requests.get, f"{hub.url}/user/alice/api/status", timeout=30,
        headers={"Authorization": f"token {token}"})
    assert status.status_code == 200


@pytest.mark.testbed
async def test_suspended_and_requeued_jobs_are_reported_as_such(testbed, client) -> None:  # type: ignore[no-untyped-def]
    suspended, requeued, held = [await submit(client) for _ in range(3)]
    jobs = [suspended, requeued, held]
    async with watching(testbed, client, jobs, interval=1.0) as (poller, record):
        faults.suspend(testbed, suspended)
        faults.requeue(testbed, requeued)
        faults.requeue(testbed, held, hold=True)
        await wait_state(poller, [suspended], {JobState.SUSPENDED}, timeout=30)
        # Slurm shows a requeued job REQUEUED while it completes, then PENDING
        # (BeginTime) until it runs again; the dialect keeps both as active states
        infos = await wait_state(poller, [requeued, held],
                                 {JobState.PENDING, JobState.REQUEUED}, timeout=60)
        faults.resume(testbed, suspended)
        await wait_state(poller, [suspended], {JobState.RUNNING}, timeout=30)
    assert "requeued" in (infos[held].reason or "").lower()
    for j in jobs:
        assert not any(s.is_terminal for s in record.states(j)), (j, record.states(j))


@pytest.mark.testbed
async def test_killed_compute_node_fails_its_jobs(testbed, client) -> None:  # type: ignore[no-untyped-def]
    node = testbed.info().nodes[0]
    no_requeue = await submit(client, f"--nodelist={node}", "--no-requeue")
    requeue = await submit(client, f"--nodelist={node}")  # Slurm's default: requeue
    async with watching(testbed, client, [no_requeue, requeue]) as (poller, record):
        with faults.node_killed(testbed, node):
            # slurmctld marks the node down after SlurmdTimeout (30 s)
            failed = await wait_state(poller, [no_requeue],
                                      {JobState.NODE_FAIL, JobState.FAILED}, timeout=150)
            back = await wait_state(poller, [requeue],
                                    {JobState.PENDING, JobState.REQUEUED}, timeout=60)
    assert failed[no_requeue].state is JobState.NODE_FAIL, failed
    assert back[requeue].state.is_active
    assert not any(s.is_terminal for s in record.states(requeue)), record.states(requeue)


@pytest.mark.testbed
async def test_hundred_jobs_cost_one_query_per_interval(testbed, client) -> None:  # type: ignore[no-untyped-def]
    uid = int(testbed.exec("login", ["id", "-u", STATUS_USER], check=True).stdout)
    interval, rounds = 3.0, 5
    jobs: dict[str, str] = {}
    # 100 jobs from three users need more than the QOS's 8 submitted jobs per user
    with faults.qos_limits(testbed, MaxSubmitJobsPerUser=40):
        try:
            jobs = await faults.submit_spread(client, 100)
            poller = poller_for(client, interval=interval)
            for job_id, user in jobs.items():
                poller.track(job_id, user, wake=False)
            faults.reset_rpc_stats(testbed)
            started = time.monotonic()
            async with poller:
                await asyncio.sleep(interval * (rounds - 0.5))
            elapsed = time.monotonic() - started
            stats = faults.rpc_stats(testbed)
        finally:
            faults.cancel_jobs(testbed, list(jobs))
    assert len(jobs) == 100
    assert all(poller.info(j) and poller.info(j).state.is_active for j in jobs)  # type: ignore[union-attr]
    assert poller.queries <= elapsed / (interval * (1 - poller.jitter)) + 1
    # one squeue per round: one REQUEST_JOB_INFO (+ the partition list squeue reads)
    assert stats.by_type.get("REQUEST_JOB_INFO") == poller.queries, stats
    # per-job queries (REQUEST_JOB_INFO_SINGLE on 24.11) would be the status user's too:
    # 100 jobs a round. Other users' single-job queries (a running server's walltime
    # display asks about its own job) are not the poller's.
    assert stats.user(STATUS_USER, uid) <= 2 * poller.queries, stats


def documented_sudoers(hub_account: str) -> str:
    """The sudoers snippet of the local transport's documentation, for ``hub_account``:
    the test proves the documented rule is enough (and keeps root out)."""
    block = (local_transport.__doc__ or "").split("::\n\n", 1)[1].split("\n\n", 1)[0]
    return textwrap.dedent(block).replace("hubuser", hub_account) + "\n"


LOCAL_HUB = """\
import asyncio, json, sys
from hpcbridge.client import SchedulerClient
from hpcbridge.errors import PermissionDenied
from hpcbridge.schedulers import SlurmDialect
from hpcbridge.transport import LocalTransport

async def main():
    client = SchedulerClient(SlurmDialect(), LocalTransport(sudo="sudo"))
    out = {}
    job = await client.submit("alice", sys.stdin.read())
    out["pending"] = (await client.status([job]))[job].state.value
    out["user"] = (await client.status([job], as_user="alice"))[job].user
    await client.cancel("alice", [job])
    for _ in range(60):
        out["after_cancel"] = (await client.status([job]))[job].state.value
        if out["after_cancel"] == "cancelled":
            break
        await asyncio.sleep(0.5)
    try:
        await client.transport.run(["id"], user="root")
        out["root"] = "allowed"
    except PermissionDenied:
        out["root"] = "denied"
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.mark.testbed
def test_local_transport_inside_the_login_node(testbed) -> None:  # type: ignore[no-untyped-def]
    """The hub as its own account on the login node, acting for alice through sudo."""
    path = "/etc/sudoers.d/hpcbridge"
    testbed.exec("login", ["dd", f"of={path}", "status=none"],
                 input=documented_sudoers(STATUS_USER).encode(), check=True)
    try:
        testbed.exec("login", ["chmod", "0440", path], check=True)
        testbed.exec("login", ["visudo", "-c", "-f", path], check=True)
        proc = testbed.engine.run(
            "exec", "-i", "--user", STATUS_USER, "--workdir", "/tmp",
            testbed.container_name("login"), PYTHON, "-c", LOCAL_HUB,
            input=faults.sleep_script().encode(), timeout=120, check=False)
    finally:
        testbed.exec("login", ["rm", "-f", path])
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert out["pending"] in ("pending", "running") and out["user"] == "alice"
    assert out["after_cancel"] == "cancelled"
    assert out["root"] == "denied"


@pytest.mark.testbed
async def test_ssh_transport_survives_sshd_restart(testbed, client) -> None:  # type: ignore[no-untyped-def]
    job = await submit(client)
    try:
        before = (await client.status([job]))[job].state
        faults.restart_sshd(testbed, drop_sessions=True)  # kept connections die too
        after = (await client.status([job]))[job].state  # reconnects
        faults.restart_sshd(testbed, drop_sessions=False)  # only the listener
        again = await submit(client)
        faults.cancel_jobs(testbed, [again])
    finally:
        faults.cancel_jobs(testbed, [job])
    assert before.is_active and after.is_active


@pytest.mark.testbed
async def test_slurmdbd_down_history_is_unknown_not_gone(testbed, client) -> None:  # type: ignore[no-untyped-def]
    job = await submit(client)
    gone = "999999"  # in neither queue nor history
    try:
        with faults.slurmdbd_stopped(testbed):
            during = await client.status([job, gone])
            submitted = await submit(client)  # slurmctld queues the accounting records
            faults.cancel_jobs(testbed, [submitted])
        after = await client.status([gone])
    finally:
        faults.cancel_jobs(testbed, [job])
    assert during[job].state.is_active
    assert during[gone].state is JobState.UNKNOWN
    assert after[gone].state is JobState.ENDED_UNKNOWN and after[gone].extra.get("absent")

"""StatusPoller with fake schedulers named by what they do."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from hpcbridge.errors import SchedulerUnavailable
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.poller import StateChange, StatusPoller

from .virtual_time import VirtualClock


class AllRunning:
    """Every job asked about is running as its tracked owner; counts queries."""

    def __init__(self, owners: dict[str, str] | None = None) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.owners = owners or {}

    async def status(self, job_ids: Sequence[str], *, as_user: str | None = None
                     ) -> dict[str, JobInfo]:
        self.calls.append((list(job_ids), as_user))
        return {j: JobInfo(j, JobState.RUNNING, user=self.owners.get(j), nodes=("c1",))
                for j in job_ids}


class ControllerDown(AllRunning):
    """slurmctld is stopped until ``restore()``; then jobs answer as running."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def restore(self) -> None:
        self.down = False

    async def status(self, job_ids: Sequence[str], *, as_user: str | None = None
                     ) -> dict[str, JobInfo]:
        if self.down:
            self.calls.append((list(job_ids), as_user))
            raise SchedulerUnavailable("Unable to contact slurm controller (connect failure)")
        return await super().status(job_ids, as_user=as_user)


class FinishesAfterOneRound(AllRunning):
    async def status(self, job_ids: Sequence[str], *, as_user: str | None = None
                     ) -> dict[str, JobInfo]:
        first = not self.calls
        infos = await super().status(job_ids, as_user=as_user)
        if first:
            return infos
        return {j: JobInfo(j, JobState.COMPLETED) for j in job_ids}


async def test_one_query_per_interval_for_100_jobs() -> None:
    source, clock = AllRunning(), VirtualClock()
    poller = StatusPoller(source, interval=0.1, jitter=0.0, min_gap=0.0, clock=clock)
    for n in range(100):
        poller.track(str(n), f"user{n % 7}", wake=False)
    async with poller:
        await clock.advance(0.55)
    assert len(source.calls) == 5  # at 0.1, 0.2, 0.3, 0.4 and 0.5 s
    assert all(len(ids) == 100 for ids, _ in source.calls)
    assert poller.queries == len(source.calls)


async def test_query_runs_as_the_configured_identity() -> None:
    source = AllRunning()
    poller = StatusPoller(source, query_as="hpcbridge")
    poller.track("1", "alice", wake=False)
    poller.track("2", "bob", wake=False)
    await poller.poll_once()
    assert source.calls == [(["1", "2"], "hpcbridge")]


async def test_per_user_batches_where_the_site_hides_other_users_jobs() -> None:
    source = AllRunning()
    poller = StatusPoller(source, per_user=True)
    for job_id, user in [("1", "alice"), ("2", "bob"), ("3", "alice")]:
        poller.track(job_id, user, wake=False)
    await poller.poll_once()
    assert sorted(source.calls) == [(["1", "3"], "alice"), (["2"], "bob")]


async def test_wake_queries_at_once_and_coalesces() -> None:
    source, clock = AllRunning(), VirtualClock()
    poller = StatusPoller(source, interval=60.0, min_gap=0.05, clock=clock)
    async with poller:
        for n in range(50):
            poller.track(str(n))  # each wakes the poller
        await clock.advance(0)
        assert len(source.calls) == 1  # at once, one query for all 50
        assert sorted(source.calls[0][0], key=int) == [str(n) for n in range(50)]
        for _ in range(10):
            poller.wake()
        await clock.advance(0.04)
        assert len(source.calls) == 1  # not before min_gap has passed
        await clock.advance(0.01)
        assert len(source.calls) == 2  # ten wake-ups, one more query
        await clock.advance(30)
        assert len(source.calls) == 2


async def test_outage_makes_states_unknown_never_gone_then_recovers() -> None:
    source = ControllerDown()
    poller = StatusPoller(source)
    events: list[StateChange] = []
    poller.subscribe(events.append)
    poller.track("7", "alice", wake=False)
    for _ in range(3):
        await poller.poll_once()
    assert poller.failures == 3
    assert poller.info("7").state is JobState.UNKNOWN
    assert "7" in poller.tracked
    assert [e.current.state for e in events] == [JobState.UNKNOWN]  # one event, not three
    assert not any(e.current.state.is_terminal for e in events)
    source.restore()
    await poller.poll_once()
    assert poller.failures == 0
    assert events[-1].current.state is JobState.RUNNING
    assert events[-1].previous.state is JobState.UNKNOWN
    assert poller.last_known("7").state is JobState.RUNNING


def test_backoff_doubles_up_to_a_cap_with_jitter() -> None:
    poller = StatusPoller(AllRunning(), interval=30.0, jitter=0.0, backoff_initial=5.0,
                          backoff_max=60.0)
    delays = []
    for failures in range(6):
        poller.failures = failures
        delays.append(poller.next_delay())
    assert delays == [30.0, 5.0, 10.0, 20.0, 40.0, 60.0]
    jittery = StatusPoller(AllRunning(), interval=30.0, jitter=0.1, rng=random.Random(1))
    samples = {jittery.next_delay() for _ in range(20)}
    assert len(samples) > 1 and all(27.0 <= s <= 33.0 for s in samples)


async def test_poller_backs_off_while_the_controller_is_down() -> None:
    source, clock = ControllerDown(), VirtualClock()
    poller = StatusPoller(source, interval=0.02, jitter=0.0, min_gap=0.0,
                          backoff_initial=0.05, backoff_max=10.0, clock=clock)
    poller.track("1", wake=False)
    counts = []
    async with poller:
        # queries at 0.02 s, then 0.05, 0.1, 0.2 s later: 0.07, 0.17, 0.37 s
        for at in (0.01, 0.03, 0.08, 0.18, 0.36, 0.38):
            await clock.advance(at - clock.now())
            counts.append(len(source.calls))
    # without backoff there would be one every 0.02 s: 18 by 0.37 s
    assert counts == [0, 1, 2, 3, 3, 4]


async def test_terminal_jobs_are_published_then_forgotten() -> None:
    poller = StatusPoller(FinishesAfterOneRound())
    seen: list[JobState] = []

    async def on_change(change: StateChange) -> None:
        seen.append(change.current.state)

    poller.subscribe(on_change)
    poller.track("5", wake=False)
    await poller.poll_once()
    await poller.poll_once()
    assert seen == [JobState.RUNNING, JobState.COMPLETED]
    assert "5" not in poller.tracked


async def test_async_iterator_of_changes() -> None:
    poller = StatusPoller(AllRunning(), interval=60.0, min_gap=0.0)
    async with poller:
        changes = poller.changes()
        first = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0)
        poller.track("9", "carol")
        change = await asyncio.wait_for(first, 1.0)
        await changes.aclose()
    assert (change.job_id, change.user, change.current.state) == ("9", "carol", JobState.RUNNING)


async def test_an_answer_about_another_owner_is_not_trusted() -> None:
    poller = StatusPoller(AllRunning(owners={"301": "mallory"}))
    poller.track("301", "alice", wake=False)
    await poller.poll_once()
    assert poller.info("301").state is JobState.UNKNOWN
    assert "mallory" in poller.info("301").reason


async def test_a_failing_subscriber_does_not_stop_others() -> None:
    poller = StatusPoller(AllRunning())
    got: list[str] = []

    def broken(change: StateChange) -> None:
        raise RuntimeError("subscriber bug")

    poller.subscribe(broken)
    unsubscribe = poller.subscribe(lambda c: got.append(c.job_id))
    poller.track("1", wake=False)
    await poller.poll_once()
    unsubscribe()
    poller.track("2", wake=False)
    await poller.poll_once()
    assert got == ["1"]


async def test_a_subscriber_to_one_job_hears_only_that_job() -> None:
    poller = StatusPoller(FinishesAfterOneRound(), forget_terminal=False)
    everything: list[str] = []
    mine: list[tuple[str, JobState]] = []
    poller.subscribe(lambda c: everything.append(c.job_id))
    unsubscribe = poller.subscribe(lambda c: mine.append((c.job_id, c.current.state)),
                                   job_id="2")
    also = poller.subscribe(lambda c: mine.append(("again", c.current.state)), job_id="2")
    for job in ("1", "2", "3"):
        poller.track(job, wake=False)
    await poller.poll_once()
    assert sorted(everything) == ["1", "2", "3"]
    assert mine == [("2", JobState.RUNNING), ("again", JobState.RUNNING)]
    also()
    await poller.poll_once()  # all three complete
    assert mine[2:] == [("2", JobState.COMPLETED)]
    unsubscribe()
    unsubscribe()  # twice is harmless
    assert poller._job_subscribers == {}  # nothing kept for a job nobody follows


async def test_untrack_while_querying_drops_the_answer() -> None:
    source = AllRunning()
    poller = StatusPoller(source)
    poller.track("1", wake=False)
    events: list[StateChange] = []
    poller.subscribe(events.append)
    original = source.status

    async def untrack_midway(ids: Sequence[str], *, as_user: str | None = None
                             ) -> dict[str, JobInfo]:
        poller.untrack("1")
        return await original(ids, as_user=as_user)

    source.status = untrack_midway  # type: ignore[method-assign]
    await poller.poll_once()
    assert events == [] and poller.info("1") is None


@pytest.mark.parametrize("tracked", [0])
async def test_no_tracked_jobs_no_query(tracked: int) -> None:
    source = AllRunning()
    await StatusPoller(source).poll_once()
    assert source.calls == []


async def test_answers_wait_for_their_own_job_and_leave_nothing_behind() -> None:
    source = AllRunning()
    poller = StatusPoller(source)
    futures = {j: poller.answer(j) for j in ("1", "2")}
    late = poller.answer("3")
    poller.forget_answer("3", late)  # its caller gave up before the round
    for j in ("1", "2", "3"):
        poller.track(j, wake=False)
    await poller.poll_once()
    assert {j: f.result().job_id for j, f in futures.items()} == {"1": "1", "2": "2"}
    assert not late.done()
    assert poller._answers == {}


async def test_fresh_info_of_many_servers_at_once_is_one_round() -> None:
    from hpcbridge.site import Site

    source, clock = AllRunning(), VirtualClock()
    poller = StatusPoller(source, interval=30, jitter=0.0, min_gap=0.0, clock=clock)
    site = Site.__new__(Site)
    site.poller = lambda name=None: poller  # type: ignore[method-assign]
    async with poller:
        asked = [asyncio.ensure_future(site.fresh_info(None, str(n), None)) for n in range(50)]
        await clock.advance(0.01)
        infos = await asyncio.gather(*asked)
    assert [i.job_id for i in infos] == [str(n) for n in range(50)]
    assert len(source.calls) == 1 and poller._answers == {}

"""One batched status poller per cluster.

Spawners and Dask clusters never ask the scheduler about their own jobs. They
``track`` job ids here and subscribe to :class:`StateChange` events. Every interval the
poller asks about *all* tracked ids in one query -- as one privileged-enough identity
(``query_as``; Slurm shows every user's jobs to e.g. an operator), or, where the site
hides other users' jobs, one query per user (``per_user=True``).

While the scheduler cannot be asked, every tracked job becomes UNKNOWN and the poller
backs off exponentially (with jitter); nothing is ever reported finished because a
query failed. ``track(..., wake=True)`` and ``wake()`` ask for a query now (coalesced:
many wake-ups while a query runs cause one more query, at most one per ``min_gap``).
All waiting goes through a :class:`Clock`, so that tests can run the loop in virtual time.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, Self

from hpcbridge.jobs import JobInfo, JobState

log = logging.getLogger(__name__)


class StatusSource(Protocol):
    """What the poller needs: :class:`hpcbridge.client.SchedulerClient` is one."""

    async def status(self, job_ids: Sequence[str], *, as_user: str | None = None
                     ) -> dict[str, JobInfo]: ...


class Clock(Protocol):
    """The poller's time: the event loop's by default, a virtual one in unit tests."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        """Return when ``event`` is set or ``seconds`` have passed, whichever is first."""


class MonotonicClock:
    """Real time."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass


@dataclass(frozen=True)
class StateChange:
    job_id: str
    user: str | None
    previous: JobInfo | None
    current: JobInfo


Subscriber = Callable[[StateChange], Awaitable[None] | None]


def _same(a: JobInfo | None, b: JobInfo) -> bool:
    if a is None or a.state is not b.state:
        return False
    # UNKNOWN twice: the outage goes on; its error text may vary
    return a.state is JobState.UNKNOWN or (a.reason == b.reason and a.nodes == b.nodes)


#: the terminal states as a tuple: ``in`` compares by identity, where a set would call
#: the enum's hash (Python code) for each of thousands of jobs a round
_ENDED = tuple(state for state in JobState if state.is_terminal)


#: jobs published between two yields to the event loop within a round
YIELD_EVERY = 256


class StatusPoller:
    """Track job ids of one cluster; one status query per interval for all of them."""

    def __init__(self, source: StatusSource, *, interval: float = 30.0, jitter: float = 0.1,
                 min_gap: float = 1.0, backoff_initial: float | None = None,
                 backoff_max: float = 600.0, query_as: str | None = None,
                 per_user: bool = False, forget_terminal: bool = True,
                 rng: random.Random | None = None, clock: Clock | None = None) -> None:
        self.source = source
        self.clock: Clock = clock or MonotonicClock()
        self.interval = interval
        self.jitter = jitter
        self.min_gap = min_gap
        self.backoff_initial = interval if backoff_initial is None else backoff_initial
        self.backoff_max = backoff_max
        self.query_as = query_as
        self.per_user = per_user
        self.forget_terminal = forget_terminal
        self._rng = rng or random.Random()
        self._tracked: dict[str, str | None] = {}
        self._infos: dict[str, JobInfo] = {}
        self._last_known: dict[str, JobInfo] = {}
        self._subscribers: list[Subscriber] = []
        #: subscribers to one job's changes, by job id
        self._job_subscribers: dict[str, list[Subscriber]] = {}
        #: futures of :meth:`answer`, by job id
        self._answers: dict[str, list[asyncio.Future[JobInfo]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_poll = float("-inf")
        #: consecutive rounds in which a query failed, and the last failure's words
        self.failures = 0
        self.last_error = ""
        #: status queries issued so far (one per round, or one per user per round)
        self.queries = 0
        #: callers of next_round() waiting for the end of a round that starts after them
        self._round_waiters: list[asyncio.Future[None]] = []

    # -- tracking --------------------------------------------------------------------

    def track(self, job_id: str, user: str | None = None, *, wake: bool = True) -> None:
        self._tracked[job_id] = user
        if wake:
            self.wake()

    def untrack(self, job_id: str) -> None:
        self._tracked.pop(job_id, None)
        self._infos.pop(job_id, None)
        self._last_known.pop(job_id, None)

    @property
    def tracked(self) -> Mapping[str, str | None]:
        """Job id -> owner, read-only and live: asking whether one of 10,000 jobs is
        tracked (every spawner's poll does) copies nothing."""
        return MappingProxyType(self._tracked)

    def info(self, job_id: str) -> JobInfo | None:
        """The latest word on a job (UNKNOWN during an outage)."""
        return self._infos.get(job_id)

    def last_known(self, job_id: str) -> JobInfo | None:
        """The latest state the scheduler actually reported (never UNKNOWN)."""
        return self._last_known.get(job_id)

    def wake(self) -> None:
        """Ask for a query as soon as ``min_gap`` allows; wake-ups coalesce."""
        self._wake.set()

    # -- subscribers -----------------------------------------------------------------

    def subscribe(self, callback: Subscriber, *, job_id: str | None = None
                  ) -> Callable[[], None]:
        """Call ``callback(change)`` (sync or async) on every change, or with ``job_id``
        only on that job's; returns unsubscribe. A subscriber to one job costs nothing
        when the others change (a spawner follows its own job: with 500 of them, a round
        of 10,000 jobs offered every change to every spawner)."""
        if job_id is None:
            self._subscribers.append(callback)
            return lambda: self._subscribers.remove(callback) \
                if callback in self._subscribers else None
        self._job_subscribers.setdefault(job_id, []).append(callback)

        def unsubscribe() -> None:
            those = self._job_subscribers.get(job_id, [])
            if callback in those:
                those.remove(callback)
            if not those:
                self._job_subscribers.pop(job_id, None)

        return unsubscribe

    def answer(self, job_id: str) -> asyncio.Future[JobInfo]:
        """A future of the next word on ``job_id`` (tracked by the caller). Unlike a
        subscriber, it costs nothing for the other jobs' changes: many callers waiting
        at once (a hub restarting with hundreds of servers) stay one dict look-up per job.
        Cancel it to stop waiting; :meth:`forget_answer` drops it."""
        future: asyncio.Future[JobInfo] = asyncio.get_running_loop().create_future()
        self._answers.setdefault(job_id, []).append(future)
        return future

    def forget_answer(self, job_id: str, future: asyncio.Future[JobInfo]) -> None:
        waiting = self._answers.get(job_id, [])
        if future in waiting:
            waiting.remove(future)
        if not waiting:
            self._answers.pop(job_id, None)

    async def changes(self) -> AsyncIterator[StateChange]:
        """Every change from now on, as an async iterator."""
        queue: asyncio.Queue[StateChange] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()

    # -- polling ---------------------------------------------------------------------

    def next_delay(self) -> float:
        """Seconds until the next round: the interval, or the backoff during an outage."""
        base = self.interval
        if self.failures:
            base = min(self.backoff_initial * 2 ** (self.failures - 1), self.backoff_max)
        return max(0.0, base * (1 + self._rng.uniform(-self.jitter, self.jitter)))

    def _groups(self) -> dict[str | None, list[str]]:
        if not self.per_user:
            return {self.query_as: list(self._tracked)} if self._tracked else {}
        groups: dict[str | None, list[str]] = {}
        for job_id, user in self._tracked.items():
            groups.setdefault(user, []).append(job_id)
        return groups

    async def next_round(self, timeout: float) -> bool:
        """Ask for a round now and wait until it ends; False after ``timeout`` seconds."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._round_waiters.append(waiter)
        self.wake()
        try:
            async with asyncio.timeout(timeout):
                await waiter
            return True
        except TimeoutError:
            return False
        finally:
            if waiter in self._round_waiters:
                self._round_waiters.remove(waiter)

    async def poll_once(self) -> None:
        """One round: query every tracked id, publish what changed."""
        self._last_poll = self.clock.now()
        waiting, self._round_waiters = self._round_waiters, []
        failed = False
        for identity, ids in self._groups().items():
            self.queries += 1
            try:
                infos = await self.source.status(ids, as_user=identity)
            except Exception as exc:  # noqa: BLE001 -- any failure means "cannot know", never "gone"
                log.warning("status query for %d jobs failed: %s", len(ids), exc)
                failed = True
                self.last_error = str(exc)
                infos = {j: JobInfo(j, JobState.UNKNOWN, reason=str(exc)) for j in ids}
            for n, job_id in enumerate(ids, 1):
                info = infos.get(job_id) or JobInfo(job_id, JobState.UNKNOWN,
                                                    reason="missing from the answer")
                change = self._store(job_id, info)
                if change is not None:
                    await self._announce(change)
                if n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # thousands of jobs: let the loop serve between
        self.failures = self.failures + 1 if failed else 0
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

    def _store(self, job_id: str, info: JobInfo) -> StateChange | None:
        """Keep ``info`` and answer those waiting for it; the change to announce, if any.
        Synchronous: the thousands of jobs whose state stayed cost no coroutine each."""
        if job_id not in self._tracked:
            return None  # untracked while the query ran
        owner = self._tracked[job_id]
        if owner and info.user and info.user != owner:
            # output naming another owner is not about our job (forged or mismatched)
            info = JobInfo(job_id, JobState.UNKNOWN,
                           reason=f"scheduler reports owner {info.user}, expected {owner}")
        previous = self._infos.get(job_id)
        self._infos[job_id] = info
        if info.state is not JobState.UNKNOWN:
            self._last_known[job_id] = info
        if job_id in self._answers:
            for future in self._answers.pop(job_id):
                if not future.done():
                    future.set_result(info)
        if previous is not info and not _same(previous, info):
            return StateChange(job_id, owner, previous, info)
        if self.forget_terminal and info.state in _ENDED:
            self.untrack(job_id)
        return None

    async def _announce(self, change: StateChange) -> None:
        for callback in [*self._subscribers, *self._job_subscribers.get(change.job_id, ())]:
            # called here, awaited only when it returns an awaitable: hundreds of spawners
            # subscribe, each callback mostly returns at once (not its job), and a
            # coroutine per call would double what a change costs
            try:
                result = callback(change)
            except Exception:
                log.exception("subscriber %r failed on %s", callback, change.job_id)
                continue
            if inspect.isawaitable(result):
                await _finish(result, callback, change)
        if change.current.state.is_terminal and self.forget_terminal:
            self.untrack(change.job_id)

    # -- lifecycle -------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            await self.clock.wait(self._wake, self.next_delay())
            gap = self._last_poll + self.min_gap - self.clock.now()
            if gap > 0:
                await self.clock.sleep(gap)
            self._wake.clear()
            await self.poll_once()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _finish(result: Awaitable[None], callback: Subscriber, change: StateChange) -> None:
    try:
        await result
    except Exception:
        log.exception("subscriber %r failed on %s", callback, change.job_id)

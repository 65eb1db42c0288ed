"""A virtual clock for the poller (hpcbridge/poller.py ``Clock``): time moves only when a
test calls :meth:`VirtualClock.advance`, so loop tests neither sleep nor depend on load."""

from __future__ import annotations

import asyncio
import heapq

#: event-loop turns that let woken tasks run until they wait on the clock again; the fakes
#: they call do no I/O, so a bounded number of turns is enough and stays deterministic
TURNS = 50


async def let_tasks_run() -> None:
    for _ in range(TURNS):
        await asyncio.sleep(0)


class VirtualClock:
    def __init__(self) -> None:
        self.time = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = 0

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        wakeup: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.time + max(0.0, seconds), self._order, wakeup))
        self._order += 1
        await wakeup  # a cancelled sleep cancels the future; advance() skips it

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        if event.is_set():
            return
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper due on the way, in order."""
        end = self.time + seconds
        await let_tasks_run()
        while True:
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if not self._sleepers or self._sleepers[0][0] > end:
                break
            due, _, wakeup = heapq.heappop(self._sleepers)
            self.time = max(self.time, due)
            wakeup.set_result(None)
            await let_tasks_run()
        self.time = end
        await let_tasks_run()

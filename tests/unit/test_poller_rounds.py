"""StatusPoller's delivery of changes to many subscribers, failing ones among them."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.poller import StateChange, StatusPoller


class Running:
    async def status(self, job_ids: Sequence[str], *, as_user: str | None = None
                     ) -> dict[str, JobInfo]:
        return {j: JobInfo(j, JobState.RUNNING) for j in job_ids}


async def test_every_subscriber_hears_each_change_in_order_failing_ones_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    poller = StatusPoller(Running(), interval=60)
    heard: list[tuple[str, str]] = []

    def sync(change: StateChange) -> None:
        heard.append(("sync", change.job_id))

    async def later(change: StateChange) -> None:
        heard.append(("async", change.job_id))

    def broken(change: StateChange) -> None:
        raise RuntimeError("sync subscriber broke")

    async def broken_later(change: StateChange) -> None:
        raise RuntimeError("async subscriber broke")

    for callback in (broken, sync, broken_later, later):
        poller.subscribe(callback)
    poller.track("1", wake=False)
    poller.track("2", wake=False)
    with caplog.at_level(logging.ERROR, logger="hpcbridge.poller"):
        await poller.poll_once()
    assert heard == [("sync", "1"), ("async", "1"), ("sync", "2"), ("async", "2")]
    assert sum("subscriber broke" in r.exc_text for r in caplog.records if r.exc_text) == 4
    await poller.poll_once()  # nothing changed: nobody hears anything
    assert len(heard) == 4

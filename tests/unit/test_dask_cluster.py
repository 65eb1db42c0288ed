"""HpcSlurmCluster against a scheduler double: clamping, tracking, replacement, arrays.

The double (``FakeSlurm``) records submissions and answers status from a table the test
changes; workers never connect, which is enough for everything about jobs. The real
thing is tests/testbed/test_dask_live.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence

import pytest

import hpcbridge.dask as hd
from hpcbridge.errors import HpcBridgeError, LimitExceeded
from hpcbridge.jobs import JobInfo, JobState
from slurm_testbed.profiles import load_bundled_profile
from hpcbridge.schedulers import SlurmDialect
from hpcbridge.schedulers.base import Budget, QosLimits

from .virtual_time import let_tasks_run

PROFILE = load_bundled_profile("testbed", {})


class FakeSlurm:
    """Submissions become PENDING jobs; tests set states; cancelling cancels."""

    def __init__(self, *, budget: Budget | None = None, others: int = 0) -> None:
        self.dialect = SlurmDialect()
        self.scripts: list[str] = []
        self.log_folders: list[str | None] = []
        self.states: dict[str, JobState] = {}
        self.cancelled: list[str] = []
        self.budget_value = budget
        self.others = others
        self._next = 100
        self.qos_reads = 0
        self.job_lists = 0
        #: raise this from the next QOS read (a scheduler that cannot answer)
        self.qos_error: Exception | None = None

    async def submit(self, user: str, script: str, log_folder: str | None = None) -> str:
        self.log_folders.append(log_folder)
        job_id = str(self._next)
        self._next += 1
        self.scripts.append(script)
        array = re.search(r"#SBATCH --array=0-(\d+)", script)
        for task in range(int(array.group(1)) + 1) if array else ():
            self.states[f"{job_id}_{task}"] = JobState.PENDING
        if not array:
            self.states[job_id] = JobState.PENDING
        return job_id

    async def cancel(self, user: str, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            self.cancelled.append(job_id)
            for known in self.states:
                ours = known == job_id or known.startswith(job_id + "_")
                if ours and not self.states[known].is_terminal:
                    self.states[known] = JobState.CANCELLED

    async def status(self, job_ids: Sequence[str], *, as_user: str | None = None
                     ) -> dict[str, JobInfo]:
        return {j: JobInfo(j, self.states.get(j, JobState.COMPLETED), user=as_user)
                for j in job_ids}

    def live(self) -> list[str]:
        return [j for j, s in self.states.items() if not s.is_terminal]

    async def associations(self, user: str) -> list:
        return []

    async def qos(self, names: Sequence[str] = (), *, as_user: str | None = None) -> list:
        self.qos_reads += 1
        if self.qos_error is not None:
            error, self.qos_error = self.qos_error, None
            raise error
        return [QosLimits("normal", max_jobs_per_user=4, max_submit_jobs_per_user=8)]

    async def partitions(self, *, as_user: str | None = None) -> list:
        return []

    async def budget(self, account: str, *, as_user: str | None = None) -> Budget | None:
        return self.budget_value

    async def user_jobs(self, user: str) -> list:
        self.job_lists += 1
        rows = [f"{j}|{j}|{s.name}|None|{user}|2|4G|hpcb-dask-x"
                for j, s in self.states.items() if not s.is_terminal]
        rows += [f"{900 + i}|{900 + i}|RUNNING|None|{user}|2|4G|notebook"
                 for i in range(self.others)]
        return self.dialect.parse_user_jobs("\n".join(rows) + "\n", user)


async def settle(cluster, fake: FakeSlurm, rounds: int = 6) -> None:  # type: ignore[no-untyped-def]
    for _ in range(rounds):
        await cluster
        await cluster._poller.poll_once()
        await let_tasks_run()
    await cluster


async def roll_now(cluster) -> None:  # type: ignore[no-untyped-def]
    """One round of the rolling loop, awaited to its end, instead of waiting for the loop."""
    cluster._roll_due(asyncio.get_running_loop().time())
    assert cluster._roll_jobs, "nothing was due for replacement"
    await asyncio.gather(*cluster._roll_jobs)


@pytest.fixture
async def make() -> AsyncIterator:
    made = []

    async def factory(fake: FakeSlurm, **kw):  # type: ignore[no-untyped-def]
        kw.setdefault("walltime", "00:10:00")
        cluster = hd.cluster(PROFILE, user="alice", client=fake, asynchronous=True,
                             poll_interval=3600, scheduler_host="127.0.0.1",
                             scheduler_options={"dashboard": False}, **kw)
        await cluster
        made.append(cluster)
        return cluster

    yield factory
    for cluster in made:
        await cluster.close()


async def test_scale_is_clamped_before_submitting(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    cluster = await make(fake)
    await cluster.scale(10)
    await settle(cluster, fake)
    assert len(fake.scripts) == 4 and len(fake.live()) == 4
    assert all(f"--output={f}/%x-%j.log" in s
               for f, s in zip(fake.log_folders, fake.scripts, strict=True))
    assert fake.log_folders[0] and fake.log_folders[0].endswith("/.hpcbridge/logs")
    assert "not 10: QOS normal allows 4 jobs per user" in cluster.scale_message
    assert "hpcb-dask-" in repr(cluster) and "4 pending" in repr(cluster)
    assert "Batch jobs:</b> 4 pending" in cluster._repr_html_()


async def test_other_jobs_of_the_user_leave_less_room(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm(others=1)
    cluster = await make(fake)
    await cluster.scale(10)
    await settle(cluster, fake)
    assert len(fake.scripts) == 3
    assert "; 1 is already used by your other jobs" in cluster.scale_message


async def test_a_budget_that_cannot_pay_refuses_and_submits_nothing(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm(budget=Budget("proj_b", {"cpu": 60}, {"cpu": 0}))
    cluster = await make(fake, walltime="00:20:00", account="proj_b")
    with pytest.raises(LimitExceeded, match="core-hours"):
        await cluster.scale(2)
    await settle(cluster, fake)
    assert fake.scripts == []
    await cluster.scale(1)  # 40 core-minutes: affordable
    await settle(cluster, fake)
    assert len(fake.scripts) == 1


async def test_a_failed_job_is_replaced(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    cluster = await make(fake)
    await cluster.scale(2)
    await settle(cluster, fake)
    first = fake.live()[0]
    fake.states[first] = JobState.FAILED
    await settle(cluster, fake)
    assert len(fake.scripts) == 3 and len(fake.live()) == 2
    assert cluster.failures == 1


async def test_a_retired_worker_is_replaced_without_counting_a_failure(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    cluster = await make(fake)
    await cluster.scale(1)
    await settle(cluster, fake)
    fake.states[fake.live()[0]] = JobState.COMPLETED
    await settle(cluster, fake)
    assert len(fake.scripts) == 2 and cluster.failures == 0


async def test_failures_are_retried_a_bounded_number_of_times(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    cluster = await make(fake, max_failures=2)
    await cluster.scale(1)
    await settle(cluster, fake)
    for _ in range(5):
        for job_id in fake.live():
            fake.states[job_id] = JobState.FAILED
        await settle(cluster, fake)
    assert len(fake.scripts) == 3  # the first and two replacements
    assert cluster.error and "keep failing" in cluster.error
    assert "ERROR" in repr(cluster)
    with pytest.raises(HpcBridgeError, match="keep failing"):
        await cluster.scale(2)
    cluster.reset_failures()
    await cluster.scale(1)
    await settle(cluster, fake)
    assert len(fake.scripts) == 4


async def test_arrays_submit_once_and_replace_single_tasks(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    cluster = await make(fake, arrays=True, cores=1, memory="1G")
    await cluster.scale(4)
    await settle(cluster, fake)
    assert len(fake.scripts) == 1 and "#SBATCH --array=0-3" in fake.scripts[0]
    assert sorted(cluster.plan) == sorted(f"{cluster._name}-0-{t}" for t in range(4))
    fake.states["100_2"] = JobState.FAILED
    await settle(cluster, fake)
    assert len(fake.scripts) == 2 and "--array" not in fake.scripts[1]
    assert len(fake.live()) == 4 and len(cluster.plan) == 4
    await cluster.close()
    assert fake.live() == [] and cluster.live_job_ids() == []


async def test_scaling_an_array_down_cancels_tasks(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    cluster = await make(fake, arrays=True, cores=1, memory="1G")
    await cluster.scale(4)
    await settle(cluster, fake)
    await cluster.scale(2)
    await settle(cluster, fake)
    assert sorted(fake.live()) == ["100_0", "100_1"]
    assert len(cluster.plan) == 2


async def test_close_cancels_every_job(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    cluster = await make(fake)
    await cluster.scale(3)
    await settle(cluster, fake)
    await cluster.close()
    # each job once: closing does not cancel again what the jobs' own close cancelled
    assert fake.live() == [] and sorted(fake.cancelled) == ["100", "101", "102"]


async def test_scale_down_closes_whole_jobs_only(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    cluster = await make(fake, cores=2, memory="2G", processes=2)
    await cluster.scale(4)
    await settle(cluster, fake)
    assert len(fake.scripts) == 2 and len(cluster.plan) == 4
    name = cluster._name
    await cluster.scale_down([f"{name}-0-0"])  # half of a job: kept
    await settle(cluster, fake)
    assert len(cluster.plan) == 4 and len(fake.live()) == 2
    await cluster.scale_down([f"{name}-0-0", f"{name}-0-1"])
    await settle(cluster, fake)
    assert len(cluster.plan) == 2 and len(fake.live()) == 1


async def test_adapt_maximum_is_clamped(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    cluster = await make(fake)
    adaptive = cluster.adapt(minimum=0, maximum=40, interval="10s")
    await cluster.adapt_limits
    assert adaptive.maximum == 4
    assert cluster.scale_message.startswith("adapting up to 4 workers, not 40")
    assert adaptive.worker_key is not None
    adaptive.stop()


def test_importing_the_package_imports_no_dask() -> None:
    import subprocess
    import sys

    code = "import sys, hpcbridge.dask, hpcbridge.dask.limits; print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


async def test_rolling_starts_a_successor_then_retires_the_old_job(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    cluster = await make(fake)
    cluster._roll_after, cluster._roll_deadline = 0.0, 0.5  # instead of minutes
    await cluster._stop_rolling()  # the test runs its rounds: roll_now()
    await cluster.scale(1)
    await settle(cluster, fake)
    (entry,) = cluster.worker_spec
    old = fake.live()[0]
    cluster._worker_arrived((entry, None))  # the fake's workers never connect: say one did
    await roll_now(cluster)
    await settle(cluster, fake)
    assert fake.states[old] is JobState.CANCELLED
    assert len(fake.scripts) == 2 and len(fake.live()) == 1 and len(cluster.plan) == 1
    assert entry not in cluster.worker_spec and cluster.failures == 0


async def test_rolling_without_room_keeps_the_job_until_it_ends(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm(others=3)  # QOS normal: 4 jobs, 3 held elsewhere, 1 ours
    cluster = await make(fake)
    cluster._roll_after, cluster._roll_deadline = 0.0, 0.5
    await cluster._stop_rolling()  # the test runs its rounds: roll_now()
    await cluster.scale(1)
    await settle(cluster, fake)
    (entry,) = cluster.worker_spec
    cluster._worker_arrived((entry, None))
    await roll_now(cluster)
    await settle(cluster, fake)
    assert len(fake.scripts) == 1 and entry in cluster.worker_spec


async def test_adapt_never_closes_a_successor_before_it_takes_over(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    cluster = await make(fake)
    await cluster.scale(1)
    await settle(cluster, fake)
    successor = await cluster._start_successor()
    await settle(cluster, fake)
    await cluster.scale_down([successor])
    assert successor in cluster.worker_spec and len(fake.live()) == 2


async def test_the_cost_of_a_scale_request_is_kept(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm(budget=Budget("proj_b", {"cpu": 600}, {"cpu": 0}))
    cluster = await make(fake, walltime="00:10:00", account="proj_b")
    await cluster.scale(2)
    assert cluster.last_plan.cost_core_hours == pytest.approx(40 / 60)
    assert cluster.last_plan.budget_core_hours == 10.0


async def test_a_clamped_cluster_grows_when_other_jobs_end(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm(others=3)
    cluster = await make(fake)
    cluster.regrow_interval = 0.1
    cluster._regrow.cancel()
    cluster._regrow = asyncio.ensure_future(cluster._regrow_loop())
    await cluster.scale(3)
    await settle(cluster, fake)
    assert len(fake.scripts) == 1 and cluster.last_plan.clamped
    fake.others = 0
    cluster._limits = None  # the cached limits would otherwise last LIMITS_TTL seconds
    for _ in range(30):
        await asyncio.sleep(0.1)
        if len(fake.scripts) == 3:
            break
    await settle(cluster, fake)
    assert len(fake.scripts) == 3 and not cluster.last_plan.clamped


async def test_a_second_cluster_reuses_the_static_limits(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    first = await make(fake)
    await first.scale(10)
    await settle(first, fake)
    second = await make(fake)
    await second.scale(10)
    await settle(second, fake)
    assert fake.qos_reads == 1
    # the QOS bound still holds across both: the second sees the first's jobs as others
    assert len(fake.live()) == 4 and len(second.plan) == 0
    assert "; 4 are already used by your other jobs" in second.scale_message


async def test_a_failed_limits_read_is_not_shared(make) -> None:  # type: ignore[no-untyped-def]
    from hpcbridge.errors import SchedulerUnavailable

    fake = FakeSlurm()
    fake.qos_error = SchedulerUnavailable("slurmdbd is down")
    first = await make(fake)
    await first.current_limits()
    second = await make(fake)
    limits = await second.current_limits()
    assert fake.qos_reads == 2 and limits.qos is not None


async def test_an_array_task_rolls_to_a_successor_job(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm()
    cluster = await make(fake, arrays=True, cores=1, memory="1G")
    cluster._roll_after, cluster._roll_deadline = 0.0, 0.5
    await cluster._stop_rolling()  # the test runs its rounds: roll_now()
    await cluster.scale(2)
    await settle(cluster, fake)
    (entry,) = cluster.worker_spec
    cluster._worker_arrived((entry, 1))  # task 1's worker arrived (the fake's never do)
    await roll_now(cluster)
    await settle(cluster, fake)
    assert fake.states["100_1"] is JobState.CANCELLED
    assert fake.states["100_0"] is JobState.PENDING  # the other task keeps running
    assert len(fake.scripts) == 2 and "--array" not in fake.scripts[1]
    assert sorted(fake.live()) == ["100_0", "101"] and len(cluster.plan) == 2
    assert cluster.worker_spec[entry]["group"] == ["-0"] and cluster.failures == 0


async def test_an_array_task_without_room_is_replaced_when_it_ends(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm(others=2)  # QOS normal: 4 jobs, 2 held elsewhere, 2 ours
    cluster = await make(fake, arrays=True, cores=1, memory="1G")
    cluster._roll_after, cluster._roll_deadline = 0.0, 0.5
    await cluster._stop_rolling()  # the test runs its rounds: roll_now()
    await cluster.scale(2)
    await settle(cluster, fake)
    (entry,) = cluster.worker_spec
    cluster._worker_arrived((entry, 0))
    await roll_now(cluster)
    await settle(cluster, fake)
    assert len(fake.scripts) == 1  # no room for a successor: nothing submitted early
    fake.states["100_0"] = JobState.COMPLETED  # its worker retired and left
    await settle(cluster, fake)
    assert len(fake.scripts) == 2 and len(fake.live()) == 2 and cluster.failures == 0


async def test_scale_right_after_start_shares_the_prefetched_limits(make) -> None:  # type: ignore[no-untyped-def]
    fake = FakeSlurm(others=1)
    cluster = await make(fake)  # started: the limits are being read
    await cluster.scale(10)
    await settle(cluster, fake)
    assert (fake.qos_reads, fake.job_lists) == (1, 1)
    assert len(fake.live()) == 3  # and they still count the other job

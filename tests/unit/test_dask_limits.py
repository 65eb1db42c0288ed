"""What a user may still run as Dask worker jobs: hpcbridge.dask.limits (pure)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcbridge.dask.limits import (
    Limits,
    OtherJobs,
    ProfileCaps,
    WorkerShape,
    adapt_plan,
    job_bounds,
    lifetime_options,
    plan_scale,
    roll_after,
)
from hpcbridge.errors import LimitExceeded
from hpcbridge.schedulers.base import Association, Budget, PartitionInfo, QosLimits

NORMAL = QosLimits("normal", max_jobs_per_user=4, max_submit_jobs_per_user=8)
SHAPE = WorkerShape(cores=4, memory_mb=8192, processes=4, walltime=timedelta(minutes=30),
                    partition="debug", account="proj_a")
ONE = WorkerShape(cores=2, memory_mb=4096, processes=1, walltime=timedelta(minutes=30),
                  partition="debug", account="proj_b")


def test_the_issue_example_message() -> None:
    plan = plan_scale(40, SHAPE, Limits(qos=NORMAL))
    assert (plan.jobs, plan.workers) == (4, 16)
    assert plan.message == ("scaling to 16 workers, not 40: QOS normal allows 4 jobs per "
                            "user; each job runs 4 workers")
    assert plan.clamped


def test_a_request_that_fits_has_no_message() -> None:
    plan = plan_scale(8, SHAPE, Limits(qos=NORMAL))
    assert (plan.jobs, plan.workers, plan.message, plan.binding) == (2, 8, None, ())


def test_workers_round_up_to_whole_jobs() -> None:
    assert plan_scale(5, SHAPE, Limits(qos=NORMAL)).jobs == 2


def test_other_jobs_of_the_user_count() -> None:
    limits = Limits(qos=NORMAL, others=OtherJobs(count=1, cores=2, memory_mb=4096))
    plan = plan_scale(10, ONE, limits)
    assert plan.jobs == 3
    assert "allows 4 jobs per user; 1 is already used by your other jobs" in plan.message


def test_no_limits_known_means_what_was_asked() -> None:
    assert plan_scale(100, ONE, Limits()).jobs == 100


def test_zero_is_always_allowed() -> None:
    plan = plan_scale(0, ONE, Limits(qos=NORMAL, others=OtherJobs(count=9)))
    assert (plan.jobs, plan.message) == (0, None)


def test_negative_is_refused() -> None:
    with pytest.raises(LimitExceeded):
        plan_scale(-1, ONE, Limits())


def test_ties_name_every_binding_limit() -> None:
    caps = ProfileCaps(max_workers=4)
    plan = plan_scale(10, ONE, Limits(qos=NORMAL, caps=caps))
    assert "QOS normal allows 4 jobs per user" in plan.message
    assert "dask max_workers allows 4 jobs" in plan.message


def test_only_the_tightest_limit_is_named() -> None:
    caps = ProfileCaps(max_workers=6)
    plan = plan_scale(10, ONE, Limits(qos=NORMAL, caps=caps))
    assert "max_workers" not in plan.message and "QOS normal" in plan.message


def test_qos_tres_per_user_in_cores() -> None:
    qos = QosLimits("big", max_tres_per_user={"cpu": 10})
    plan = plan_scale(10, ONE, Limits(qos=qos))
    assert plan.jobs == 5
    assert "QOS big allows 10 cores per user, 2 cores per job" in plan.message


def test_qos_tres_per_user_in_memory_with_other_jobs() -> None:
    qos = QosLimits("big", max_tres_per_user={"mem": 16384})
    plan = plan_scale(10, ONE, Limits(qos=qos, others=OtherJobs(1, 2, 4096)))
    assert plan.jobs == 3


def test_association_limits() -> None:
    assoc = Association("proj_a", "alice", max_jobs=2, grp_tres={"cpu": 100})
    plan = plan_scale(10, ONE, Limits(association=assoc))
    assert plan.jobs == 2 and "account proj_a allows 2 jobs per user" in plan.message


def test_association_group_cores() -> None:
    assoc = Association("proj_a", "alice", grp_tres={"cpu": 6})
    assert plan_scale(10, ONE, Limits(association=assoc)).jobs == 3


def test_submit_limit_counts_pending_jobs_of_the_user() -> None:
    qos = QosLimits("q", max_submit_jobs_per_user=3)
    assert plan_scale(10, ONE, Limits(qos=qos, others=OtherJobs(count=2))).jobs == 1


def test_profile_caps_in_cores_and_memory() -> None:
    caps = ProfileCaps(max_cores=8, max_memory_mb=16384, partition_max_jobs=10)
    plan = plan_scale(10, ONE, Limits(caps=caps))
    assert plan.jobs == 4
    assert "max_cores" in plan.message and "max_memory" in plan.message


def test_partition_cap_of_the_profile_counts_other_jobs() -> None:
    caps = ProfileCaps(partition_max_jobs=4)
    plan = plan_scale(10, ONE, Limits(caps=caps, others=OtherJobs(count=3)))
    assert plan.jobs == 1 and "partition debug (site profile)" in plan.message


def test_limits_used_up_give_zero_jobs() -> None:
    plan = plan_scale(3, ONE, Limits(qos=NORMAL, others=OtherJobs(count=6)))
    assert plan.jobs == 0
    assert plan.message.startswith("scaling to 0 workers, not 3")


def test_walltime_over_the_partition_is_refused() -> None:
    part = PartitionInfo("debug", max_walltime=timedelta(minutes=10))
    with pytest.raises(LimitExceeded, match="partition debug's limit 0:10:00"):
        plan_scale(1, ONE, Limits(partition=part))


def test_walltime_over_the_qos_is_refused() -> None:
    qos = QosLimits("short", max_walltime=timedelta(minutes=5))
    with pytest.raises(LimitExceeded, match="QOS short"):
        plan_scale(1, ONE, Limits(qos=qos))


BUDGET = Budget("proj_b", limit_minutes={"cpu": 60}, used_minutes={"cpu": 0})


def test_budget_refuses_what_it_cannot_pay() -> None:
    with pytest.raises(LimitExceeded) as info:
        plan_scale(4, ONE, Limits(qos=NORMAL, budget=BUDGET))
    text = str(info.value)
    assert "4 new jobs × 2 cores × 0:30:00 cost 4.00 core-hours" in text
    assert "account proj_b has 1.00 core-hours left (enough for 1 job" in text


def test_budget_pays_what_it_can() -> None:
    plan = plan_scale(1, ONE, Limits(budget=BUDGET))
    assert plan.jobs == 1 and plan.cost_core_hours == 1.0 and plan.budget_core_hours == 1.0


def test_budget_counts_jobs_already_running_as_reserved() -> None:
    with pytest.raises(LimitExceeded):
        plan_scale(2, ONE, Limits(budget=BUDGET), current_jobs=1, reserved_core_minutes=60)
    plan = plan_scale(1, ONE, Limits(budget=BUDGET), current_jobs=1, reserved_core_minutes=60)
    assert plan.cost_core_hours == 0


def test_budget_used_up_refuses_one_job() -> None:
    spent = Budget("proj_b", limit_minutes={"cpu": 60}, used_minutes={"cpu": 59})
    with pytest.raises(LimitExceeded, match="enough for 0 jobs"):
        plan_scale(1, ONE, Limits(budget=spent))


def test_billing_budget_is_used_when_there_is_no_cpu_budget() -> None:
    billing = Budget("proj_b", limit_minutes={"billing": 120}, used_minutes={"billing": 0})
    assert plan_scale(2, ONE, Limits(budget=billing)).jobs == 2
    with pytest.raises(LimitExceeded):
        plan_scale(3, ONE, Limits(budget=billing))


def test_scaling_down_is_never_refused_by_the_budget() -> None:
    plan = plan_scale(1, ONE, Limits(budget=BUDGET), current_jobs=3,
                      reserved_core_minutes=180)
    assert plan.jobs == 1 and plan.cost_core_hours == 0


def test_job_bounds_lists_every_known_limit() -> None:
    limits = Limits(qos=NORMAL, association=Association("a", "u", max_jobs=9),
                    caps=ProfileCaps(max_workers=3))
    assert sorted(b.jobs for b in job_bounds(ONE, limits)) == [3, 4, 8, 9]


def test_adapt_plan_clamps_and_explains() -> None:
    jobs, message = adapt_plan(math.inf, SHAPE, Limits(qos=NORMAL))
    assert jobs == 4
    assert message == ("adapting up to 16 workers: QOS normal allows 4 jobs per user; "
                       "each job runs 4 workers")


def test_adapt_plan_within_limits() -> None:
    assert adapt_plan(8, SHAPE, Limits(qos=NORMAL)) == (2, None)


def test_adapt_plan_clamps_to_the_budget_instead_of_refusing() -> None:
    jobs, message = adapt_plan(10, ONE, Limits(budget=BUDGET))
    assert jobs == 1 and "budget (1.00 core-hours left) pays for 1 more job" in message


def test_adapt_plan_needs_some_maximum() -> None:
    with pytest.raises(LimitExceeded):
        adapt_plan(math.inf, ONE, Limits())


@pytest.mark.parametrize("minutes", [2, 3, 5, 30, 60, 240, 48 * 60])
def test_lifetime_ends_before_the_walltime(minutes: int) -> None:
    walltime = timedelta(minutes=minutes)
    lifetime, stagger = lifetime_options(walltime)
    assert lifetime + stagger < walltime
    assert walltime - (lifetime + stagger) >= min(timedelta(minutes=1), walltime / 2)
    assert lifetime >= walltime / 4 and stagger > timedelta(0)


def test_lifetime_for_three_minutes() -> None:
    assert lifetime_options(timedelta(minutes=3)) == (timedelta(seconds=111),
                                                      timedelta(seconds=9))


@given(requested=st.integers(0, 500), procs=st.integers(1, 8), maxj=st.integers(0, 50),
       others=st.integers(0, 60))
def test_never_more_jobs_than_any_limit(requested: int, procs: int, maxj: int,
                                        others: int) -> None:
    shape = WorkerShape(cores=procs, memory_mb=1024, processes=procs,
                        walltime=timedelta(minutes=10))
    limits = Limits(qos=QosLimits("q", max_jobs_per_user=maxj), others=OtherJobs(others))
    plan = plan_scale(requested, shape, limits)
    assert plan.jobs + others <= max(maxj, others)
    assert plan.jobs == min(math.ceil(requested / procs), max(0, maxj - others))
    assert plan.workers == plan.jobs * procs
    assert (plan.message is not None) == (plan.workers < requested)


@pytest.mark.parametrize("minutes", [1, 2, 3, 30, 240])
def test_rolling_starts_a_successor_before_the_lifetime_backstop(minutes: int) -> None:
    lifetime, stagger = lifetime_options(timedelta(minutes=minutes))
    after = roll_after(lifetime, stagger)
    assert lifetime / 2 <= after < lifetime - stagger
    assert lifetime - stagger - after >= min(timedelta(seconds=10), lifetime / 2 - stagger)


def test_rolling_for_a_one_minute_walltime() -> None:
    lifetime, stagger = lifetime_options(timedelta(minutes=1))
    assert (lifetime, stagger, roll_after(lifetime, stagger)) == (
        timedelta(seconds=27), timedelta(seconds=3), timedelta(seconds=14))


def test_cost_against_the_budget_is_shown() -> None:
    plan = plan_scale(1, ONE, Limits(budget=BUDGET))
    assert plan.cost_message == "new jobs cost 1.00 core-hours of the 1.00 left"
    assert plan_scale(1, ONE, Limits()).cost_message == "new jobs cost 1.00 core-hours"

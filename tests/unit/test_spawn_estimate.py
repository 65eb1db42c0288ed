"""Before submitting: free resources by GPU type, the start forecast, the cost against
the account's budget, GPU types in requests, and one shared sinfo for every form."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from datetime import datetime, timedelta

import pytest

from hpcbridge.errors import RequestError
from hpcbridge.profiles import JobRequest, validate_request
from hpcbridge.profiles.render import render_script
from hpcbridge.schedulers import PbsDialect, SlurmDialect
from hpcbridge.schedulers.base import Budget, Estimate
from hpcbridge.site import Site
from hpcbridge.spawner import estimate, form
from slurm_testbed.profiles import load_bundled_profile

SLURM = SlurmDialect()
PROFILE = load_bundled_profile("testbed", {})

SINFO = """\
c1|debug|0/8/0/8|idle|(null)|(null)
c2|debug*|8/0/0/8|alloc|(null)|(null)
c3|debug|2/6/0/8|mix|gpu:a100:2(S:0),gpu:v100:1|gpu:a100:1(IDX:0,2),gpu:v100:0(IDX:N/A)
c4|debug|0/0/8/8|drain|gpu:a100:2|gpu:a100:0(IDX:N/A)
c5|gpu|0/8/0/8|idle*|gpu:2|gpu:0
odd line
"""


def test_availability_sums_nodes_by_partition_with_free_gpus_by_type():
    found = {a.partition: a for a in SLURM.parse_availability(SINFO)}
    debug = found["debug"]
    assert (debug.idle_cpus, debug.total_cpus) == (14, 32)  # the drained node's are not free
    assert (debug.idle_nodes, debug.total_nodes) == (1, 4)
    assert debug.gpus == {"a100": (1, 4), "v100": (1, 1)}
    gpu = found["gpu"]  # not responding: counted, nothing free
    assert (gpu.idle_cpus, gpu.idle_nodes, gpu.gpus) == (0, 0, {"": (0, 2)})


def test_the_availability_query_is_one_sinfo_per_node_and_partition():
    argv = SLURM.availability_command().argv
    assert argv[:3] == ("sinfo", "--noheader", "--Node") and "GresUsed" in argv[3]
    assert PbsDialect().availability_command() is None


def test_estimate_is_sbatch_test_only_of_the_script_and_reads_its_forecast():
    command = SLURM.estimate_command("#!/bin/bash\n")
    assert command.argv == ("sbatch", "--test-only") and command.stdin == b"#!/bin/bash\n"
    found = SLURM.parse_estimate("", "sbatch: Job 6 to start at 2026-11-30T07:41:17 using 1 "
                                     "processors on nodes c[1-2] in partition gpu\n")
    assert found == Estimate(datetime(2026, 11, 30, 7, 41, 17), ("c1", "c2"), "gpu")
    assert SLURM.parse_estimate("", "allocation failure: nothing") is None
    pbs = PbsDialect()
    assert pbs.estimate_command("x") is None and not pbs.capabilities.estimates
    assert SLURM.capabilities.estimates


def test_cost_is_cores_times_nodes_times_walltime():
    req = validate_request(PROFILE, JobRequest(user="carol", partition="regular", cores=4,
                                               nodes=2, walltime="01:00:30"))
    assert SLURM.charge_minutes(req) == {"cpu": 488, "billing": 488}  # minutes round up
    assert PbsDialect().charge_minutes(req) == {"cpu": 488}


def test_cost_sentence_against_the_budget():
    budget = Budget("proj_b", {"cpu": 240}, {"cpu": 60})
    assert estimate.cost_sentence({"cpu": 480}, "proj_b", budget) == (
        "this request costs 8 core-hours; account proj_b has 3 left", True)
    assert estimate.cost_sentence({"cpu": 90}, "proj_b", budget) == (
        "this request costs 1.5 core-hours; account proj_b has 3 left", False)
    billing = Budget("proj_b", {"billing": 60}, {"billing": 60})
    assert estimate.cost_sentence({"cpu": 1, "billing": 1}, "proj_b", billing)[1] is True
    assert estimate.cost_sentence({"cpu": 60}, "proj_a", None) == (
        "this request costs 1 core-hour", False)
    assert estimate.cost_sentence({"cpu": 60}, None, budget) == (
        "this request costs 1 core-hour", False)


def test_start_sentence():
    now = datetime(2026, 11, 30, 7, 0, 0)
    assert "unknown on this scheduler" in estimate.start_sentence(None, False, now)
    soon = Estimate(now + timedelta(seconds=20), ("c1",))
    assert estimate.start_sentence(soon, True, now) == (
        "estimated start: now on c1, if submitted at once")
    later = Estimate(now + timedelta(minutes=42), ("c3",))
    assert estimate.start_sentence(later, True, now) == (
        "estimated start: 2026-11-30 07:42 (cluster time), in about 42 minutes on c3")


def test_a_typed_gpu_request_names_the_type_in_the_gres():
    req = validate_request(PROFILE, JobRequest.from_options(
        {"partition": "gpu", "gpus": "fake:2"}, user="bob"))
    assert (req.gpus, req.gpu_type) == (2, "fake")
    assert "#SBATCH --gres=gpu:fake:2" in render_script(PROFILE, req)
    plain = validate_request(PROFILE, JobRequest.from_options(
        {"partition": "gpu", "gpus": "1"}, user="bob"))
    assert "#SBATCH --gres=gpu:1" in render_script(PROFILE, plain)


@pytest.mark.parametrize(("options", "problem"), [
    ({"partition": "gpu", "gpus": "a100:1"},
     "no GPU type 'a100' on partition gpu — GPU types: fake"),
    ({"partition": "debug", "gpus": "fake:1"},
     "partition debug has no GPUs"),
    ({"partition": "gpu", "gpus": "fake;x:1"},
     "gpus must be a count or TYPE:COUNT (e.g. a100:2), not 'fake;x:1'"),
    ({"partition": "gpu", "gpus": "fake:x"}, "gpus must be a whole number, not 'x'"),
])
def test_a_bad_gpu_type_is_refused_with_the_choices(options, problem):
    with pytest.raises(RequestError) as refused:
        validate_request(PROFILE, JobRequest.from_options(options, user="bob"))
    assert problem in str(refused.value)


def test_the_form_sends_type_and_count_as_one_option():
    assert form.options_from_form({"gpus": ["2"], "gpu_type": ["fake"]}) == {"gpus": "fake:2"}
    assert form.options_from_form({"gpus": ["0"], "gpu_type": ["fake"]}) == {"gpus": "0"}
    assert form.options_from_form({"gpus": ["1"], "gpu_type": [""]}) == {"gpus": "1"}


def test_the_form_shows_cards_a_partition_table_with_free_gpus_and_the_snapshot_age():
    free = {("tb", a.partition): a for a in SLURM.parse_availability(
        "c3|gpu|2/6/0/8|mix|gpu:fake:2|gpu:fake:1(IDX:0)\n")}
    html = form.render(PROFILE, "bob", ["proj_a"], free=free, free_age=12.7)
    assert 'id="hpcb-preset" class="hpcb-group"><legend>Preset</legend>' in html
    assert ("Preset small on partition regular: 2 cores, 4G memory, walltime 01:00:00"
            in html)
    assert "Limits: up to 8 cores, 16G memory, 2 GPUs (fake) per node; 1 node;" in html
    assert "6 of 8 cores, 0 of 1 whole nodes; GPUs fake: 1 of 2" in html
    assert "Free now: from the scheduler 12 s ago" in html
    assert '<option value="fake">fake</option>' in html
    assert 'aria-live="polite"' in html
    refused = form.render(PROFILE, "bob", refused=form.Refused(
        {"partition": "gpu", "gpus": "fake:1"}, (("account", "this request costs 8"),)))
    assert '<option value="fake" selected>' in refused and 'value="1"' in refused


def test_every_form_load_shares_one_availability_query():
    calls = []

    class Client:
        async def availability(self, as_user=None):
            calls.append(as_user)
            await asyncio.sleep(0.01)
            return SLURM.parse_availability("c1|debug|0/8/0/8|idle|(null)|(null)\n")

    async def main():
        site = Site(PROFILE)
        site._clients["tb"] = Client()  # type: ignore[assignment]
        assert site.availability_age() is None
        answers = await asyncio.gather(*(site.availability() for _ in range(50)))
        assert all(a["debug"].idle_cpus == 8 for a in answers)
        await site.availability()
        age = site.availability_age()
        assert age is not None and age >= 0

    asyncio.run(main())
    assert calls == ["hpcbridge"]  # one query, as the status user, for 51 form loads


class _Site:
    """What preview() asks of a site: profile, client(cluster).dialect, accounts, budget."""

    def __init__(self, profile, dialect, budget=None) -> None:
        self.profile, self.budget_of = profile, budget
        self.asked: list[str] = []

        async def estimate(user, script):
            self.asked.append(script)
            return Estimate(datetime.now() + timedelta(minutes=30), ("c1",), "debug")

        self._client = SimpleNamespace(dialect=dialect, estimate=estimate)

    def client(self, cluster=None):
        return self._client

    async def user_accounts(self, cluster, user):
        return ["proj_b"]

    async def budget(self, cluster, account, user):
        return self.budget_of


def test_preview_on_pbs_says_the_start_is_unknown_and_asks_nothing():
    site = _Site(load_bundled_profile("testbed-pbs", {}), PbsDialect())
    answer = asyncio.run(estimate.preview(site, "carol", {"preset": "small"}, "hpcb-nb-carol"))
    assert answer == {"start": "Estimated start: unknown on this scheduler.",
                      "cost": "This request costs 2 core-hours.", "over": False}
    assert site.asked == []


def test_preview_on_slurm_forecasts_the_rendered_script_and_prices_it():
    site = _Site(PROFILE, SLURM, Budget("proj_b", {"cpu": 60}, {"cpu": 45}))
    answer = asyncio.run(estimate.preview(site, "carol", {"preset": "debug"}, "hpcb-nb-carol"))
    assert answer["start"].startswith("Estimated start: ") and "in about 30 minutes" in \
        answer["start"]
    assert answer == {**answer, "cost": "This request costs 0.5 core-hours; account proj_b "
                                        "has 0.25 left.", "over": True}
    (script,) = site.asked
    assert "#SBATCH --partition=debug" in script and "#SBATCH --time=00:30:00" in script
    bad = asyncio.run(estimate.preview(site, "carol", {"cores": "99"}, "hpcb-nb-carol"))
    assert bad == {"problems": [["cores", "Cores 99 is over partition debug's "
                                          "cores_per_node 8."]]}
    assert asyncio.run(estimate.unaffordable(site, validate_request(PROFILE, JobRequest(
        user="carol", preset="debug")))) == (
        "this request costs 0.5 core-hours; account proj_b has 0.25 left")

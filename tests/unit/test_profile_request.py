"""validate_request: the one gate for every request, whatever its origin."""

from __future__ import annotations

import pytest

from hpcbridge.errors import LimitExceeded, RequestError
from hpcbridge.profiles import JobRequest, validate_request
from slurm_testbed.profiles import load_bundled_profile
from hpcbridge.profiles.types import Memory, Walltime

PROFILE = load_bundled_profile("testbed", env={})


def test_defaults_come_from_cluster_and_partition() -> None:
    got = validate_request(PROFILE, JobRequest(user="alice"))
    assert (got.cluster, got.partition, got.queue) == ("tb", "debug", "debug")
    assert got.environment == "default"
    assert (got.nodes, got.cores, got.gpus, got.account) == (1, 1, 0, None)
    assert got.memory == Memory.parse("2G")  # 16G node / 8 cores × 1 core
    assert got.walltime == Walltime.parse("00:10:00")  # debug's default_walltime
    assert got.home == "/home/alice"
    assert got.flavor == "slurm"


def test_preset_values_are_overridden_by_explicit_ones() -> None:
    got = validate_request(PROFILE, JobRequest(user="bob", preset="small", cores=4))
    assert (got.partition, got.cores, str(got.memory), str(got.walltime)) == (
        "regular", 4, "4G", "01:00:00"
    )


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (JobRequest(user="a", partition="debug", walltime="03:00:00"),
         "walltime 03:00:00 is over partition debug's max_walltime 00:30:00"),
        (JobRequest(user="a", cores=9), "cores 9 is over partition debug's cores_per_node 8"),
        (JobRequest(user="a", memory="32G"),
         "memory 32G is over partition debug's memory_per_node 16G"),
        (JobRequest(user="a", nodes=2), "nodes 2 is over partition debug's max_nodes 1"),
        (JobRequest(user="a", gpus=1), "partition debug has no GPUs"),
        (JobRequest(user="a", partition="gpu", gpus=3),
         "gpus 3 is over partition gpu's gpus_per_node 2"),
    ],
)
def test_values_over_limits_name_the_limit(request_: JobRequest, message: str) -> None:
    with pytest.raises(LimitExceeded) as info:
        validate_request(PROFILE, request_)
    assert str(info.value) == message


def test_every_problem_is_listed() -> None:
    with pytest.raises(LimitExceeded) as info:
        validate_request(PROFILE, JobRequest(user="a", cores=9, walltime="1:00:00"))
    assert str(info.value).count(";") == 1


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (JobRequest(user="a", partition="gpuu"),
         ("no such partition 'gpuu' on cluster tb — did you mean 'gpu'? "
         "(partitions: debug, regular, gpu)")),
        (JobRequest(user="a", cluster="nope"), "no such cluster 'nope' — clusters: tb"),
        (JobRequest(user="a", preset="huge"),
         "no such preset 'huge' — presets: small, debug, gpu"),
        (JobRequest(user="a", environment="ml"),
         "no such environment 'ml' on cluster tb — environments: default"),
        (JobRequest(user="a", account="proj_a\n#SBATCH --uid=0"), "account "),
        (JobRequest(user="a b"), "user 'a b' is not a valid name"),
        (JobRequest(user="-rf"), "user '-rf' is not a valid name"),
        (JobRequest(user="a", job_name="x;y"), "job_name 'x;y' is not a valid name"),
        (JobRequest(user="a", walltime="1 hour"), "walltime: '1 hour' is not a walltime"),
        (JobRequest(user="a", memory="lots"), "memory: 'lots' is not a memory size"),
        (JobRequest(user="a", cores=0), "cores must be a whole number of at least 1"),
        (JobRequest(user="a", command=("echo", "a\nb")), "must be one line"),
        (JobRequest(user="a", command=()), "command must be a non-empty"),
        (JobRequest(user="a", export_env=("TOKEN=secret",)), "is not an environment variable"),
    ],
)
def test_refusals_say_why(request_: JobRequest, message: str) -> None:
    with pytest.raises(RequestError) as info:
        validate_request(PROFILE, request_)
    assert not isinstance(info.value, LimitExceeded)
    assert message in str(info.value)


def test_from_options_refuses_unknown_keys() -> None:
    with pytest.raises(RequestError, match=r"unknown option 'cmd', 'prologue' — allowed: preset"):
        JobRequest.from_options({"cmd": "id", "prologue": "x", "cores": 1}, user="alice")


def test_from_options_accepts_form_strings_and_empty_fields() -> None:
    options = {"preset": "small", "cores": "3", "memory": "", "walltime": None}
    request = JobRequest.from_options(options, user="alice", job_name="jupyter")
    assert (request.cores, request.memory, request.walltime) == (3, None, None)
    got = validate_request(PROFILE, request)
    assert (got.cores, str(got.memory), got.job_name) == (3, "4G", "jupyter")


@pytest.mark.parametrize("value", [True, "3.5", "1e3", [], "-1"])
def test_from_options_refuses_non_integer_counts(value: object) -> None:
    with pytest.raises(RequestError, match="cores must be a whole number"):
        JobRequest.from_options({"cores": value}, user="alice")


def test_validated_request_is_revalidated() -> None:
    got = validate_request(PROFILE, JobRequest(user="alice", preset="gpu"))
    assert validate_request(PROFILE, got) == got

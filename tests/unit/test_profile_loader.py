"""Loading site profiles: every problem, each at its exact line and column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hpcbridge.errors import ProfileError
from hpcbridge.profiles import load_profile, load_profile_text
from slurm_testbed.profiles import BUNDLED_PROFILES, bundled_profile_text, load_bundled_profile
from hpcbridge.profiles.types import Walltime

REPO = Path(__file__).resolve().parents[2]

BASE = """\
site: demo
clusters:
  c:
    scheduler: slurm
    partitions:
      debug:
        max_walltime: "00:30:00"
        cores_per_node: 8
        memory_per_node: 16G
      gpu:
        max_walltime: "02:00:00"
        cores_per_node: 8
        memory_per_node: 16G
        gpus_per_node: 2
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ProfileError) as info:
        load_profile_text(textwrap.dedent(text), "p.yaml", env or {})
    return info.value.problems


def test_minimal_profile_gets_defaults() -> None:
    profile = load_profile_text(BASE, "p.yaml", {})
    cluster = profile.clusters["c"]
    assert cluster.transport.kind == "local"
    assert list(cluster.environments) == ["default"]
    assert cluster.accounts.source == "scheduler"
    assert cluster.partitions["debug"].max_walltime == Walltime(1800)
    assert cluster.partitions["debug"].max_nodes == 1


def test_unknown_key_has_position_and_close_match() -> None:
    text = BASE.replace('max_walltime: "00:30:00"', 'max_walltme: "00:30:00"')
    assert problems(text) == [
        "p.yaml:6:7: clusters.c.partitions.debug: missing required key 'max_walltime'",
        ("p.yaml:7:9: unknown key 'max_walltme' in clusters.c.partitions.debug"
        " — did you mean 'max_walltime'? (allowed keys: description, queue, max_walltime,"
        " default_walltime, max_nodes, cores_per_node, memory_per_node, gpus_per_node, gres,"
        " gpu_types,"
        " max_jobs_per_user, qos, constraint)"),
    ]


def test_unknown_key_without_close_match_lists_allowed_keys() -> None:
    [problem] = problems(BASE + "colour: blue\n")
    assert problem.startswith("p.yaml:15:1: unknown key 'colour' in (top level) — allowed keys: ")
    assert "clusters" in problem


def test_every_problem_is_reported_at_once() -> None:
    text = BASE.replace("scheduler: slurm", "scheduler: sge").replace(
        "memory_per_node: 16G\n      gpu", "memory_per_node: 16\n      gpu"
    ) + "bogus: 1\n"
    found = problems(text)
    assert [p.split(": ", 1)[0] for p in found] == ["p.yaml:4:16", "p.yaml:9:26", "p.yaml:15:1"]
    assert "no such scheduler 'sge' -- schedulers: slurm, pbs" in found[0]
    assert "16 is not a memory size" in found[1]


def test_bad_walltime_names_the_formats() -> None:
    [problem] = problems(BASE.replace('"02:00:00"', '"2 hours"'))
    assert problem.startswith("p.yaml:11:23: clusters.c.partitions.gpu.max_walltime: '2 hours'")
    assert '"HH:MM:SS"' in problem


def test_unquoted_walltime_stays_a_string() -> None:
    # YAML 1.1 would read 00:30:00 as the integer 1800 (base 60)
    profile = load_profile_text(BASE.replace('"00:30:00"', "00:30:00"), "p.yaml", {})
    assert str(profile.clusters["c"].partitions["debug"].max_walltime) == "00:30:00"


def test_bare_number_walltime_is_refused() -> None:
    [problem] = problems(BASE.replace('"00:30:00"', "30"))
    assert problem.startswith("p.yaml:7:23: clusters.c.partitions.debug.max_walltime: 30 ")


def test_duplicate_key_points_at_second_and_names_first() -> None:
    text = BASE + "      debug:\n        max_walltime: \"00:10:00\"\n"
    assert "p.yaml:15:7: duplicate key 'debug' (first at line 6)" in problems(text)


def test_yaml_syntax_error_has_position() -> None:
    [problem] = problems("site: demo\nclusters: [a\n")
    assert problem.startswith("p.yaml:3:1: YAML syntax error")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_profile_must_be_a_mapping(text: str) -> None:
    [problem] = problems(text)
    assert problem.startswith("p.yaml:1:1: ")


def test_invalid_name_in_mapping_key() -> None:
    [problem] = problems(BASE.replace("      gpu:", "      'g p u':"))
    assert problem.startswith("p.yaml:10:7: key 'g p u': 'g p u' is not a valid name")


def test_transport_kind_and_missing_fields() -> None:
    text = BASE.replace("scheduler: slurm", "scheduler: slurm\n    transport: {kind: telnet}")
    [problem] = problems(text)
    assert problem == (
        "p.yaml:5:16: clusters.c.transport: kind 'telnet' is not allowed — allowed: "
        "'ssh', 'local'"
    )
    text = BASE.replace("scheduler: slurm", "scheduler: slurm\n    transport: {kind: ssh}")
    assert problems(text) == [
        "p.yaml:5:5: clusters.c.transport: missing required key 'host'",
        "p.yaml:5:5: clusters.c.transport: missing required key 'known_hosts'",
    ]


SSH = BASE.replace(
    "scheduler: slurm",
    "scheduler: slurm\n    transport:\n      kind: ssh\n      host: ${TB_HOST:-login}\n"
    "      port: ${TB_PORT}\n      known_hosts: ${TB_DIR:-/state}/known_hosts",
)


def test_env_expansion_in_transport() -> None:
    profile = load_profile_text(SSH, "p.yaml", {"TB_PORT": "2222", "TB_HOST": "127.0.0.1"})
    transport = profile.clusters["c"].transport
    assert (transport.host, transport.port, transport.known_hosts) == (
        "127.0.0.1", 2222, "/state/known_hosts"
    )


def test_unset_env_variable_is_reported_once_at_its_value() -> None:
    assert problems(SSH) == [
        ("p.yaml:8:13: environment variable TB_PORT is not set "
        "(write ${TB_PORT:-DEFAULT} to give a default)")
    ]


def test_dollar_outside_transport_and_hub_is_kept() -> None:
    text = BASE + "    environments:\n      default:\n        prologue: ['echo ${HOME}']\n"
    profile = load_profile_text(text, "p.yaml", {"HOME": "/nowhere"})
    assert profile.clusters["c"].environments["default"].prologue == ["echo ${HOME}"]


@pytest.mark.parametrize(
    ("field", "value", "col", "message"),
    [
        ("python", "python3", 17, "'python3' is not a valid absolute path"),
        ("modules", "['gcc; rm -rf /']", 19, "'gcc; rm -rf /' is not a valid module name"),
        ("venv", "'/opt/$(id)'", 15, "is not a valid absolute path"),
        ("prologue", "['ok', \"two\\nlines\"]", 26, "must be one line of printable"),
    ],
)
def test_environment_values_follow_their_grammar(
    field: str, value: str, col: int, message: str
) -> None:
    text = BASE + f"    environments:\n      default:\n        {field}: {value}\n"
    [problem] = problems(text)
    assert problem.startswith(f"p.yaml:17:{col}: clusters.c.environments.default.{field}")
    assert message in problem


PRESET = BASE + """\
notebooks:
  - name: small
    partition: debug
    cores: 2
    walltime: "01:00:00"
"""


def test_preset_over_partition_limit_points_at_the_value() -> None:
    assert problems(PRESET) == [
        ("p.yaml:19:15: notebooks[0].walltime: walltime 01:00:00 is over partition debug's "
        "max_walltime 00:30:00")
    ]


def test_gpu_preset_on_partition_without_gpus() -> None:
    text = PRESET.replace('"01:00:00"', '"00:10:00"') + "    gpus: 1\n"
    assert problems(text) == ["p.yaml:20:11: notebooks[0].gpus: partition debug has no GPUs"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("    partition: debgu\n", ("no such partition 'debgu' on cluster c — did you mean "
         "'debug'? (partitions: debug, gpu)")),
        ("    environment: ml\n", ("no such environment 'ml' on cluster c — environments: "
         "default")),
        ("    cluster: d\n", "no such cluster 'd' — clusters: c"),
    ],
)
def test_preset_naming_what_does_not_exist(line: str, message: str) -> None:
    text = PRESET.replace("    partition: debug\n", "").replace('"01:00:00"', '"00:10:00"')
    [problem] = problems(text + line)
    key = line.split(":")[0].strip()
    assert problem == f"p.yaml:19:{len(key) + 7}: notebooks[0].{key}: {message}"


def test_static_accounts_are_checked() -> None:
    text = BASE + (
        "    accounts: {source: static, names: [proj_a], default: proj_b}\n"
        "notebooks:\n  - {name: x, partition: debug, account: proj_c}\n"
    )
    assert problems(text) == [
        ("p.yaml:15:58: clusters.c.accounts.default: no such account 'proj_b' — did you mean "
        "'proj_a'? (accounts: proj_a)"),
        ("p.yaml:17:42: notebooks[0].account: no such account 'proj_c' on cluster c — did you "
        "mean 'proj_a'? (accounts: proj_a)"),
    ]


def test_cluster_level_cross_checks() -> None:
    text = BASE.replace(
        'max_walltime: "00:30:00"', 'max_walltime: "00:30:00"\n        default_walltime: "1:00:00"'
    ) + (
        "    default_partition: dbg\n    pbs_flavor: torque\n"
        "    environments:\n      e: {venv: /v, conda: {env: x}}\n"
    )
    assert problems(text) == [
        ("p.yaml:8:27: clusters.c.partitions.debug.default_walltime: default_walltime "
        "01:00:00 is over max_walltime 00:30:00"),
        ("p.yaml:16:24: clusters.c.default_partition: no such partition 'dbg' — did you mean "
        "'debug'? (partitions: debug, gpu)"),
        "p.yaml:17:17: clusters.c.pbs_flavor: pbs_flavor applies only to scheduler: pbs",
        "p.yaml:19:28: clusters.c.environments.e.conda: use either venv or conda, not both",
    ]


def test_dask_worker_checks() -> None:
    text = BASE + (
        "dask:\n  worker: {partition: debug, cores: 2, processes: 4}\n"
        "  per_user: {max_cores: 1}\n"
    )
    assert problems(text) == [
        "p.yaml:16:51: dask.worker.processes: processes 4 is more than cores 2",
        "p.yaml:17:25: dask.per_user.max_cores: max_cores 1 is less than one worker's cores 2",
    ]


def test_duplicate_preset_names() -> None:
    text = BASE + "notebooks:\n  - {name: a}\n  - {name: a}\n"
    assert problems(text) == ["p.yaml:17:12: notebooks[1].name: duplicate preset name 'a'"]


def test_load_profile_reads_files_and_reports_missing(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(BASE)
    assert load_profile(path).site == "demo"
    with pytest.raises(ProfileError, match=r"missing.yaml:1:1: cannot read"):
        load_profile(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", BUNDLED_PROFILES)
def test_bundled_profiles_load_and_match_site_profiles(name: str) -> None:
    assert load_bundled_profile(name, env={}).clusters["tb"]
    assert (REPO / "site_profiles" / f"{name}.yaml").read_text() == bundled_profile_text(name)


def test_testbed_profile_takes_address_and_key_from_environment() -> None:
    env = {
        "HPCBRIDGE_TESTBED_SSH_HOST": "127.0.0.1",
        "HPCBRIDGE_TESTBED_SSH_PORT": "40022",
        "HPCBRIDGE_TESTBED_DIR": "/state/tb",
        "HPCBRIDGE_HUB_CONNECT_URL": "http://10.89.0.1:8081",
    }
    profile = load_bundled_profile("testbed", env=env)
    transport = profile.clusters["tb"].transport
    assert (transport.host, transport.port) == ("127.0.0.1", 40022)
    assert transport.key == "/state/tb/id_ed25519"
    assert transport.known_hosts == "/state/tb/known_hosts"
    assert profile.hub.connect_url == "http://10.89.0.1:8081"


@pytest.mark.parametrize("path", sorted((REPO / "site_profiles").glob("*.yaml")), ids=str)
def test_every_shipped_profile_is_valid(path: Path) -> None:
    load_profile(path, env={})

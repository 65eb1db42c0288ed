"""doctor's comparison, on scheduler outputs recorded from the testbed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from hpcbridge.cli import main
from hpcbridge.doctor import ClusterFacts, Finding, Severity, compare_cluster, unreachable
from hpcbridge.errors import HostKeyError, PermissionDenied, SchedulerUnavailable
from hpcbridge.profiles import SiteProfile, load_profile_text
from slurm_testbed.profiles import bundled_profile_text
from hpcbridge.schedulers import SlurmDialect
from hpcbridge.schedulers.base import Association, QosLimits

REC = Path(__file__).parent.parent / "fixtures" / "slurm" / "recorded" / "22.05"
SLURM = SlurmDialect()
TB = ("clusters", "tb")
#: the testbed's nodes have RealMemory=16000 (MiB); 16G would be 16384
FIXED_MEMORY = ("memory_per_node: 16G", "memory_per_node: 16000M")


def rec(name: str) -> str:
    return (REC / name).read_text()


def recorded_facts(users: tuple[str, ...] = ("alice", "carol")) -> ClusterFacts:
    return ClusterFacts(
        SLURM.parse_partitions([rec("scontrol_partitions.txt"), rec("sinfo_shapes.txt")]),
        SLURM.parse_qos(rec("sacctmgr_qos.txt")),
        {u: SLURM.parse_associations(rec(f"sacctmgr_assoc_{u}.txt")) for u in users},
    )


def tb_text(*edits: tuple[str, str]) -> str:
    text = bundled_profile_text("testbed").replace(*FIXED_MEMORY)
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def profile(*edits: tuple[str, str]) -> SiteProfile:
    return load_profile_text(tb_text(*edits), "t.yaml", {})


def check(prof: SiteProfile, facts: ClusterFacts | None = None) -> list[Finding]:
    return compare_cluster(TB, prof.clusters["tb"], facts or recorded_facts())


def serious(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity is not Severity.NOTE]


def only(findings: list[Finding], key: str) -> Finding:
    (found,) = [f for f in serious(findings) if f.path[-1] == key or f.path[-2:-1] == (key,)]
    return found


def test_the_testbed_profile_agrees_with_the_testbed() -> None:
    assert serious(check(profile())) == []


def test_the_bundled_profile_claims_more_memory_than_the_nodes_have() -> None:
    prof = load_profile_text(bundled_profile_text("testbed"), "t.yaml", {})
    found = serious(check(prof))
    assert {f.path[3] for f in found} == {"debug", "regular", "gpu"}
    assert all(f.path[-1] == "memory_per_node" and f.severity is Severity.ERROR for f in found)
    assert "16000M" in found[0].message and found[0].fix == "set memory_per_node: 16000M"


def test_walltime_over_the_partition_limit() -> None:
    f = only(check(profile(('max_walltime: "00:30:00"', 'max_walltime: "01:00:00"'))),
             "max_walltime")
    assert f.severity is Severity.ERROR
    assert f.path == (*TB, "partitions", "debug", "max_walltime")
    assert "01:00:00" in f.message and "00:30:00" in f.message
    assert 'max_walltime: "00:30:00"' in f.fix


def test_a_partition_that_does_not_exist() -> None:
    edited = profile(("      gpu:\n", "      gpuu:\n"), ("partition: gpu\n", "partition: gpuu\n"))
    f = only(check(edited), "gpuu")
    assert f.severity is Severity.ERROR and "'gpuu' does not exist" in f.message
    assert "did you mean 'gpu'" in f.message


def test_queue_names_the_scheduler_partition() -> None:
    edited = profile(("      gpu:\n", "      gpus:\n        queue: gpu\n"),
                     ("partition: gpu\n", "partition: gpus\n"))
    assert serious(check(edited)) == []


def test_cores_memory_nodes_and_gpus_over_the_nodes() -> None:
    edited = profile(("cores_per_node: 8", "cores_per_node: 16"),
                     ("max_nodes: 3", "max_nodes: 4"),
                     ("gpus_per_node: 2", "gpus_per_node: 4"))
    found = serious(check(edited))
    keys = {(f.path[3], f.path[4]) for f in found}
    assert keys == {("debug", "cores_per_node"), ("regular", "max_nodes"),
                    ("gpu", "gpus_per_node")}
    assert all(f.severity is Severity.ERROR for f in found)
    cores = next(f for f in found if f.path[4] == "cores_per_node")
    assert "16 cores" in cores.message and "8" in cores.message
    assert cores.fix == "set cores_per_node: 8"


def test_a_gpu_type_no_node_has() -> None:
    assert recorded_facts().partitions[-1].gpu_types == ("fake",)  # sinfo %G: gpu:fake:2
    found = only(check(profile(("gpu_types: [fake]", "gpu_types: [fake, a100]"))), "gpu_types")
    assert found.severity is Severity.ERROR and found.path[3:] == ("gpu", "gpu_types")
    assert found.message == ("no node of partition 'gpu' has GPUs of type a100 (typed GRES "
                             "there: fake)")
    assert found.fix == "set gpu_types: [fake]"


def test_narrower_limits_are_notes() -> None:
    notes = [f for f in check(profile(('max_walltime: "04:00:00"', 'max_walltime: "02:00:00"')))
             if f.severity is Severity.NOTE]
    assert any(f.path[3:] == ("regular", "max_walltime") for f in notes)
    assert any(f.path[3:] == ("debug", "max_nodes") for f in notes)


def test_static_accounts_and_default_must_be_the_users() -> None:
    edited = profile(("source: scheduler",
                      "source: static\n      names: [proj_a, proj_zzz]\n      default: proj_zzz"))
    found = serious(check(edited))
    assert [f.path[-2:] for f in found] == [("names", 1), ("accounts", "default")]
    assert all(f.severity is Severity.ERROR for f in found)
    assert "'proj_zzz'" in found[0].message and "proj_a, proj_b" in found[0].message
    scheduler_default = profile(("source: scheduler", "source: scheduler\n      default: proj_c"))
    (f,) = serious(check(scheduler_default))
    assert f.path[-1] == "default" and "'proj_c'" in f.message


def test_accounts_need_users_or_associations() -> None:
    no_users = check(profile(), replace(recorded_facts(), associations={}))
    assert any("--user" in f.fix for f in no_users if f.path[-1] == "accounts")
    pbs = check(profile(), replace(recorded_facts(), associations=None, qos=None))
    assert serious(pbs) == []
    stranger = serious(check(profile(), replace(recorded_facts(),
                                                associations={"mallory": []})))
    assert stranger[0].severity is Severity.WARNING and "'mallory'" in stranger[0].message


def test_qos_named_by_a_partition_must_exist_and_be_allowed() -> None:
    f = only(check(profile(("max_jobs_per_user: 4\n      regular:",
                            "max_jobs_per_user: 4\n        qos: nromal\n      regular:"))), "qos")
    assert f.severity is Severity.ERROR and "did you mean 'normal'" in f.message
    facts = recorded_facts()
    debug = replace(facts.partitions[0], allow_qos=("high",))
    facts = replace(facts, partitions=[debug, *facts.partitions[1:]])
    f = only(check(profile(("max_jobs_per_user: 4\n      regular:",
                            "max_jobs_per_user: 4\n        qos: normal\n      regular:")), facts),
             "qos")
    assert "does not allow QOS 'normal'" in f.message


def test_qos_limits_apply_to_the_default_qos() -> None:
    facts = replace(recorded_facts(), qos=[QosLimits("normal", max_jobs_per_user=2,
                                                     max_walltime=None)])
    found = serious(check(profile(), facts))
    assert {f.path[-1] for f in found} == {"max_jobs_per_user"}
    assert all(f.severity is Severity.WARNING for f in found)
    short = replace(facts, qos=[QosLimits("normal", max_walltime=facts.partitions[0]
                                          .max_walltime)])
    found = serious(check(profile(), short))
    assert {f.path[3] for f in found} == {"regular", "gpu"}  # debug's 00:30:00 fits


def test_an_association_default_qos_wins() -> None:
    assoc = Association("proj_a", "alice", qos=("normal", "long"), default_qos="long")
    facts = replace(recorded_facts(), associations={"alice": [assoc]},
                    qos=[QosLimits("normal", max_jobs_per_user=1), QosLimits("long")])
    assert serious(check(profile(), facts)) == []


def test_a_partition_that_is_down_is_a_warning() -> None:
    facts = recorded_facts()
    down = replace(facts.partitions[1], available=False)
    facts = replace(facts, partitions=[facts.partitions[0], down, facts.partitions[2]])
    (f,) = serious(check(profile(), facts))
    assert f.severity is Severity.WARNING and "'regular' is not up" in f.message


@pytest.mark.parametrize("exc, word", [
    (HostKeyError("host key changed"), "known_hosts"),
    (PermissionDenied("denied"), "sudoers"),
    (SchedulerUnavailable("slurmctld down"), "login node is up"),
])
def test_unreachable_says_what_to_fix(exc: Exception, word: str) -> None:
    f = unreachable(TB, exc)
    assert f.severity is Severity.ERROR and f.path == (*TB, "transport") and word in f.fix


# -- the command -------------------------------------------------------------------------

@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_gather(client, users, *, as_user=None):  # type: ignore[no-untyped-def]
        return recorded_facts(tuple(users) or ("alice", "carol"))

    monkeypatch.setattr("hpcbridge.cli.doctor.gather_facts", fake_gather)
    monkeypatch.setenv("HPCBRIDGE_TESTBED_SSH_HOST", "192.0.2.1")  # no testbed lookup


def test_cli_clean_profile_exits_0(recorded: None, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "tb.yaml"
    path.write_text(tb_text())
    assert main(["doctor", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "0 errors, 0 warnings" in err
    assert main(["doctor", "-v", str(path)]) == 0
    assert ": note: clusters.tb.partitions.debug.max_nodes:" in capsys.readouterr().out


def test_cli_reports_each_drift_at_its_line(recorded: None, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "tb.yaml"
    path.write_text(tb_text(('max_walltime: "00:30:00"', 'max_walltime: "01:00:00"'),
                                 ("cores_per_node: 8", "cores_per_node: 16")))
    assert main(["doctor", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    text = path.read_text().splitlines()
    errors = [ln for ln in lines if ": error: " in ln]
    assert len(errors) == 2 and all(ln.startswith(f"{path}:") for ln in errors)
    for line in errors:
        number = int(line.split(":")[1])
        key = line.split(": error: ")[1].split(":")[0].rsplit(".", 1)[1]
        assert text[number - 1].strip().startswith(key)
    assert sum(ln.startswith("    fix: ") for ln in lines) == 2


def test_cli_json(recorded: None, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "tb.yaml"
    path.write_text(tb_text(('max_walltime: "00:30:00"', 'max_walltime: "01:00:00"')))
    assert main(["doctor", "--json", str(path)]) == 1
    (item,) = json.loads(capsys.readouterr().out)
    assert item["severity"] == "error"
    assert item["key"] == "clusters.tb.partitions.debug.max_walltime" and item["line"] > 1


def test_cli_invalid_profile_or_cluster(recorded: None, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "tb.yaml"
    path.write_text(tb_text(("max_walltime:", "max_walltme:")))
    assert main(["doctor", str(path)]) == 1
    assert "did you mean 'max_walltime'" in capsys.readouterr().out
    path.write_text(tb_text())
    assert main(["doctor", "--cluster", "nope", str(path)]) == 1
    assert "no such cluster nope" in capsys.readouterr().err

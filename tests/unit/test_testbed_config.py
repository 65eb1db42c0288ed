"""The testbed's generated configuration and its engine errors (no containers needed)."""

from __future__ import annotations

import pytest

from slurm_testbed.errors import TestbedError
from slurm_testbed import config, engine, generations, images


def conf_lines(nodes: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in config.slurm_conf(nodes).splitlines():
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def test_nodes_partitions_and_gpu_node():
    conf = conf_lines(3)
    assert [n.split()[0] for n in conf["NodeName"]] == ["c1", "c2", "c3"]
    assert "Gres=gpu:fake:2" in conf["NodeName"][2]
    assert all("CPUs=8" in n and "RealMemory=16384" in n for n in conf["NodeName"])
    parts = {p.split()[0]: p for p in conf["PartitionName"]}
    assert set(parts) == {"debug", "regular", "gpu"}
    assert "Nodes=c3 " in parts["gpu"] and "MaxTime=00:30:00" in parts["debug"]
    assert conf["AccountingStorageEnforce"] == ["associations,limits,qos,safe"]
    # CR_Core_Memory needs DefMemPerCPU, or a job takes a whole node's memory.
    assert conf["SelectTypeParameters"] == ["CR_Core_Memory"] and conf["DefMemPerCPU"]


def test_single_node_testbed_puts_gpus_on_c1():
    assert "NodeName=c1 Name=gpu" in config.gres_conf(1)
    assert "Nodes=c1 " in config.slurm_conf(1)


def test_accounting_sets_qos_limits_and_budget():
    cmds = [" ".join(c) for c in config.accounting_commands()]
    assert any("MaxJobsPerUser=4" in c and "MaxSubmitJobsPerUser=8" in c for c in cmds)
    assert any("proj_b" in c and "GrpTRESMins=cpu=60" in c for c in cmds)
    assert any(c.endswith("add user carol Account=proj_b DefaultAccount=proj_b") for c in cmds)


def test_keys_are_private_and_hub_key_stays_out_of_the_mounted_folder(tmp_path):
    hub = config.write_run_config(tmp_path / "etc", tmp_path / "hub_ed25519", 2)
    assert (tmp_path / "hub_ed25519").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "etc" / "munge.key").stat().st_mode & 0o777 == 0o600
    password = tmp_path / "etc" / config.HUBDB_PASSWORD_FILE
    assert password.stat().st_mode & 0o777 == 0o600 and len(password.read_text()) >= 24
    assert not list((tmp_path / "etc").rglob("hub_ed25519"))
    assert (tmp_path / "etc" / "ssh" / "authorized_keys").read_text().strip() == hub.public_line
    assert hub.public_line.startswith("ssh-ed25519 ")


def test_no_engine_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCBRIDGE_ENGINE", "none")
    with pytest.raises(TestbedError, match="install podman"):
        engine.detect(tmp_path)


def test_generations_by_slurm_version(monkeypatch):
    monkeypatch.delenv("HPCBRIDGE_TESTBED_SLURM", raising=False)
    assert generations.get().slurm == generations.DEFAULT
    trixie = generations.get("24.11")
    assert (trixie.suite, trixie.python, trixie.slug) == ("trixie", "3.13", "slurm2411")
    monkeypatch.setenv("HPCBRIDGE_TESTBED_SLURM", "24.11")
    assert generations.get() is trixie
    with pytest.raises(TestbedError, match=r"choose one of: 22\.05, 24\.11"):
        generations.get("23.02")


def test_24_11_settings_replace_lines_and_add_no_duplicates():
    old = config.slurm_conf(3, generations.get("22.05"))
    new = config.slurm_conf(3, generations.get("24.11"))
    keys = [line.partition("=")[0] for line in new.splitlines()
            if not line.startswith(("NodeName", "PartitionName"))]
    assert len(keys) == len(set(keys))
    assert "MailProg=/bin/true" in new and "MailProg" not in old
    assert "UnkillableStepTimeout=60" in new and "UnkillableStepTimeout=30" in old
    assert config.slurm_conf(3) == new  # the default generation's file


def test_users_may_keep_a_crontab_on_both_generations():
    for slurm in ("22.05", "24.11"):  # recurring batch notebooks (docs/batch.md)
        assert "ScronParameters=enable" in config.slurm_conf(3, generations.get(slurm))


def test_compute_node_capabilities_and_memory_sampling():
    """24.11's slurmd clones namespaces; on both, slurmstepd reads a job's /proc/PID/io
    (else jobacct_gather drops the sample: no MaxRSS) and samples every 5 s."""
    for slurm in ("22.05", "24.11"):
        assert "JobAcctGatherFrequency=task=5" in config.slurm_conf(3, generations.get(slurm))
    assert config.compute_capabilities(generations.get("22.05")) == ["SYS_PTRACE"]
    assert config.compute_capabilities(generations.get("24.11")) == ["SYS_ADMIN", "SYS_PTRACE"]


def test_exec_starts_root_in_its_own_home():
    assert config.home_of("root") == "/root"
    assert config.home_of("hpcbridge") == "/var/lib/hpcbridge"
    assert config.home_of("alice") == "/home/alice"


def test_state_of_a_testbed_started_before_generations_reads_as_22_05():
    from slurm_testbed.cluster import TestbedInfo

    info = TestbedInfo(nodes=["c1"], login_ip="10.0.0.2", ssh_port=22, gateway_ip="10.0.0.1",
                       hub_key="k", known_hosts="h")
    assert info.slurm == "22.05" and info.slurm_version == ""


def test_images_of_each_generation_have_tags_of_their_own(monkeypatch):
    monkeypatch.setenv("HPCBRIDGE_DEBIAN_MIRROR", "http://mirror.invalid/debian")
    podman = engine.Engine("podman", "podman", "unix:///nonexistent")
    old = images.image_refs(podman, generations.get("22.05"))
    new = images.image_refs(podman, generations.get("24.11"))
    assert old["suite"].startswith("localhost/hpcbridge-testbed/bookworm:")
    assert new["suite"].startswith("localhost/hpcbridge-testbed/trixie:")
    assert all(old[role] != new[role] for role in ("base", "slurm", "db"))
    monkeypatch.setenv("HPCBRIDGE_BASE_IMAGE_TRIXIE", "debian:trixie")
    assert images.image_refs(podman, generations.get("24.11"))["suite"] == "debian:trixie"
    assert images.image_refs(podman, generations.get("22.05"))["suite"] == old["suite"]


@pytest.mark.parametrize("argv", [["testbed", "up", "--slurm", "24.11"],
                                  ["up", "--slurm", "24.11"]])
def test_cli_takes_the_generation(argv):
    from hpcbridge.cli import build_parser

    assert build_parser().parse_args(argv).slurm == "24.11"


def test_cli_refuses_an_unknown_generation_with_the_choices(monkeypatch, capsys):
    from hpcbridge.cli import main

    monkeypatch.setenv("HPCBRIDGE_TESTBED_NAME", "h-unit-never-started")
    assert main(["testbed", "up", "--slurm", "21.08"]) == 1
    assert "choose one of: 22.05, 24.11" in capsys.readouterr().err


def test_oversubscribed_nodes_only_when_asked():
    default = [line for line in config.slurm_conf(2).splitlines() if line.startswith("NodeName")]
    assert all(f"CPUs={config.CPUS_PER_NODE} " in line and
               f"RealMemory={config.MEMORY_MB_PER_NODE} " in line for line in default)
    big = [line for line in config.slurm_conf(2, cpus_per_node=64).splitlines()
           if line.startswith("NodeName")]
    assert len(big) == 2
    assert all("CPUs=64 " in line and "CoresPerSocket=64 " in line and
               f"RealMemory={config.MEMORY_MB_PER_NODE * 8} " in line for line in big)

"""The testbed's generated configuration and its engine errors (no containers needed)."""

from __future__ import annotations

import pytest

from hpcbridge.errors import TestbedError
from slurm_testbed import config, engine


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
    assert not list((tmp_path / "etc").rglob("hub_ed25519"))
    assert (tmp_path / "etc" / "ssh" / "authorized_keys").read_text().strip() == hub.public_line
    assert hub.public_line.startswith("ssh-ed25519 ")


def test_no_engine_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCBRIDGE_ENGINE", "none")
    with pytest.raises(TestbedError, match="install podman"):
        engine.detect(tmp_path)

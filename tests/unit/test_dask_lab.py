"""JupyterLab's Dask sidebar: cluster records, their ids and names, the launcher's settings."""

from __future__ import annotations

import json
import os
import socket
import uuid

import pytest

from hpcbridge.dask import labrecords
from hpcbridge.dask.labrecords import parse_record, read_records, sidebar_name, write_record
from hpcbridge.spawner.launch import lab_settings

GOOD = {"name": "hpcb-dask-abc123", "address": "tcp://10.0.0.5:41234",
        "dashboard_link": "/user/alice/proxy/8787/status", "server": "/user/alice/",
        "host": "c1", "pid": 4321}


def test_a_record_as_written_parses() -> None:
    record = parse_record(GOOD)
    assert record is not None and record.name == GOOD["name"] and record.pid == 4321


@pytest.mark.parametrize("change", [
    {"name": "a/../b"}, {"name": "x\n#SBATCH"}, {"address": "http://evil/"},
    {"address": "tcp://h:1 ; rm"}, {"pid": "x"}, {"pid": 0}, {"pid": -1},
    {"dashboard_link": "x" * 600},
])
def test_a_record_with_an_odd_field_is_ignored(change) -> None:  # type: ignore[no-untyped-def]
    assert parse_record({**GOOD, **change}) is None


def test_a_record_missing_a_field_or_not_an_object_is_ignored() -> None:
    assert parse_record({k: v for k, v in GOOD.items() if k != "address"}) is None
    assert parse_record(["not", "a", "record"]) is None


def test_the_sidebar_id_is_a_stable_uuid_per_server_and_cluster() -> None:
    a, b = parse_record(GOOD), parse_record({**GOOD, "pid": 99})
    other = parse_record({**GOOD, "server": "/user/alice/other/"})
    assert a is not None and b is not None and other is not None
    assert uuid.UUID(a.lab_id) and a.lab_id == b.lab_id != other.lab_id
    # dask-labextension's routes take only ids of this shape
    assert len(a.lab_id.split("-")) == 5


def test_records_list_this_servers_live_clusters_and_drop_dead_ones(tmp_path, monkeypatch
                                                                    ) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(labrecords.SERVER_ENV, "/user/alice/")
    mine = write_record("hpcb-dask-aaaaaa", "tcp://10.0.0.5:1", "/l", directory=tmp_path)
    assert mine is not None and oct(tmp_path.stat().st_mode)[-3:] in ("700", "755")
    assert oct(mine.stat().st_mode)[-3:] == "600"
    host = socket.gethostname()
    (tmp_path / "other.json").write_text(json.dumps(
        {**GOOD, "name": "other", "server": "/user/alice/gpu/", "host": host}))
    (tmp_path / "dead.json").write_text(json.dumps(
        {**GOOD, "name": "dead", "server": "/user/alice/", "host": host, "pid": 7}))
    (tmp_path / "broken.json").write_text("{")
    found = read_records("/user/alice/", tmp_path, alive=lambda pid: pid == os.getpid())
    assert [r.name for r in found] == ["hpcb-dask-aaaaaa"]
    assert not (tmp_path / "dead.json").exists()  # a killed kernel's record goes
    assert (tmp_path / "other.json").exists()  # another server's stays


def test_no_record_outside_a_jupyterhub_server(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(labrecords.SERVER_ENV, raising=False)
    assert write_record("hpcb-dask-aaaaaa", "tcp://h:1", "", directory=tmp_path) is None
    assert not list(tmp_path.iterdir())


def test_the_sidebar_name_carries_the_clamping_message() -> None:
    assert sidebar_name("HpcSlurmCluster 1", None) == "HpcSlurmCluster 1"
    assert sidebar_name("c", "scaling to 3 workers, not 10: x") == \
        "c — scaling to 3 workers, not 10: x"


def test_the_launcher_points_the_sidebar_at_hpcbridge_unless_the_site_chose() -> None:
    env: dict[str, str] = {}
    assert "--ServerApp.jpserver_extensions=hpcbridge.dask.lab=True" in lab_settings(env)
    assert env["DASK_LABEXTENSION__FACTORY__MODULE"] == "hpcbridge.dask"
    assert env["DASK_LABEXTENSION__FACTORY__CLASS"] == "cluster"
    site = {"DASK_LABEXTENSION__FACTORY__MODULE": "site.clusters"}
    lab_settings(site)
    assert site == {"DASK_LABEXTENSION__FACTORY__MODULE": "site.clusters"}


class _Base:
    """What dask-labextension's manager does with the clusters it started itself."""

    def __init__(self) -> None:
        self._clusters: dict = {"1-2-3-4-5": type("C", (), {"scale_message": "clamped",
                                                             "error": None})()}

    def list_clusters(self):  # type: ignore[no-untyped-def]
        return [{"id": "1-2-3-4-5", "name": "HpcSlurmCluster 1", "workers": 0}]

    def get_cluster(self, cluster_id):  # type: ignore[no-untyped-def]
        return self.list_clusters()[0] if cluster_id == "1-2-3-4-5" else None

    async def scale_cluster(self, cluster_id, n):  # type: ignore[no-untyped-def]
        return {**self.list_clusters()[0], "workers": n}

    async def close_cluster(self, cluster_id):  # type: ignore[no-untyped-def]
        return self.list_clusters()[0]


def _manager(monkeypatch, answers):  # type: ignore[no-untyped-def]
    from hpcbridge.dask import lab

    record = parse_record({**GOOD, "host": socket.gethostname()})
    monkeypatch.setattr(lab, "read_records", lambda server: [record])

    async def ask(address, op, **kwargs):  # type: ignore[no-untyped-def]
        answer = answers[op]
        if isinstance(answer, Exception):
            raise answer
        return {**answer, "n": kwargs.get("n")}

    monkeypatch.setattr(lab, "ask", ask)
    manager = type("M", (lab.ManagerWithNotebooks, _Base), {})()
    manager.notebooks = lab.NotebookClusters("/user/alice/")
    return manager, record


def test_the_sidebar_lists_both_kinds_with_their_messages(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    state = {"workers": 3, "cores": 6, "memory": 3 * 2**30, "message": "scaling to 3",
             "dashboard_link": "/user/alice/proxy/1/status"}
    manager, record = _manager(monkeypatch, {"hpcbridge_lab": state})
    asyncio.run(manager.notebooks.refresh())
    own, notebook = manager.list_clusters()
    assert own["name"] == "HpcSlurmCluster 1 — clamped"
    assert notebook["id"] == record.lab_id and notebook["workers"] == 3
    assert notebook["name"] == "hpcb-dask-abc123 (notebook) — scaling to 3"
    assert notebook["memory"] == "3.00 GiB" and notebook["cores"] == 6
    assert manager.get_cluster(record.lab_id) == notebook


def test_a_scheduler_that_does_not_answer_is_not_listed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    manager, _ = _manager(monkeypatch, {"hpcbridge_lab": OSError("gone")})
    asyncio.run(manager.notebooks.refresh())
    assert [m["id"] for m in manager.list_clusters()] == ["1-2-3-4-5"]


def test_scaling_a_notebook_cluster_goes_to_its_scheduler_and_a_refusal_says_why(
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from hpcbridge.errors import HpcBridgeError

    ok = {"workers": 0, "message": "scaling to 3 workers, not 10: QOS"}
    answers = {"hpcbridge_lab": ok, "hpcbridge_lab_scale": ok}
    manager, record = _manager(monkeypatch, answers)
    asyncio.run(manager.notebooks.refresh())
    model = asyncio.run(manager.scale_cluster(record.lab_id, 10))
    assert model["name"].endswith("scaling to 3 workers, not 10: QOS")
    answers["hpcbridge_lab_scale"] = {"refused": "the budget of proj_b pays 2.0 core-hours"}
    with pytest.raises(HpcBridgeError, match="budget"):
        asyncio.run(manager.scale_cluster(record.lab_id, 10))
    with pytest.raises(HpcBridgeError, match="close it there"):
        asyncio.run(manager.close_cluster(record.lab_id))
    with pytest.raises(HpcBridgeError, match="adapt"):
        manager.adapt_cluster(record.lab_id, 0, 4)

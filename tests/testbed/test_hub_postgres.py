"""The hub's database on PostgreSQL (the testbed's, on its db host), as in production.

The re-attach after a hub SIGKILL (a running and a queued server) passes on PostgreSQL
as on SQLite: the job id saved at submission is in the database when the hub dies.
"""

from __future__ import annotations

import secrets
import shutil

import pytest

from slurm_testbed.hub import up_hub
from tests.testbed.hubtools import HubApi, port_offset
from tests.testbed.test_spawner_live import check_reattach_after_sigkill

pytestmark = pytest.mark.testbed


@pytest.fixture(scope="module")
def pg_hub(testbed, tmp_path_factory):  # type: ignore[no-untyped-def]
    from hpcbridge.hubrun import Hub
    from slurm_testbed import config

    if not shutil.which("configurable-http-proxy"):
        pytest.fail("configurable-http-proxy is not installed")
    database = f"hub_{secrets.token_hex(4)}"
    db_url = testbed.create_hub_database(database)
    runner = Hub(tmp_path_factory.mktemp("pghub"), public_port=8130 + port_offset(),
                 hub_port=8211 + port_offset())
    status = up_hub(runner, testbed, users=list(config.USERS), interval=3.0,
                                  db_url=db_url)
    api = HubApi(status["hub_url"], status["admin_token"])
    api.runner = runner
    api.database = database
    try:
        yield api
    finally:
        try:
            for name in ("", "second"):
                api.stop("alice", name)
        finally:
            runner.down()


def _psql(testbed, database: str, query: str) -> str:  # type: ignore[no-untyped-def]
    proc = testbed.exec("db", ["runuser", "-u", "postgres", "--", "psql", "-At", "-d",
                               database, "-c", query], check=True)
    return proc.stdout.decode()


def test_the_hub_keeps_its_state_in_postgres(pg_hub, testbed) -> None:  # type: ignore[no-untyped-def]
    assert not list(pg_hub.runner.dir.glob("*.sqlite"))
    r = pg_hub.spawn("alice", {"preset": "debug"})
    assert r.status_code in (201, 202), r.text
    server = pg_hub.wait_ready("alice")
    states = _psql(testbed, pg_hub.database, "SELECT state FROM spawners")
    assert server["state"]["job_id"] in states


def test_reattach_after_sigkill_on_postgres(pg_hub, testbed) -> None:  # type: ignore[no-untyped-def]
    check_reattach_after_sigkill(pg_hub, testbed)

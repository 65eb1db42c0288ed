"""Pure parts of the spawner: port-callback bodies, job environment, form, re-attach."""

from __future__ import annotations

import json

import pytest

from hpcbridge.profiles import load_bundled_profile
from hpcbridge.schedulers import PbsDialect, SlurmDialect
from hpcbridge.spawner import form, jobenv
from hpcbridge.spawner.api import parse_port_body
from hpcbridge.spawner.reattach import detached_servers, referenced_jobs


@pytest.mark.parametrize("body", [
    {"port": 5555, "batch_query_cmd": "id"}, {"batch_query_cmd": "id"}, {"port": "5555"},
    {"port": 5555.0}, {"port": True}, {"port": 80}, {"port": 70000}, [5555], None, "5555",
    {"port": 5555, "ip": "1.2.3.4"}, {},
])
def test_port_body_accepts_only_a_port(body):
    with pytest.raises(ValueError):
        parse_port_body(body)


def test_port_body_ok():
    assert parse_port_body({"port": 40123}) == 40123


def test_env_document_drops_the_hubs_paths_and_keeps_the_token():
    doc = json.loads(jobenv.env_document({"PATH": "/hub/bin", "JUPYTERHUB_API_TOKEN": "t",
                                          "PYTHONPATH": "/x", "JUPYTERHUB_USER": "alice"}))
    assert doc == {"JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_USER": "alice"}


def test_job_names_are_scheduler_safe():
    assert jobenv.job_name("alice", "") == "hpcb-nb-alice"
    assert jobenv.job_name("a@b.c", "my server;rm") == "hpcb-nb-a_b.c-my_server_rm"


def test_a_tagged_hubs_jobs_and_an_untagged_hubs_never_share_a_prefix():
    tagged = jobenv.job_name("alice", "", "test")
    assert tagged == "hpcb-nb.test-alice" and tagged.startswith(jobenv.job_prefix("test"))
    assert not tagged.startswith(jobenv.job_prefix(""))
    assert not jobenv.job_name("alice", "").startswith(jobenv.job_prefix("test"))
    assert jobenv.job_prefix("a b;c") == "hpcb-nb.a_b_c-"


def test_launch_command_names_only_the_file():
    cmd = jobenv.launch_command("/home/alice/.hpcbridge/env.X")
    assert cmd == ("python", "-m", "hpcbridge.spawner.launch", "/home/alice/.hpcbridge/env.X")


def test_form_escapes_and_lists_partitions_and_accounts():
    html = form.render(load_bundled_profile("testbed", {}), "alice", accounts=["proj_a"],
                       last_end="node fail (<b>)")
    assert 'value="debug"' in html and 'value="gpu"' in html
    assert 'value="proj_a"' in html
    assert "&lt;b&gt;" in html and "<b>" not in html


def test_form_data_to_options_keeps_unknown_fields_for_refusal():
    opts = form.options_from_form({"partition": ["debug"], "cores": [""], "cmd": ["id"]})
    assert opts == {"partition": "debug", "cmd": "id"}


def test_detached_servers_and_referenced_jobs():
    users = [{"name": "alice", "servers": {
        "": {"ready": True, "state": {"job_id": "1"}},
        "second": {"ready": False, "pending": None, "state": {"job_id": "2"}},
        "third": {"ready": False, "pending": "spawn", "state": {"job_id": "3"}},
        "old": {"ready": False, "pending": None, "state": {}},
    }}]
    assert list(detached_servers(users)) == [("alice", "second", "2")]
    assert referenced_jobs(users) == {"1", "2", "3"}


def test_active_jobs_parsers_keep_hostile_names_whole():
    jobs = SlurmDialect().parse_active_jobs("12|alice|RUNNING|hpcb-nb-alice|x\nbad line\n")
    assert [(j.job_id, j.user, j.name) for j in jobs] == [("12", "alice", "hpcb-nb-alice|x")]
    pbs = PbsDialect().parse_active_jobs(
        "Job Id: 7.server\n    Job_Name = hpcb-nb-bob\n    Job_Owner = bob@login\n"
        "    job_state = Q\n")
    assert [(j.job_id, j.user, j.name) for j in pbs] == [("7.server", "bob", "hpcb-nb-bob")]

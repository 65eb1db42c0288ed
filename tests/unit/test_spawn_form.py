"""The spawn form: values that fit the chosen partition, and a refused submit kept."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyterhub.apihandlers.base import APIHandler

from hpcbridge.errors import RequestError
from hpcbridge.profiles import JobRequest, validate_request
from hpcbridge.profiles.loader import load_profile
from hpcbridge.spawner import form, guard
from slurm_testbed.profiles import load_bundled_profile

ROOT = Path(__file__).resolve().parents[2]
PROFILES = [load_bundled_profile("testbed", {}), load_bundled_profile("testbed-pbs", {}),
            *(load_profile(p, {}) for p in sorted((ROOT / "site_profiles").glob("example-*")))]


def _data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="hpcb-data">(.*?)</script>', html)
    assert match
    return json.loads(match.group(1))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.site)
def test_every_preset_on_every_partition_fills_in_a_request_the_gate_accepts(profile):
    data = _data(form.render(profile, "alice"))
    assert set(data["defaults"]) == {"", *(p.name for p in profile.notebooks)}
    for preset, by_partition in data["defaults"].items():
        for key, values in by_partition.items():
            limits = data["limits"][key]
            accounts = profile.clusters[limits["cluster"]].accounts
            options = {"preset": preset, "cluster": limits["cluster"],
                       "partition": limits["partition"], **values,
                       "account": accounts.default or next(iter(accounts.names), "proj")}
            validate_request(profile, JobRequest.from_options(options, user="alice"))


def test_the_default_preset_on_the_debug_partition_fits_its_30_minutes():
    profile = load_bundled_profile("testbed", {})
    small = profile.preset("small")
    assert small is not None and str(small.walltime) == "01:00:00"
    # the preset alone over the partition is what the hub refuses
    with pytest.raises(RequestError):
        validate_request(profile, JobRequest(user="alice", preset="small", partition="debug"))
    values = form.derived_values(profile, small, "tb", "debug")
    assert values == {"cores": "2", "memory": "4G", "gpus": "0", "walltime": "00:30:00"}
    html = form.render(profile, "alice")
    assert _data(html)["presets"]["debug"] == "debug"
    assert 'value="regular" checked' in html and 'value="01:00:00"' in html


def test_a_refused_submit_comes_back_with_its_values_and_a_sentence_by_the_field():
    profile = load_bundled_profile("testbed", {})
    sent = {"preset": "small", "partition": "debug", "cores": "3", "walltime": "00:45:00"}
    with pytest.raises(RequestError) as refused:
        validate_request(profile, JobRequest.from_options(sent, user="alice"))
    assert refused.value.problems == (
        ("walltime", "walltime 00:45:00 is over partition debug's max_walltime 00:30:00"),)
    html = form.render(profile, "alice", ["proj_a"],
                       refused=form.Refused(sent, refused.value.problems))
    assert 'name="partition" id="hpcb-partition-0" value="debug" checked' in html
    assert 'value="small" checked' in html
    assert 'value="3"' in html and 'value="00:45:00"' in html
    field = html[html.index('id="hpcb-walltime"'):]
    assert field.index('id="hpcb-walltime-error"') < field.index('id="hpcb-environment"')
    assert ("Walltime 00:45:00 is over partition debug&#x27;s max_walltime 00:30:00.</div>"
            in field)
    assert "HTTP" not in html and _data(html)["placed"] is True


def test_a_problem_of_no_field_is_shown_above_the_form_and_keeps_the_banner():
    profile = load_bundled_profile("testbed", {})
    html = form.render(profile, "alice", refused=form.Refused(
        {"partition": "<b>"}, (("partition", "no such partition '<b>'"), ("nodes", "too many"))))
    assert "Too many.</p>" in html and "&lt;b&gt;" in html and "<b>" not in html
    assert _data(html)["placed"] is False


def _spawner(user: str, handler: object) -> SimpleNamespace:
    return SimpleNamespace(user=SimpleNamespace(name=user), handler=handler)


def test_a_refused_form_submit_is_kept_once_for_its_user_and_not_for_long(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(guard.time, "monotonic", lambda: clock[0])
    guard.keep_refused_form(_spawner("alice", object()), {"cores": "99"}, (("cores", "x"),))
    assert guard.take_refused_form("bob") is None
    kept = guard.take_refused_form("alice")
    assert kept is not None and kept.options == {"cores": "99"}
    assert guard.take_refused_form("alice") is None  # once
    guard.keep_refused_form(_spawner("alice", object()), {"cores": "99"}, ())
    clock[0] += guard.REFUSAL_KEPT + 1
    assert guard.take_refused_form("alice") is None  # a form much later starts afresh
    rest = APIHandler.__new__(APIHandler)
    guard.keep_refused_form(_spawner("alice", rest), {"cores": "99"}, ())
    assert guard.take_refused_form("alice") is None  # a REST spawn has no form


def test_sentence():
    assert form.sentence("cores 9 is over x") == "Cores 9 is over x."
    assert form.sentence("did you mean 'x'?") == "Did you mean 'x'?"
    assert form.sentence("") == ""

"""Rendered batch scripts: golden files, and no value can add a line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcbridge.errors import ProfileError, RequestError
from hpcbridge.profiles import JobRequest, load_profile, load_profile_text, render_script
from slurm_testbed.profiles import load_bundled_profile

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "fixtures" / "golden"
TESTBED = load_bundled_profile("testbed", env={})
TESTBED_PBS = load_bundled_profile("testbed-pbs", env={})
PBSPRO = load_profile(REPO / "site_profiles" / "example-pbspro.yaml", env={})
SLURM_GPU = load_profile(REPO / "site_profiles" / "example-slurm-gpu.yaml", env={})
SERVER = ("python", "-m", "jupyterhub.singleuser", "--debug")
TOKENS = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_API_URL")

CASES = {
    "slurm-testbed-default": (TESTBED, JobRequest(user="alice")),
    "slurm-testbed-gpu-preset": (
        TESTBED,
        JobRequest(user="carol", preset="gpu", account="proj_b", job_name="jupyter",
                   command=SERVER, export_env=TOKENS),
    ),
    "slurm-example-container": (
        SLURM_GPU,
        JobRequest(user="alice", preset="gpu-dev", account="project_465000000",
                   command=SERVER, export_env=TOKENS),
    ),
    "torque-testbed": (
        TESTBED_PBS,
        JobRequest(user="bob", partition="gpu", cores=4, gpus=2, memory="8G",
                   account="proj_a", command=SERVER, export_env=TOKENS),
    ),
    "pbspro-example-gpu": (
        PBSPRO,
        JobRequest(user="alice", preset="gpu", job_name="jupyter", command=SERVER,
                   export_env=TOKENS),
    ),
    "pbspro-example-multinode": (
        PBSPRO,
        JobRequest(user="bob", partition="main", nodes=2, cores=128, memory="200G",
                   walltime="12:00:00", account="PROJ0002", environment="custom"),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_scripts(name: str) -> None:
    profile, request = CASES[name]
    script = render_script(profile, request)
    golden = GOLDEN / f"{name}.sh"
    if os.environ.get("HPCBRIDGE_UPDATE_GOLDEN") == "1":  # regenerate after a deliberate change
        golden.write_text(script)
    assert script == golden.read_text()


def test_no_secret_value_is_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "s3cr3t-token")
    script = render_script(TESTBED, JobRequest(user="alice", export_env=TOKENS))
    assert "s3cr3t" not in script
    assert "#SBATCH --export=JUPYTERHUB_API_TOKEN,JPY_API_TOKEN,JUPYTERHUB_API_URL" in script
    assert "get-user-env" not in script


def test_over_limit_is_refused_not_rendered() -> None:
    with pytest.raises(RequestError, match="max_walltime"):
        render_script(TESTBED, JobRequest(user="alice", walltime="1-00:00:00"))


DIRECTIVE = {
    "slurm": re.compile(r"^#SBATCH --[a-z-]+(=[A-Za-z0-9_.:/%,@+-]+)?$"),
    "pbs": re.compile(r"^#PBS -[A-Za-z] [A-Za-z0-9_.:/=,@+-]+$"),
}

any_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=12
)
INJECTIONS = ["\n#SBATCH --uid=0", "\r\nid", "$(id)", "`id`", "; id", "'", '"', " ", "\u2028x",
              "\x85", "\t", "\x00", "&&", "|", ">", "*", "#", "-", "%"]
name_like = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}", fullmatch=True)
nasty = st.one_of(
    any_text,
    name_like,
    st.tuples(name_like, st.sampled_from(INJECTIONS), name_like).map("".join),
    st.integers(min_value=-2, max_value=300),
)
VALID = {
    TESTBED.site: {"partition": "debug", "account": "proj_a"},
    TESTBED_PBS.site: {"partition": "regular", "account": "proj_a"},
    PBSPRO.site: {"partition": "develop", "account": "PROJ0001"},
    SLURM_GPU.site: {"partition": "small", "account": "project_1"},
}
FIELDS = ["user", "partition", "account", "environment", "preset", "cores", "gpus", "nodes",
          "memory", "walltime", "job_name"]


@settings(max_examples=400, deadline=None)
@given(
    profile=st.sampled_from([TESTBED, TESTBED_PBS, PBSPRO, SLURM_GPU]),
    overrides=st.one_of(st.just({}), st.dictionaries(st.sampled_from(FIELDS), nasty, max_size=1)),
    command=st.lists(
        st.one_of(name_like, any_text, nasty.map(str)), min_size=1, max_size=3
    ).map(tuple),
    export_env=st.one_of(
        st.just(()), st.lists(st.one_of(name_like, any_text), max_size=2).map(tuple)
    ),
)
def test_no_accepted_value_adds_a_line(profile, overrides, command, export_env) -> None:  # type: ignore[no-untyped-def]
    fields = {"user": "alice", "job_name": "job", **VALID[profile.site], **overrides}
    request = JobRequest(command=command, export_env=export_env, **fields)
    try:
        script = render_script(profile, request)
    except RequestError:
        return
    lines = script.split("\n")
    assert lines[-1] == "" and script.splitlines() == lines[:-1]
    assert lines[0] == "#!/bin/bash -l"
    flavor = "slurm" if lines[1].startswith("#SBATCH") else "pbs"
    directives = [line for line in lines if line.startswith("#")][1:-1]
    assert directives and all(DIRECTIVE[flavor].fullmatch(d) for d in directives), directives
    # after the directives: a comment, a blank line, set -e, setup lines, the one command
    assert [line for line in lines if line.startswith("exec ")] == [lines[-2]]
    assert lines.index("set -e") == len(directives) + 3


def mostly(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Values the profile accepts four times in five, any text otherwise: every field
    must be valid at once for a script to be rendered at all."""
    return st.one_of(valid, valid, valid, valid, any_text)


@settings(max_examples=200, deadline=None)
@given(modules=st.lists(mostly(name_like), max_size=3),
       prologue=st.lists(mostly(st.tuples(name_like, st.sampled_from(INJECTIONS), name_like)
                                .map("".join)), max_size=3),
       python=mostly(st.from_regex(r"/[A-Za-z0-9_./+@-]{0,20}", fullmatch=True)),
       gres=mostly(name_like))
def test_no_accepted_profile_value_adds_a_line(modules, prologue, python, gres) -> None:  # type: ignore[no-untyped-def]
    text = f"""
site: s
clusters:
  c:
    scheduler: slurm
    partitions:
      p: {{max_walltime: "1:00:00", cores_per_node: 2, memory_per_node: 1G, gpus_per_node: 1,
          gres: {json.dumps(gres)}}}
    environments:
      e: {{modules: {json.dumps(modules)}, prologue: {json.dumps(prologue)},
           python: {json.dumps(python)}}}
"""
    try:
        profile = load_profile_text(text, "p.yaml", {})
    except ProfileError:
        return
    script = render_script(profile, JobRequest(user="u", gpus=1, command=("python", "-V")))
    lines = script.splitlines()
    # the shell line, 12 directives and the comment, a blank line, set -e, the set-up, the command
    expected = 1 + 13 + 1 + 1 + bool(modules) + len(prologue) + 1
    assert len(lines) == expected, lines
    assert all(DIRECTIVE["slurm"].fullmatch(line) for line in lines[1:13])
    assert lines[13].startswith("# rendered by hpcbridge")

"""`hpcbridge profile validate|render|schema` through hpcbridge.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcbridge.cli import main

REPO = Path(__file__).resolve().parents[2]
TESTBED = str(REPO / "site_profiles" / "testbed.yaml")


def test_validate_valid_profiles_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    paths = sorted(str(p) for p in (REPO / "site_profiles").glob("*.yaml"))
    assert main(["profile", "validate", *paths]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count(": ok") == len(paths)


def test_validate_prints_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: s\nclusters:\n  c:\n    schedular: slurm\n    partitions: {}\n")
    assert main(["profile", "validate", TESTBED, str(bad)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{bad}:3:3: clusters.c: missing required key 'scheduler'",
        (f"{bad}:4:5: unknown key 'schedular' in clusters.c — did you mean 'scheduler'? "
        "(allowed keys: description, scheduler, scheduler_options, pbs_flavor, transport, "
        "home, job_logs, status_user, min_uid, deny_users, deny_shells, partitions, "
        "default_partition, accounts, environments, default_environment, recurring)"),
        f"{bad}:5:17: clusters.c.partitions: needs at least 1 entry, got none",
    ]


def test_render_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["profile", "render", TESTBED, "--user", "alice", "--partition", "regular",
            "--cores", "4", "--memory", "8G", "--walltime", "02:00:00", "--account", "proj_a",
            "--environment", "default", "--command", "python", "-c", "print('hi')"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --partition=regular\n" in out
    assert "#SBATCH --cpus-per-task=4\n#SBATCH --mem=8G\n" in out
    assert "#SBATCH --time=02:00:00\n" in out
    assert out.endswith("exec /opt/hpcbridge/venv/bin/python -c 'print('\"'\"'hi'\"'\"')'\n")


def test_render_refuses_over_limit(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["profile", "render", TESTBED, "--user", "alice", "--partition", "debug",
            "--walltime", "03:00:00"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "hpcbridge: refused: walltime 03:00:00 is over partition debug's max_walltime 00:30:00\n"
    )


def test_render_of_invalid_profile_lists_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: [\n")
    assert main(["profile", "render", str(bad), "--user", "alice"]) == 1
    assert capsys.readouterr().out.startswith(f"{bad}:2:1: YAML syntax error")


def test_schema_is_json_with_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
    assert "Partition" in schema["$defs"]

"""The testbed's commands reach `hpcbridge` through the ``hpcbridge.cli`` entry points."""

from __future__ import annotations

import pytest

import hpcbridge.cli as cli


def test_the_installed_testbed_adds_its_commands_and_extends_up_down_doctor() -> None:
    parser = cli.build_parser()
    up = parser.parse_args(["up", "--slurm", "24.11"])
    assert up.slurm == "24.11" and up.func.__module__ == "slurm_testbed.cli"
    for argv in (["down"], ["doctor", "x.yaml"], ["testbed", "status"]):
        assert parser.parse_args(argv).func.__module__ == "slurm_testbed.cli"
    assert parser.parse_args(["profile", "schema"]).func.__module__.startswith("hpcbridge.")


def test_without_the_testbed_its_commands_say_how_to_get_it(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    assert cli.main(["testbed", "up", "--slurm", "24.11"]) == 1
    assert "install it (./dev" in capsys.readouterr().err
    assert cli.main(["up"]) == 2
    err = capsys.readouterr().err
    assert "give --site PROFILE" in err and "slurm_testbed" in err
    with pytest.raises(SystemExit):
        cli.main(["up", "--slurm", "24.11"])  # the testbed's option is the testbed's

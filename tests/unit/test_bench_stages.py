"""The parser of hpcbridge's 'spawn stages:' hub log lines (bench/stages.py)."""

from __future__ import annotations

from pathlib import Path

from bench import stages

LOG = """\
[I 2026-11-23 23:01:01.100 JupyterHub log:192] 200 GET /hub/api/users/alice (bench-admin@127.0.0.1) 3.10ms
[I 2026-11-23 23:01:02.345 JupyterHub spawner:310] alice: spawn stages: env 0.12 s, submit 0.08 s, queued 1.10 s, port 2.10 s, address 0.15 s
[I 2026-11-23 23:01:09.001 JupyterHub spawner:310] bob:c1: spawn stages: env 0.20 s, submit 0.10 s, queued 0.90 s, port 3.00 s, address 0.05 s (total 4.25 s)
[W 2026-11-23 23:01:10.000 JupyterHub spawner:200] carol: spawn stages: env fast, submit 0.1 s
[I 2026-11-23 23:01:12.500 JupyterHub spawner:310] alice:l2: spawn stages: env 0.16 s, submit 0.06 s, queued 1.30 s, port 2.50 s, address 0.10 s
"""  # noqa: E501 (hub log lines as the hub writes them, one record a line)


def test_one_line_gives_every_stage_in_order() -> None:
    row = stages.parse_line(LOG.splitlines()[1])
    assert row == {"who": "alice", "stages": {"env": 0.12, "submit": 0.08, "queued": 1.1,
                                              "port": 2.1, "address": 0.15}}
    assert list(row["stages"]) == ["env", "submit", "queued", "port", "address"]


def test_named_servers_and_other_lines() -> None:
    rows = stages.parse(LOG)
    assert [r["who"] for r in rows] == ["alice", "bob:c1", "alice:l2"]
    assert rows[1]["stages"]["total"] == 4.25 and "total" not in rows[0]["stages"]
    # a line with the marker but a stage that is not "<name> <seconds> s" is no figure
    assert stages.parse_line(LOG.splitlines()[3]) is None
    assert stages.parse_line("alice: spawn stages: ") is None


def test_medians_per_stage() -> None:
    med = stages.medians(stages.parse(LOG))
    assert med == {"env": 0.16, "submit": 0.08, "queued": 1.1, "port": 2.5, "address": 0.1,
                   "total": 4.25}


def test_renamed_or_extra_stages_are_kept() -> None:
    rows = stages.parse("x: spawn stages: sbatch 0.5 s, job start 1 s\n"
                        "y: spawn stages: sbatch 1.5 s\n")
    assert stages.medians(rows) == {"sbatch": 1.0, "job start": 1.0}


def test_summarize_without_lines_says_so() -> None:
    assert stages.summarize("nothing here\n")["spawns"] == 0
    assert "no 'spawn stages:'" in stages.summarize("")["note"]
    assert stages.summarize(LOG)["median_s"]["port"] == 2.5


def test_log_tail_reads_only_what_came_after(tmp_path: Path) -> None:
    log = tmp_path / "jupyterhub.log"
    log.write_text(LOG.splitlines()[1] + "\n")
    tail = stages.LogTail(log)
    with open(log, "a") as f:
        f.write(LOG.splitlines()[2] + "\n")
    assert [r["who"] for r in stages.parse(tail.read())] == ["bob:c1"]
    tail.mark()
    assert tail.read() == ""
    assert stages.LogTail(tmp_path / "absent.log").read() == ""

"""Reading squeue round after round: what is parsed again, and that it reads the same."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.poller import StatusPoller
from hpcbridge.schedulers import SlurmDialect, slurm_status

FIX = Path(__file__).parent.parent / "fixtures" / "slurm"
MIXED = (FIX / "squeue_mixed.txt").read_text()
IDS = [line.split("|", 1)[0] for line in MIXED.splitlines()] + ["200", "201", "999"]


def _same(a: dict[str, JobInfo], b: dict[str, JobInfo]) -> bool:
    """Equal, ``extra`` included (JobInfo's equality leaves it out)."""
    return a == b and all(a[j].extra == b[j].extra for j in a)


def _edit(text: str, job_id: str, field: int, value: str) -> str:
    lines = []
    for line in text.splitlines():
        fields = line.split("|")
        if fields[0] == job_id:
            fields[field] = value
        lines.append("|".join(fields))
    return "\n".join(lines) + "\n"


@pytest.fixture
def parses(monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    """The lines parsed field by field (not found in the memo)."""
    seen: list[str] = []
    parse = slurm_status._squeue_row

    def counting(line: str):  # type: ignore[no-untyped-def]
        seen.append(line.split("|", 1)[0])
        return parse(line)

    monkeypatch.setattr(slurm_status, "_squeue_row", counting)
    return seen


def test_a_round_parses_only_the_lines_that_changed_and_reads_them_afresh(parses) -> None:
    dialect = SlurmDialect()
    first = dialect.parse_status(MIXED, IDS)
    # the next round: running jobs' time left counts down, one queued job's reason changes
    later = _edit(_edit(_edit(MIXED, "101", 11, "25:11"), "116", 11, "1-02:02:34"),
                  "103", 5, "Resources")
    parses.clear()
    second = dialect.parse_status(later, IDS)
    assert parses == ["103"]  # the other 19 lines: the memo's rows
    assert _same(second, SlurmDialect().parse_status(later, IDS))
    assert second["101"].time_left is not None and first["101"].time_left is not None
    assert first["101"].time_left - second["101"].time_left == \
        first["116"].time_left - second["116"].time_left  # type: ignore[operator]
    assert second["102"] is first["102"]  # a queued job's line: the same row again
    assert second["200"].extra["array_tasks"] == "4"


def test_a_small_answer_in_between_keeps_the_large_one(parses) -> None:
    dialect = SlurmDialect()
    dialect.parse_status(MIXED, IDS)
    dialect.parse_status(MIXED.splitlines()[2] + "\n", ["103"])  # one job asked elsewhere
    parses.clear()
    dialect.parse_status(MIXED, IDS)
    assert parses == []
    for _ in range(slurm_status.LineMemo.KEEP + 1):  # the queue shrank for good
        dialect.parse_status(MIXED.splitlines()[2] + "\n", ["103"])
    parses.clear()
    dialect.parse_status(MIXED, IDS)
    assert len(parses) == 19  # all but 103's line, the one the memo now holds


def test_round_after_round_the_memo_reads_what_a_fresh_parse_reads() -> None:
    rng = random.Random(7)
    dialect = SlurmDialect()
    states = ["RUNNING", "PENDING", "COMPLETING", "SUSPENDED", "CANCELLED by 1000", "BOGUS"]
    text = MIXED
    for _ in range(200):
        job_id = rng.choice(IDS[:20])
        field, value = rng.choice([(11, f"{rng.randint(0, 59)}:{rng.randint(0, 59):02d}"),
                                   (11, "INVALID"), (4, rng.choice(states)),
                                   (5, rng.choice(["None", "Priority", "Resources"])),
                                   (9, rng.choice(["", "c1", "c[1-2]"]))])
        text = _edit(text, job_id, field, value)
        shown = text + rng.choice(["", "garbage line\n", "7|x\n", text.splitlines()[0] + "\n"])
        assert _same(dialect.parse_status(shown, IDS), SlurmDialect().parse_status(shown, IDS))


def test_a_shown_id_on_two_lines_is_aggregated_as_before() -> None:
    line = MIXED.splitlines()[0]
    infos = SlurmDialect().parse_status(f"{line}\n{line.replace('RUNNING', 'PENDING')}\n",
                                        ["101"])
    assert infos["101"].state is JobState.RUNNING and infos["101"].extra["array_tasks"] == "2"


@pytest.mark.parametrize("text", ["123", "41000000", "200_3", "200_[1-4%2]", "7+1", "",
                                  "12a", "123\n", "²", "١٢٣", " 1", "1 ", "-1", "1.batch"])
def test_job_ids_are_told_as_the_pattern_tells_them(text: str) -> None:
    pattern = re.compile(r"^\d+(?:_(?:\d+|\[[\d,\-%]+\]))?(?:\+\d+)?$")
    assert slurm_status.is_job_id(text) is bool(pattern.match(text))


def test_the_tracked_jobs_are_a_live_read_only_view() -> None:
    poller = StatusPoller(object(), interval=60)  # type: ignore[arg-type]
    tracked = poller.tracked
    poller.track("7", "alice", wake=False)
    assert "7" in tracked and tracked == {"7": "alice"}
    with pytest.raises(TypeError):
        tracked["8"] = "bob"  # type: ignore[index]

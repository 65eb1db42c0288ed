"""hpcbridge's entries in a user's crontab (Slurm's scrontab), beside the user's own
lines. Pure.

Each recurring job definition owns one *block*, from its begin line to its end line::

    # hpcbridge job definition 6f1c…: begin (managed by hpcbridge; edits here are replaced)
    #SCRON --job-name=hpcb-cron
    #SCRON --partition=debug
    ...
    */15 * * * * /opt/…/python -m hpcbridge.batch.recurring /home/alice/jobs/recurring/…
    # hpcbridge job definition 6f1c…: end

A paused definition keeps its two marker lines and a comment with its schedule, and no
option or entry line (an ``#SCRON`` line without its entry would pass its options on to
the next entry, which may be the user's). Our blocks go first in the crontab and each
ends with its entry, so no line of the user's can lend options to ours and none of ours
to the user's; every line outside our markers is written back exactly as it was read.

Only values this module checks reach a line: the definition id (a UUID), a schedule from
:func:`hpcbridge.batch.cron.parse_schedule` (digits and ``*,-/``), directives the adapter
rendered from a validated request, and command words from :data:`SAFE_WORD` (absolute
paths and module names; no space, quote, ``$``, ``%`` or newline), so nothing a user
typed (a notebook's name, a parameter) can add a line or a shell word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hpcbridge.errors import RequestError

DEFINITION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: a word of the entry's command line
SAFE_WORD = re.compile(r"[A-Za-z0-9_./+=:-]{1,300}")
_SCHEDULE = re.compile(r"[0-9*,/ -]{9,200}")
_BEGIN = re.compile(rf"# hpcbridge job definition ({DEFINITION_ID.pattern}): begin\b.*")
_END = re.compile(rf"# hpcbridge job definition ({DEFINITION_ID.pattern}): end")
_PAUSED = "#   paused; its schedule: "
#: what Slurm puts before the lines of an entry it disabled (a cancelled cron job)
DISABLED = "#DISABLED: "


class CrontabError(RequestError):
    """The crontab cannot be changed safely (e.g. a block of ours lost its end line)."""


@dataclass(frozen=True)
class Block:
    """One definition's lines in the crontab."""

    definition_id: str
    lines: tuple[str, ...]

    @property
    def active(self) -> bool:
        """An entry is in place: neither paused by hpcbridge nor disabled by Slurm."""
        return any(line.strip() and not line.startswith("#") for line in self.lines)

    @property
    def disabled(self) -> bool:
        """Slurm disabled the entry (its cron job was cancelled)."""
        return any(line.startswith(DISABLED) for line in self.lines)


@dataclass(frozen=True)
class Crontab:
    """A crontab read apart: our blocks by definition id, and every other line."""

    blocks: dict[str, Block]
    others: tuple[str, ...]


def parse(text: str) -> Crontab:
    """Split ``text`` into our blocks and the user's lines; CrontabError when a block of
    ours is broken (then nothing may be written back)."""
    blocks: dict[str, Block] = {}
    others: list[str] = []
    current: list[str] | None = None
    current_id = ""
    for line in text.splitlines():
        begin, end = _BEGIN.fullmatch(line), _END.fullmatch(line)
        if current is None:
            if begin:
                current, current_id = [line], begin.group(1)
            elif end:
                raise CrontabError(f"your crontab has an end line of hpcbridge job "
                                   f"definition {end.group(1)} without its begin line; "
                                   f"fix it with 'scrontab -e'")
            else:
                others.append(line)
            continue
        if begin:
            raise CrontabError(f"your crontab's block of hpcbridge job definition "
                               f"{current_id} has no end line; fix it with 'scrontab -e'")
        current.append(line)
        if end:
            if end.group(1) != current_id:
                raise CrontabError(f"your crontab's block of hpcbridge job definition "
                                   f"{current_id} ends with another's end line; fix it "
                                   f"with 'scrontab -e'")
            if current_id in blocks:
                raise CrontabError(f"your crontab has hpcbridge job definition "
                                   f"{current_id} twice; fix it with 'scrontab -e'")
            blocks[current_id] = Block(current_id, tuple(current))
            current = None
    if current is not None:
        raise CrontabError(f"your crontab's block of hpcbridge job definition {current_id} "
                           f"has no end line; fix it with 'scrontab -e'")
    return Crontab(blocks, tuple(others))


def _check_id(definition_id: str) -> None:
    if not DEFINITION_ID.fullmatch(definition_id):
        raise ValueError(f"not a job definition id: {definition_id!r}")


def block(definition_id: str, schedule: str, directives: Sequence[str],
          command: Sequence[str], *, active: bool = True) -> Block:
    """The lines of one definition. ``directives``: the adapter's option lines
    (``#SCRON ...``); ``command``: words from :data:`SAFE_WORD`."""
    _check_id(definition_id)
    if not _SCHEDULE.fullmatch(schedule) or len(schedule.split()) != 5:
        raise ValueError(f"not a checked schedule: {schedule!r}")
    bad = [w for w in command if not SAFE_WORD.fullmatch(w)]
    if bad or not command:
        raise ValueError(f"command words a crontab line cannot carry: {bad!r}")
    for line in directives:
        if not line.startswith("#") or not line.isprintable():
            raise ValueError(f"not a directive line: {line!r}")
    head = f"# hpcbridge job definition {definition_id}: begin (managed by hpcbridge; " \
           f"edits here are replaced)"
    tail = f"# hpcbridge job definition {definition_id}: end"
    if not active:
        return Block(definition_id, (head, _PAUSED + schedule, tail))
    return Block(definition_id, (head, *directives, f"{schedule} {' '.join(command)}", tail))


def render(crontab: Crontab, changes: Mapping[str, Block | None]) -> str:
    """The crontab with ``changes`` applied (a block per definition id; None removes
    it): our blocks first, then the user's lines as they were."""
    blocks = dict(crontab.blocks)
    for definition_id, new in changes.items():
        _check_id(definition_id)
        if new is None:
            blocks.pop(definition_id, None)
        else:
            blocks[definition_id] = new
    lines = [line for b in blocks.values() for line in b.lines]
    lines += crontab.others
    return "\n".join(lines) + "\n" if lines else ""

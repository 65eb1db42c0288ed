"""Schedules of recurring batch notebooks: cron expressions, checked and rewritten in one
plain form before they reach a crontab line. Pure.

The Create Job dialog's "Run on a schedule" sends a cron expression (five fields: minute,
hour, day of month, month, day of week) and a time zone. :func:`parse_schedule` accepts
the grammar classic cron accepts (``*``, values, ranges, steps, lists, month and day
names, the ``@daily``-style shorthands) and renders it with numbers only, so that the
line written into a crontab holds digits, ``*``, ``,``, ``-`` and ``/`` and nothing else.
A step of 1 is dropped: Slurm's scrontab refuses ``*/1`` ("bad step value").

:func:`check_time_zone`: a crontab runs in the cluster's local time; a schedule asked for
in another zone is accepted only where both zones give the same times.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hpcbridge.errors import RequestError, quote

#: (name, lowest, highest, names of values from ``lowest`` on)
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP",
                      "OCT", "NOV", "DEC")),
    ("day of week", 0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_SHORTHANDS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_ITEM = re.compile(r"(?P<base>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>[0-9]+))?")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
MAX_LENGTH = 200
EXAMPLE = "write five fields (minute hour day-of-month month day-of-week), e.g. " \
          "'0 6 * * 1-5' for 06:00 on weekdays"


@dataclass(frozen=True)
class Schedule:
    """A checked schedule: ``spec`` is what a crontab line carries."""

    spec: str
    #: the hour field is ``*``: the schedule runs at the same minutes of every hour
    every_hour: bool
    #: each field's values (day of week 7 counted as 0)
    values: tuple[frozenset[int], ...]


def _value(text: str, field: int) -> int:
    name, low, high, names = _FIELDS[field]
    if text.isdigit():
        value = int(text)
    elif text.upper() in names:
        value = low + names.index(text.upper())
    else:
        allowed = f"a number from {low} to {high}"
        if names:
            allowed += f" or a name ({names[0]}, {names[1]}, …)"
        raise RequestError(f"the schedule's {name} field has {quote(text)}: write {allowed}")
    if not low <= value <= high:
        raise RequestError(f"the schedule's {name} field has {value}: it must be from "
                           f"{low} to {high}")
    return value


def _field(text: str, field: int) -> tuple[str, frozenset[int]]:
    """The field in numbers, and the values it selects."""
    name, low, high, _ = _FIELDS[field]
    items: list[str] = []
    values: set[int] = set()
    for part in text.split(","):
        m = _ITEM.fullmatch(part)
        if not m:
            raise RequestError(f"the schedule's {name} field {quote(text)} is not a cron "
                               f"field: use *, numbers, ranges (1-5), steps (*/15) and lists")
        base, step = m.group("base"), m.group("step")
        if base == "*":
            first, last, shown = low, high, "*"
        else:
            ends = [_value(e, field) for e in base.split("-")]
            first, last = ends[0], ends[-1]
            if first > last:
                raise RequestError(f"the schedule's {name} field has the range {base}: "
                                   f"its start is after its end")
            shown = f"{first}-{last}" if len(ends) == 2 else str(first)
        size = int(step) if step else 1
        if not 1 <= size <= high - low + 1:
            raise RequestError(f"the schedule's {name} field has the step /{step}: it must "
                               f"be from 1 to {high - low + 1}")
        if size > 1 and "-" not in shown and shown != "*":
            shown = f"{first}-{high}"  # classic cron: "5/15" means 5-59/15
            last = high
        items.append(shown + (f"/{size}" if size > 1 else ""))
        values.update(range(first, last + 1, size))
    if field == 4 and 7 in values:
        values = (values - {7}) | {0}
    return ",".join(items), frozenset(values)


def parse_schedule(text: object) -> Schedule:
    """The schedule ``text`` (a cron expression) checked; RequestError with a sentence
    that says what is wrong otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise RequestError(f"the schedule is empty: {EXAMPLE}")
    if len(text) > MAX_LENGTH or not text.isprintable():
        raise RequestError(f"the schedule {quote(text)} is not a cron expression: {EXAMPLE}")
    source = _SHORTHANDS.get(text.strip().lower(), text)
    fields = source.split()
    if len(fields) != 5:
        raise RequestError(f"the schedule {quote(text)} has {len(fields)} field"
                           f"{'' if len(fields) == 1 else 's'}, not five: {EXAMPLE}")
    parsed = [_field(f, i) for i, f in enumerate(fields)]
    days, months = parsed[2][1], parsed[3][1]
    if fields[2] != "*" and fields[4] in ("*", "*/1") and \
            all(day > _DAYS_IN_MONTH[month - 1] for day in days for month in months):
        raise RequestError(f"the schedule {quote(text)} names no day that exists in its "
                           f"months")
    spec = " ".join(shown for shown, _ in parsed)
    return Schedule(spec=spec, every_hour=parsed[1][0] == "*",
                    values=tuple(v for _, v in parsed))


#: how far :func:`next_run` looks ahead (a 29 February schedule runs every 4 to 8 years)
_HORIZON_DAYS = 8 * 366 + 1


def _day_matches(schedule: Schedule, day: datetime) -> bool:
    """Classic cron: with both day fields restricted, either one selects a day."""
    _, _, days, months, weekdays = schedule.values
    if day.month not in months:
        return False
    dom_any, dow_any = (schedule.spec.split()[i].startswith("*") for i in (2, 4))
    in_month, in_week = day.day in days, (day.weekday() + 1) % 7 in weekdays
    if dom_any or dow_any:
        return in_month and in_week
    return in_month or in_week


def next_run(schedule: Schedule, after: datetime) -> datetime | None:
    """The first minute strictly after ``after`` the schedule selects (naive local time,
    as a crontab reads it); None when none comes within eight years."""
    minutes, hours = sorted(schedule.values[0]), sorted(schedule.values[1])
    start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    for _ in range(_HORIZON_DAYS):
        if _day_matches(schedule, day):
            for hour in hours:
                for minute in minutes:
                    moment = day.replace(hour=hour, minute=minute)
                    if moment >= start:
                        return moment
        day += timedelta(days=1)
    return None


def local_zone_name() -> str:
    """The name of this machine's time zone (the cluster's, on a node), as best known."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        return tz
    try:
        target = os.path.realpath("/etc/localtime")
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        return target.split("zoneinfo/", 1)[1]
    name = datetime.now().astimezone().tzname()
    return name or "UTC"


def _zone(name: str) -> tzinfo:
    if name.upper() in ("UTC", "Z", "ETC/UTC", "GMT"):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RequestError(f"the time zone {quote(name)} is not one this server knows "
                           f"(names such as 'Europe/Berlin' or 'UTC')") from None


def _offsets(zone: tzinfo | None, start: datetime) -> list[timedelta]:
    """The zone's UTC offset twice a day over a year: enough to see its DST rules."""
    out = []
    for half_days in range(0, 2 * 366):
        moment = (start + timedelta(hours=12 * half_days)).astimezone(zone)
        out.append(moment.utcoffset() or timedelta(0))
    return out


def check_time_zone(name: str | None, schedule: Schedule, *, local: tzinfo | None = None,
                    local_name: str | None = None, now: datetime | None = None) -> None:
    """RequestError unless ``schedule`` in zone ``name`` runs at the same moments as in
    the cluster's local time (``local``; default: this machine's): the same zone rules,
    or a schedule that runs every hour in zones apart by whole hours."""
    if not name:
        return
    start = (now or datetime.now(timezone.utc)).replace(minute=0, second=0, microsecond=0)
    theirs = _offsets(_zone(name), start)
    ours = _offsets(local, start)
    if theirs == ours:
        return
    hour = timedelta(hours=1)
    whole_hours = all((a - b) % hour == timedelta(0) for a, b in zip(theirs, ours, strict=True))
    if schedule.every_hour and whole_hours:
        return
    shown = local_name or local_zone_name()
    raise RequestError(f"the cluster runs schedules in its own time zone ({shown}), and "
                       f"this schedule would run at other times in {name}: choose the "
                       f"time zone {shown} and give the times in it")

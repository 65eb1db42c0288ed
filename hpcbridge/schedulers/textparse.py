"""Small parsers for the value formats schedulers print (durations, host lists, TRES).

Shared by the dialects so that one spelling is parsed in one place.
"""

from __future__ import annotations

import functools

import re
from datetime import datetime, timedelta

#: spellings of "no value" across squeue, sacct, sacctmgr, scontrol and qstat
_NONE_WORDS = frozenset(
    {"", "n/a", "none", "unknown", "unlimited", "infinite", "not_set", "invalid",
     "partition_limit", "(null)", "--"}
)

_DURATION = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def is_none(text: str | None) -> bool:
    return text is None or text.strip().lower() in _NONE_WORDS


def parse_int(text: str | None) -> int | None:
    if is_none(text):
        return None
    try:
        return int(float(str(text).strip()))
    except ValueError:
        return None


def min_known(a: int | None, b: int | None) -> int | None:
    """The smaller of two values where None means "not known"."""
    return b if a is None else a if b is None else min(a, b)


@functools.lru_cache(maxsize=4096)  # a status round repeats the same few values
def parse_duration(text: str | None) -> timedelta | None:
    """Slurm and PBS durations: ``[D-]HH:MM:SS``, ``MM:SS``, ``D-HH``, ``MM``, ``D-HH:MM``."""
    if is_none(text):
        return None
    m = _DURATION.match(str(text).strip())
    if not m:
        return None
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    assert a is not None
    if days is not None:
        # with a day part the fields are hours[:minutes[:seconds]]
        return timedelta(days=days, hours=a, minutes=b or 0, seconds=c or 0)
    if c is not None:
        return timedelta(hours=a, minutes=b or 0, seconds=c)
    if b is not None:
        return timedelta(minutes=a, seconds=b)
    return timedelta(minutes=a)


@functools.lru_cache(maxsize=4096)  # a status round repeats the same few values
def parse_iso(text: str | None) -> datetime | None:
    """Slurm timestamps, ``2026-11-23T10:00:00`` (local time of the cluster, naive)."""
    if is_none(text):
        return None
    try:
        return datetime.fromisoformat(str(text).strip())
    except ValueError:
        return None


def parse_ctime(text: str | None) -> datetime | None:
    """PBS timestamps, ``Mon Nov 23 10:00:00 2026`` (C ``ctime``/Perl ``localtime``)."""
    if is_none(text):
        return None
    try:
        return datetime.strptime(" ".join(str(text).split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets: ``c[1-3,5],gpu1`` -> ``c[1-3,5]``, ``gpu1``."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p]


@functools.lru_cache(maxsize=4096)  # a status round repeats the same few values
def expand_hostlist(text: str | None) -> tuple[str, ...]:
    """Expand a Slurm host list: ``c[1-3,05],gpu1`` -> c1 c2 c3 c05 gpu1 (one bracket level)."""
    if is_none(text):
        return ()
    hosts: list[str] = []
    for item in split_top_level(str(text).strip()):
        m = re.fullmatch(r"([^\[\]]*)\[([^\]]+)\](.*)", item)
        if not m:
            hosts.append(item)
            continue
        prefix, ranges, suffix = m.groups()
        for rng in ranges.split(","):
            lo, _, hi = rng.partition("-")
            if not hi:
                hosts.append(f"{prefix}{lo}{suffix}")
                continue
            width = len(lo) if lo.startswith("0") else 0
            for n in range(int(lo), int(hi) + 1):
                hosts.append(f"{prefix}{n:0{width}d}{suffix}")
    return tuple(hosts)


_MEM_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024, "P": 1024**3}


def parse_memory_mb(text: str | None) -> int | None:
    """``16G`` -> 16384, ``4000M``/``4000`` -> 4000 (Slurm's default unit is MB); PBS ``4gb``."""
    if is_none(text):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGTP]?)B?", str(text).strip(), re.IGNORECASE)
    if not m:
        return None
    return int(float(m.group(1)) * _MEM_UNITS[m.group(2).upper() or "M"])


def parse_tres(text: str | None) -> dict[str, int]:
    """``cpu=4,mem=16G,gres/gpu=2`` -> {"cpu": 4, "mem": 16384, "gres/gpu": 2}."""
    out: dict[str, int] = {}
    if is_none(text):
        return out
    for item in str(text).split(","):
        key, sep, value = item.partition("=")
        if not sep:
            continue
        number = parse_memory_mb(value) if key == "mem" else parse_int(value)
        if number is not None:
            out[key.strip()] = number
    return out


def gpus_from_gres(text: str | None) -> int | None:
    """GPUs per node from a gres spec such as ``gpu:2``, ``gpu:a100:4(S:0-1)``."""
    if is_none(text):
        return None
    total = 0
    for item in split_top_level(str(text)):
        fields = re.sub(r"\(.*?\)", "", item).split(":")
        if fields[0] == "gpu" and fields[-1].isdigit():
            total += int(fields[-1])
    return total or None

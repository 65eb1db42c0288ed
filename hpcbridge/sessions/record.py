"""Session records: what one notebook server or batch run ran, where, and what it used.

A record is one JSON file per session, ``~/.hpcbridge/sessions/<id>.json`` (mode 0600,
folder 0700), in the home of the user the job ran as. Its schema is versioned
(:data:`SCHEMA`) and documented in docs/sessions.md. Three parts, written by three
parties, each as the user:

- the *request* (who submitted it: the hub's spawner, or the batch submission): the
  site profile's digest and the request as the profile's gate validated it;
- ``start``: written by the job itself when it starts (node, modules, Python packages,
  container image and digest, the job script): ``hpcbridge/sessions/capture.py``;
- ``end``: the scheduler's accounting once the job ended, written by whoever sees the
  end first (the hub's poll or stop, the batch backend, ``hpcbridge session``):
  ``hpcbridge/sessions/complete.py``. It does not need the job's node, so a job whose
  node died still gets its end (``NODE_FAIL``).

No part ever holds a token or any other secret: the request's fields are listed here
(:data:`REQUEST_KEYS`), nothing else of the job's environment is written.

Standard library only: the job reads and writes records on the compute node.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: the schema's name and version, the first key of every record
SCHEMA = "hpcbridge-session/1"
#: the records' folder under the home directory
FOLDER = ".hpcbridge/sessions"
#: the job's environment variable holding the request part (JSON; no secret in it)
SESSION_ENV = "HPCBRIDGE_SESSION"
#: the session's id in a notebook server's (and its kernels') environment
SESSION_ID_ENV = "HPCBRIDGE_SESSION_ID"
#: a record's id: also its file name, so letters, digits and ``_.-`` only
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
#: larger files are not records (a listing reads at most this much of each)
MAX_BYTES = 2 * 2**20
KINDS = ("server", "batch")
#: the request's fields a record keeps: the spawn options, resolved by the gate
REQUEST_KEYS = ("preset", "cluster", "partition", "account", "cores", "memory", "gpus",
                "walltime", "environment", "nodes")
#: the request's fields "Start again" sends as spawn options (a preset's values are
#: already resolved into them)
OPTION_KEYS = ("cluster", "partition", "account", "cores", "memory", "gpus", "walltime",
               "environment")


def new_id(now: float | None = None) -> str:
    """``20261130T0805Z-3fa2c1``: sorts by start time, unique enough per user."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(3)}"


def check_id(record_id: str) -> str:
    if not isinstance(record_id, str) or not ID_PATTERN.fullmatch(record_id):
        raise ValueError(f"not a session id: {str(record_id)[:60]!r} (letters, digits, "
                         "'_', '.', '-')")
    return record_id


def folder_of(home: str | os.PathLike[str]) -> Path:
    return Path(home) / FOLDER


def path_of(home: str | os.PathLike[str], record_id: str) -> Path:
    return folder_of(home) / f"{check_id(record_id)}.json"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def dumps(record: Mapping[str, Any]) -> str:
    """One line of ASCII JSON, the schema first (the files' own format)."""
    ordered = {"schema": record.get("schema", SCHEMA), **record}
    return json.dumps(ordered, ensure_ascii=True, separators=(",", ":")) + "\n"


def write(path: Path, record: Mapping[str, Any]) -> None:
    """Write ``record`` to ``path`` (0600; folder 0700), replacing it at once."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".new.{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(dumps(record))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def loads(text: str) -> dict[str, Any]:
    """A record from its file's text; ValueError naming what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    except RecursionError:  # a hand-made file nested thousands of levels deep
        raise ValueError("not JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    wrong = problems(data)
    if wrong:
        raise ValueError("; ".join(wrong))
    return data


def read(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES >> 20} MiB")
    return loads(path.read_text(encoding="utf-8"))


def _check(found: list[str], where: str, value: Any, kind: type, optional: bool = True
           ) -> None:
    if value is None and optional:
        return
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        found.append(f"{where} must be {kind.__name__}, not {json.dumps(value)[:60]}")


def problems(record: Mapping[str, Any]) -> list[str]:
    """What makes ``record`` unusable as a record of this schema; [] when nothing."""
    found: list[str] = []
    if record.get("schema") != SCHEMA:
        found.append(f"schema is {json.dumps(record.get('schema'))[:60]}, expected "
                     f"{SCHEMA!r}")
        return found
    if not isinstance(record.get("id"), str) or not ID_PATTERN.fullmatch(record["id"]):
        found.append("id is missing or not a session id")
    if record.get("kind") not in KINDS:
        found.append(f"kind must be one of {', '.join(KINDS)}")
    for key in ("user", "site", "cluster", "profile_digest"):
        _check(found, key, record.get(key), str, optional=False)
    _check(found, "job_id", record.get("job_id"), str)
    request = record.get("request")
    if not isinstance(request, dict):
        found.append("request must be an object")
    else:
        extra = sorted(set(request) - set(REQUEST_KEYS))
        if extra:
            found.append(f"request has unknown keys: {', '.join(extra)[:80]}")
        for key in ("cores", "gpus", "nodes"):
            _check(found, f"request.{key}", request.get(key), int)
        for key in set(REQUEST_KEYS) - {"cores", "gpus", "nodes"}:
            _check(found, f"request.{key}", request.get(key), str)
    for part in ("start", "end"):
        _check(found, part, record.get(part), dict)
    return found


def session_env(record_id: str, kind: str, *, user: str, site: str, cluster: str,
                profile_digest: str, request: Mapping[str, Any],
                extra: Mapping[str, Any] | None = None) -> str:
    """The request part of a record as the job receives it (:data:`SESSION_ENV`)."""
    return json.dumps({"schema": SCHEMA, "id": check_id(record_id), "kind": kind,
                       "user": user, "site": site, "cluster": cluster,
                       "profile_digest": profile_digest,
                       "request": {k: request.get(k) for k in REQUEST_KEYS},
                       **(extra or {})}, sort_keys=True)


def home_of(template: str, user: str) -> str:
    """A cluster's ``home`` template for ``user`` (as the profile's gate fills it)."""
    return template.replace("{user}", user)


def core_hours(record: Mapping[str, Any]) -> float | None:
    """Cores x walltime used, from the end's accounting; None before the end."""
    end = record.get("end") or {}
    seconds = end.get("core_seconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        return round(seconds / 3600, 3)
    return None

"""The running session's record, from a notebook::

    import hpcbridge.session
    record = hpcbridge.session.current()      # a dict: docs/sessions.md

A notebook server started by the hub and a batch run know their session's id (the
job's environment); the record is the JSON file the job wrote into the home
(``~/.hpcbridge/sessions/<id>.json``). Its ``start`` is written a moment after the
server starts (``pip freeze`` runs beside it), so :func:`current` waits for it a little.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hpcbridge.sessions import record

__all__ = ["current", "path"]


def _session_id() -> str | None:
    found = os.environ.get(record.SESSION_ID_ENV)
    if found:
        return found
    text = os.environ.get(record.SESSION_ENV)
    if text:
        try:
            return str(json.loads(text)["id"])
        except (ValueError, KeyError, TypeError):
            return None
    return None


def path() -> Path | None:
    """Where the running session's record is; None outside a session."""
    found = _session_id()
    return record.path_of(os.path.expanduser("~"), found) if found else None


def current(wait: float = 30.0) -> dict[str, Any] | None:
    """The running session's record (with its ``start`` once the job wrote it, waiting
    up to ``wait`` seconds for that); None outside a session of hpcbridge."""
    where = path()
    if where is None:
        return None
    deadline = time.monotonic() + wait
    while True:
        try:
            found = record.read(where)
        except (OSError, ValueError):
            found = None
        if (found is not None and found.get("start")) or time.monotonic() >= deadline:
            return found
        time.sleep(0.25)

"""Which Dask clusters the notebooks of a server run, for the JupyterLab Dask sidebar.

dask-labextension lists only the clusters its server-side manager started itself; a
cluster made in a notebook lives in the kernel's process, which the server cannot see.
So a cluster started under a JupyterHub server leaves a small record in
``~/.hpcbridge/dask/`` (0700): its name, its scheduler's address, its dashboard link,
which server and process made it. The server's side (``hpcbridge/dask/lab.py``) reads
the records of its own server, asks each scheduler for the cluster's state and lists
it. Records are the user's own files read by the user's own server: nothing here
crosses from one user to another, but they are still checked before use.
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: the server a cluster belongs to: JupyterHub's prefix of it (``/user/alice/``)
SERVER_ENV = "JUPYTERHUB_SERVICE_PREFIX"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ADDRESS = re.compile(r"tcp://[A-Za-z0-9_.:\[\]-]{1,200}")
#: a fixed namespace: a cluster keeps its sidebar id across refreshes
_IDS = uuid.UUID("6f1c4e9a-3b57-4d2e-9c1a-8e0b7d2f5a41")


@dataclass(frozen=True)
class ClusterRecord:
    name: str
    address: str
    dashboard_link: str
    server: str
    host: str
    pid: int

    @property
    def lab_id(self) -> str:
        """The sidebar's id: a UUID (dask-labextension's routes accept only that form)."""
        return str(uuid.uuid5(_IDS, f"{self.server}\0{self.host}\0{self.name}"))


def records_dir(home: str | None = None) -> Path:
    return Path(home or os.path.expanduser("~")) / ".hpcbridge" / "dask"


def parse_record(data: Any) -> ClusterRecord | None:
    """A record from a file's JSON, or None when any field is not what we wrote."""
    if not isinstance(data, Mapping):
        return None
    try:
        record = ClusterRecord(
            name=str(data["name"]), address=str(data["address"]),
            dashboard_link=str(data.get("dashboard_link") or ""), server=str(data["server"]),
            host=str(data["host"]), pid=int(data["pid"]))
    except (KeyError, TypeError, ValueError):
        return None
    if not (_NAME.fullmatch(record.name) and _ADDRESS.fullmatch(record.address)
            and record.pid > 0 and len(record.dashboard_link) < 500):
        return None
    return record


def this_server(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get(SERVER_ENV) or None


def write_record(name: str, address: str, dashboard_link: str,
                 directory: Path | None = None) -> Path | None:
    """Record a cluster of this process; None when not under a JupyterHub server."""
    server = this_server()
    if server is None:
        return None
    record = ClusterRecord(name, address, dashboard_link, server, socket.gethostname(),
                           os.getpid())
    if parse_record(asdict(record)) is None:
        return None
    folder = directory or records_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asdict(record), f)
    os.replace(tmp, path)
    return path


def remove_record(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_records(server: str, directory: Path | None = None,
                 alive: Any = _alive) -> list[ClusterRecord]:
    """This server's live clusters on this host; records of ended processes are removed."""
    folder = directory or records_dir()
    host = socket.gethostname()
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = parse_record(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
        if record is None or record.server != server or record.host != host:
            continue
        if not alive(record.pid):
            path.unlink(missing_ok=True)  # a kernel killed outright leaves its record
            continue
        found.append(record)
    return found


def sidebar_name(name: str, message: str | None) -> str:
    """The sidebar shows a cluster's name only: the clamping message goes with it."""
    return f"{name} — {message}" if message else name

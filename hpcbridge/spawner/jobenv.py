"""What the notebook job receives: its private environment file and its command.

Pure helpers plus the client call that writes the file as the user. The token travels on
the command's stdin into a file only the user can read; it is never part of an argv, a
batch script, or a log line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

from hpcbridge.client import SchedulerClient

#: environment variables of the hub's own process that must not reach a compute node
_DROP = frozenset({"PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "CONDA_PREFIX",
                   "CONDA_DEFAULT_ENV", "HOME", "USER", "SHELL"})
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def job_prefix(tag: str = "") -> str:
    """``hpcb-nb-``, or ``hpcb-nb.<tag>-`` for a hub with a job tag: the prefix a hub's
    orphan sweep owns (the untagged prefix does not match a tagged one, nor the reverse)."""
    return f"hpcb-nb.{_SAFE_NAME.sub('_', tag)}-" if tag else "hpcb-nb-"


def job_name(user: str, server: str, tag: str = "") -> str:
    """A recognisable job name: ``hpcb-nb[.<tag>]-<user>[-<server>]``, scheduler-safe."""
    base = job_prefix(tag) + _SAFE_NAME.sub("_", user) + (f"-{server}" if server else "")
    return _SAFE_NAME.sub("_", base)[:64]


def env_document(env: Mapping[str, str]) -> bytes:
    return json.dumps({k: v for k, v in env.items() if k not in _DROP},
                      sort_keys=True).encode()


def launch_command(env_file: str, *, warm: bool = False) -> tuple[str, ...]:
    # "python" is replaced by the environment's interpreter when the script is rendered
    return ("python", "-m", "hpcbridge.spawner.launch", *(("--warm",) if warm else ()),
            env_file)


def warm_job_name(user: str, preset: str) -> str:
    """``hpcb-warm-<user>-<preset>``: a warm-pool job (not swept as an orphan notebook)."""
    return _SAFE_NAME.sub("_", f"hpcb-warm-{user}-{preset}")[:64]


async def write_env_file(client: SchedulerClient, user: str, home: str,
                         env: Mapping[str, str], log_folder: str) -> str:
    """Create ``HOME/.hpcbridge/env.XXXXXXXXXX`` (0600, folder 0700) as user, and the
    job's ``log_folder`` in the same command (the scheduler does not make it); its path."""
    return await client.stage_private_file(user, f"{home}/.hpcbridge", env_document(env),
                                           also=[log_folder])

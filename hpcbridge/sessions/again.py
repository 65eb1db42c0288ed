"""Start a batch run's session again: ``python -m hpcbridge.sessions.again``.

The hub's "My sessions" (``hpcbridge/spawner/sessionspage.py``) runs it as the user on
the cluster's login node, through the scheduler client, with one JSON object on stdin::

    {"id": "<record id>", "profile": <the hub's profile as a job on that cluster sees it>}

It reads the record from the caller's own home (never a path it is given), takes the
run's folder the record names, and submits the same notebook again: the copy of the
notebook the run ran, the same parameters (a sweep's sets too), the same input files
and folders (the copies in the run's folder) and the record's request, through the same
checks as every batch submission (``hpcbridge/batch/submit.py``: the notebook inside
the home, its parameters cell, the profile's gate, a sweep's room in the QOS). The new
run gets a folder of its own beside the old one, and a record of its own.

It prints one JSON line: ``{"job_id", "folder", "record"}`` (exit 0), or ``{"refused":
"<why>"}`` (exit 1, nothing stored): a record that is not one (edited by hand), another
user's, not a batch run's, a folder gone, or the gate's own words.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from hpcbridge.errors import HpcBridgeError, RequestError

#: stdin larger than this is not a request of the hub's
MAX_INPUT = 4 * 2**20


def _values(values: dict[str, Any]) -> dict[str, str]:
    """Parameters as the dialog's text that reads back as exactly these values
    (``hpcbridge/batch/request.py`` reads a Python literal: ``'3'`` stays a string)."""
    return {name: repr(value) for name, value in values.items()}


def prepare_again(profile: Any, user: str, home: Path, rec: dict[str, Any]) -> Any:
    """The run of ``rec`` again, checked (a :class:`~hpcbridge.batch.submit.Prepared`);
    RequestError with the reason. Nothing is stored."""
    from hpcbridge.batch.spec import BatchSpec, folder_name
    from hpcbridge.batch.submit import prepare, read_notebook
    from hpcbridge.sessions import record

    if rec.get("user") != user:
        raise RequestError(f"this is a record of {str(rec.get('user'))[:40]!r}, not yours")
    if rec.get("kind") != "batch" or not isinstance(rec.get("folder"), str):
        raise RequestError("not a batch run's record")
    old = Path(rec["folder"])
    if not old.is_absolute() or not old.resolve().is_relative_to(home.resolve()):
        raise RequestError(f"the run's folder {rec['folder'][:200]!r} is outside your home "
                           "folder")
    try:
        spec = BatchSpec.read(old)
    except (OSError, ValueError, TypeError):
        raise RequestError(f"the run's folder {str(old)!r} is gone or holds no run "
                           "(hpcbridge-job.json)") from None
    if spec.cluster != rec.get("cluster"):
        raise RequestError("the record and its run's folder name different clusters")
    job_id = str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
    stem = Path(spec.input).stem
    request = rec.get("request") or {}
    options = {k: request[k] for k in record.OPTION_KEYS if request.get(k) is not None}
    job = prepare(
        profile, user, cluster=spec.cluster, notebook=old / spec.input,
        content=read_notebook(old / spec.input, home, spec.input),
        folder=old.parent / folder_name(spec.input, job_id), job_id=job_id,
        outputs={fmt: f"{stem}-{stamp}.{fmt}" for fmt in spec.outputs},
        parameters=_values(spec.parameters), environment=None, compute_type=None,
        options=options, sweep=[_values(one) for one in spec.sweep],
        inputs=[old / name for name in spec.inputs], home=home)
    return replace(job, spec=replace(job.spec, kernel=spec.kernel))


async def start_again(profile: Any, user: str, home: Path, record_id: str,
                      client: Any = None) -> dict[str, Any]:
    """Check and submit (with this machine's scheduler commands, unless ``client``);
    the answer to print."""
    from hpcbridge.batch.submit import fit_sweep, submit
    from hpcbridge.client import SchedulerClient
    from hpcbridge.schedulers import dialect_of
    from hpcbridge.sessions import record

    try:
        rec = record.read(record.path_of(home, record_id))
    except FileNotFoundError:
        raise RequestError(f"you have no session record {record_id}") from None
    except (OSError, ValueError) as exc:
        raise RequestError(f"this record cannot be used: {exc}") from None
    if rec.get("cluster") not in profile.clusters:
        raise RequestError(f"the site has no cluster {str(rec.get('cluster'))[:40]!r} now")
    job = prepare_again(profile, user, home, rec)
    client = client or SchedulerClient.on_this_machine(
        dialect_of(profile.clusters[rec["cluster"]]))
    job = await fit_sweep(client, user, job)
    spec = await submit(client, user, job)
    return {"job_id": spec.scheduler_job_id, "folder": str(job.folder),
            "record": spec.session.get("id")}


def main() -> int:
    from hpcbridge.profiles import SiteProfile

    try:
        given = json.loads(sys.stdin.read(MAX_INPUT))
        record_id = given["id"]
        profile = SiteProfile.model_validate_json(json.dumps(given["profile"]))
    except (ValueError, KeyError, TypeError) as exc:
        print(json.dumps({"refused": f"not a request of the hub's: {str(exc)[:200]}"}))
        return 2
    try:
        answer = asyncio.run(start_again(profile, getpass.getuser(), Path.home(),
                                         str(record_id)))
    except FileNotFoundError as exc:
        answer = {"refused": f"the run's notebook {exc} is gone"}
    except HpcBridgeError as exc:
        answer = {"refused": str(exc)}
    print(json.dumps(answer))
    return 0 if "job_id" in answer else 1


if __name__ == "__main__":
    sys.exit(main())

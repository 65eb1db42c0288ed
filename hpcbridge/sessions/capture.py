"""The job's part of its session record: ``python -m hpcbridge.sessions.capture``.

Started by the notebook job's launcher (``hpcbridge/spawner/launch.py``) as a process of
its own beside the server, so the server does not wait for ``pip freeze``; by the batch
runner (``hpcbridge/batch/runner.py``) before the notebook runs. It reads the request
part from :data:`~hpcbridge.sessions.record.SESSION_ENV` and writes the record with its
``start``: the node, the job id, the modules loaded (with versions), the Python
packages of the kernel's environment (``pip freeze``; ``conda list --explicit`` in a
conda environment), the Apptainer image and its digest when the job runs in one, and
the job script as rendered for the request. Its environment holds no token (the
launcher leaves them out), and it writes nothing of the environment but these.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpcbridge.sessions import record

#: environment variables with the job's id, per scheduler
JOB_ID_ENV = ("SLURM_JOB_ID", "PBS_JOBID")
#: the same for a task of a job array: the array's own id
ARRAY_ID_ENV = ("SLURM_ARRAY_JOB_ID", "PBS_ARRAY_ID")
#: Apptainer (and Singularity) name the image the job runs in
IMAGE_ENV = ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")
#: words that mark a variable a capture's child must not see
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY")
PIP_TIMEOUT = 120.0
#: run in the kernel's Python: distributions no installer put there (an ``.egg-info`` of
#: a source checkout on the path) or installed from a URL or a folder (PEP 610): no
#: index has them under their pinned version
LOCAL_DISTS = (
    "import importlib.metadata as m, json\n"
    "print(json.dumps(sorted({d.metadata['Name'] for d in m.distributions()\n"
    "    if d.metadata['Name'] and (d.read_text('INSTALLER') is None\n"
    "                               or d.read_text('direct_url.json') is not None)})))")
#: what the submitter passes for the capture only (the script is kept in ``start``)
SUBMITTER_ONLY = ("job_name", "container_image", "script")


def without_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without variables whose names speak of tokens, secrets or keys."""
    return {k: v for k, v in environ.items()
            if not any(word in k.upper() for word in SECRET_WORDS)}


def modules(environ: Mapping[str, str]) -> list[dict[str, str]]:
    """``LOADEDMODULES`` (Environment Modules and Lmod) as names and versions."""
    found = []
    for item in environ.get("LOADEDMODULES", "").split(":"):
        if item:
            name, _, version = item.rpartition("/")
            found.append({"name": name or version, "version": version if name else ""})
    return found


def _run(argv: list[str], environ: Mapping[str, str]) -> list[str] | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT,
                              env=dict(environ), check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return [line for line in done.stdout.splitlines() if line.strip()]


def packages(python: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The kernel environment's packages: ``pip freeze --all`` of its Python, else what
    ``importlib.metadata`` finds; and conda's explicit list in a conda environment."""
    found: dict[str, Any] = {"python": python}
    frozen = _run([python, "-m", "pip", "freeze", "--all"], environ)
    if frozen is None:
        from importlib.metadata import distributions

        frozen = sorted({f"{d.metadata['Name']}=={d.version}" for d in distributions()
                         if d.metadata["Name"]}, key=str.lower)
        found["source"] = "importlib.metadata"
    else:
        found["source"] = "pip freeze"
    found["requirements"] = frozen
    local = _run([python, "-c", LOCAL_DISTS], environ)
    if local:
        try:
            found["not_from_an_index"] = [str(n) for n in json.loads(local[-1])]
        except ValueError:
            pass
    if environ.get("CONDA_PREFIX"):
        explicit = _run(["conda", "list", "--explicit"], environ)
        if explicit is not None:
            found["conda_explicit"] = explicit
    return found


def file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def container(environ: Mapping[str, str], profile_image: str | None
              ) -> dict[str, str | None] | None:
    image = next((environ[k] for k in IMAGE_ENV if environ.get(k)), None) or profile_image
    if not image:
        return None
    try:
        return {"image": image, "digest": file_digest(image)}
    except OSError as exc:  # not visible inside the container: say so, never guess
        return {"image": image, "digest": None, "why_no_digest": str(exc)[:200]}


def job_script(session: Mapping[str, Any], command: list[str]) -> str | None:
    """The batch script the profile renders for the session's request and ``command``
    (the job copy of the hub's profile, whose digest the record holds)."""
    from hpcbridge.errors import HpcBridgeError
    from hpcbridge.profiles import JobRequest, render_script
    from hpcbridge.profiles.jobcopy import profile_in_job

    try:
        options = {k: v for k, v in (session.get("request") or {}).items()
                   if k in record.OPTION_KEYS and v is not None}
        request = JobRequest.from_options(options, user=str(session["user"]),
                                          job_name=str(session.get("job_name") or "hpcbridge"),
                                          command=tuple(command))
        return render_script(profile_in_job(), request)
    except (HpcBridgeError, KeyError, ValueError):
        return None


def start_part(session: Mapping[str, Any], environ: Mapping[str, str], python: str,
               command: list[str] | None = None, script: str | None = None) -> dict[str, Any]:
    env = environ
    return {
        "time": record.now_iso(),
        "host": socket.gethostname(),
        "nodes": _nodes(env),
        "modules": modules(env),
        "packages": packages(python, without_secrets(env)),
        "python_version": sys.version.split()[0],
        "container": container(env, session.get("container_image")),
        "script": script if script is not None else
        (job_script(session, command) if command else None),
    }


def _nodes(environ: Mapping[str, str]) -> list[str]:
    listed = environ.get("SLURM_JOB_NODELIST")
    if listed and "[" not in listed:
        return listed.split(",")
    nodefile = environ.get("PBS_NODEFILE")
    if nodefile:
        try:
            return list(dict.fromkeys(Path(nodefile).read_text().split()))
        except OSError:
            pass
    return [socket.gethostname()]


def job_id(environ: Mapping[str, str]) -> str | None:
    """The job's id; an array's own id for any of its tasks (one record per sweep)."""
    return next((environ[k] for k in (*ARRAY_ID_ENV, *JOB_ID_ENV) if environ.get(k)), None)


def capture(session: Mapping[str, Any], environ: Mapping[str, str], home: str, *,
            python: str = sys.executable, command: list[str] | None = None,
            script: str | None = None) -> Path:
    """Write the record's request and start parts; keep an end someone already wrote
    (a job cancelled at once may be completed before this runs)."""
    path = record.path_of(home, str(session["id"]))
    base = {k: v for k, v in session.items() if k not in SUBMITTER_ONLY}
    base["job_id"] = job_id(environ) or session.get("job_id")
    base["start"] = start_part(session, environ, python, command,
                               script if script is not None else session.get("script"))
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        existing = None
    if isinstance(existing, dict) and isinstance(existing.get("end"), dict):
        base["end"] = existing["end"]
    record.write(path, base)
    return path


def main(argv: list[str] | None = None) -> int:
    """``capture [COMMAND...]``: the session from the environment, the command the job
    script runs (to render the script again)."""
    args = sys.argv[1:] if argv is None else argv
    # beside a server that is starting: its start-up (imports) comes first
    os.nice(19)
    text = os.environ.get(record.SESSION_ENV)
    if not text:
        print("hpcbridge: no session to record", file=sys.stderr)
        return 1
    session = json.loads(text)
    path = capture(session, os.environ, os.path.expanduser("~"), command=args or None)
    print(f"hpcbridge: session record {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

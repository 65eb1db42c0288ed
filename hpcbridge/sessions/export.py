"""A session record as a folder (or zip) to rebuild its environment elsewhere:
``hpcbridge session export ID``.

The folder holds ``record.json``, the Python packages as ``requirements.txt`` (pip) and
``environment.yml`` (conda and Binder read it: the Python version and the same pins
under ``pip:``), the job script (``job.sh``), the job's log as the scheduler wrote it
(``job.log``) and, for a batch run, the runner's log (``run.log``). Packages pip cannot
install from an index (a local path, an editable checkout) are written as comments
that say so, so ``pip install -r requirements.txt`` works on another machine.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: requirement lines pip can take from an index: ``name==version``
_PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[^\s;]+$")
_OUTPUT = re.compile(r"^#SBATCH --output=(\S+)$|^#PBS -o (\S+)$", re.MULTILINE)
_NAME = re.compile(r"^#SBATCH --job-name=(\S+)$|^#PBS -N (\S+)$", re.MULTILINE)


def requirements_txt(rec: Mapping[str, Any]) -> str:
    packages = ((rec.get("start") or {}).get("packages") or {})
    local = {_canonical(str(n)) for n in packages.get("not_from_an_index") or ()}
    lines = [f"# packages of session {rec.get('id')} ({packages.get('source', 'unknown')} "
             f"of {packages.get('python', 'its Python')})"]
    for line in packages.get("requirements") or ():
        line = str(line).strip()
        pinned = _PINNED.fullmatch(line) and _canonical(line.split("==")[0]) not in local
        lines.append(line if pinned else f"# not from an index: {line}")
    return "\n".join(lines) + "\n"


def _canonical(name: str) -> str:
    """A distribution's name as indexes compare them (PEP 503), extras left out."""
    return re.sub(r"[-_.]+", "-", name.split("[", 1)[0]).lower()


def environment_yml(rec: Mapping[str, Any]) -> str:
    """conda's and Binder's ``environment.yml``: Python's version, pip, and the pins."""
    start = rec.get("start") or {}
    version = ".".join(str(start.get("python_version") or "3").split(".")[:2])
    pins = [line for line in requirements_txt(rec).splitlines() if not line.startswith("#")]
    body = [f"name: hpcbridge-{rec.get('id')}", "channels:", "  - conda-forge",
            "dependencies:", f"  - python={version}", "  - pip"]
    if pins:
        body += ["  - pip:", *(f"    - {json.dumps(p)}" for p in pins)]
    return "\n".join(body) + "\n"


def job_log_path(rec: Mapping[str, Any]) -> str | None:
    """Where the scheduler wrote the job's output: the script's ``--output`` / ``-o``
    with Slurm's ``%x`` (job name) and ``%j`` (job id) filled in."""
    script = str((rec.get("start") or {}).get("script") or "")
    found, named = _OUTPUT.search(script), _NAME.search(script)
    if not found:
        return None
    path = found.group(1) or found.group(2)
    name = (named.group(1) or named.group(2)) if named else ""
    return path.replace("%x", name).replace("%j", str(rec.get("job_id") or ""))


def export(rec: Mapping[str, Any], target: Path, *, as_zip: bool = False) -> Path:
    """Write the export of ``rec`` into the new folder ``target``; with ``as_zip`` the
    folder becomes ``target.zip``. The path written."""
    target.mkdir(mode=0o700, parents=True)
    (target / "record.json").write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    (target / "requirements.txt").write_text(requirements_txt(rec), encoding="utf-8")
    (target / "environment.yml").write_text(environment_yml(rec), encoding="utf-8")
    script = (rec.get("start") or {}).get("script")
    if script:
        (target / "job.sh").write_text(str(script), encoding="utf-8")
    logs = {"job.log": job_log_path(rec)}
    if rec.get("kind") == "batch" and rec.get("folder"):
        logs["run.log"] = f"{rec['folder']}/job.log"
    for name, source in logs.items():
        if source and Path(source).is_file():
            shutil.copyfile(source, target / name)
    if not as_zip:
        return target
    archive = shutil.make_archive(str(target), "zip", root_dir=target.parent,
                                  base_dir=target.name)
    shutil.rmtree(target)
    return Path(archive)

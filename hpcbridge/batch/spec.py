"""The files of one batch notebook job, in its output folder. Standard library only: the
job's runner (``hpcbridge/batch/runner.py``) reads them on the compute node.

A job's folder (``<server root>/jobs/<notebook>-<job id>/``) is its record:

    hpcbridge-job.json     what to run: the notebook, the outputs' names, the parameters,
                           the scheduler's job id (written by the notebook server)
    <notebook>.ipynb       the input, copied when the job was created
    <notebook>-<time>.ipynb / .html   the executed notebook (and its HTML), by the runner
    job.log                the runner's and the kernel's output
    hpcbridge-result.json  how the run ended (the failing cell), by the runner
    task-<i>/              a sweep's task i: its executed notebook, log and result
    ...                    whatever the notebook writes into its working directory
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SPEC_FILE = "hpcbridge-job.json"
#: where the runner puts ``BatchSpec.profile`` for the notebook (the name
#: ``hpcbridge/profiles/jobcopy.py`` reads; this module imports nothing of hpcbridge)
JOB_PROFILE_ENV = "HPCBRIDGE_SITE_PROFILE_JSON"
PROFILE_ENV = "HPCBRIDGE_SITE_PROFILE"
RESULT_FILE = "hpcbridge-result.json"
LOG_FILE = "job.log"
#: the scheduler's job name of every batch notebook job (the folder says which one)
JOB_NAME = "hpcb-batch"
#: output formats a run can produce (jupyter-scheduler's names)
FORMATS = ("ipynb", "html")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def folder_name(input_filename: str, job_id: str) -> str:
    """``<notebook stem>-<job id>``: letters, digits and ``_.-`` only, so that the folder
    is as easy to type as to find (a notebook called ``a b!.ipynb`` gives ``a_b_-<id>``)."""
    stem = os.path.splitext(os.path.basename(input_filename))[0]
    return f"{_UNSAFE.sub('_', stem).lstrip('.')[:64] or 'notebook'}-{job_id}"


@dataclass(frozen=True)
class BatchSpec:
    """What a job runs; ``hpcbridge-job.json`` in its folder."""

    job_id: str
    cluster: str
    #: file names inside the folder
    input: str
    outputs: dict[str, str]
    #: papermill parameters (JSON values)
    parameters: dict[str, Any] = field(default_factory=dict)
    #: the kernel to run, when the notebook names none
    kernel: str = "python3"
    scheduler_job_id: str | None = None
    #: a sweep: one parameter set per task of a job array, run in ``task-<i>/``
    sweep: list[dict[str, Any]] = field(default_factory=list)
    #: the recurring job definition this run belongs to (``hpcbridge/batch/definition.py``)
    definition_id: str | None = None
    #: where a task finds its index: the first of these variables that is set (the
    #: scheduler adapter's ``array_task_variables``)
    task_variables: list[str] = field(default_factory=list)
    #: the job copy of the site profile the job was checked against (no hub settings):
    #: the runner hands it to the notebook, so that ``hpcbridge.dask.cluster()`` in a
    #: batch job finds the profile as it does in a notebook server
    profile: dict[str, Any] | None = None
    #: names of the input files and folders copied into the folder (``inputs.py``)
    inputs: list[str] = field(default_factory=list)
    #: the request part of the run's session record (``hpcbridge/sessions/record.py``)
    session: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        """Write (or replace) the spec; the replacement is atomic."""
        tmp = folder / (SPEC_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, folder / SPEC_FILE)

    @classmethod
    def read(cls, folder: Path) -> BatchSpec:
        data = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{folder / SPEC_FILE}: not a JSON object")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def task_folder(folder: Path, task: int) -> Path:
    """Where task ``task`` of a sweep writes its outputs (and runs)."""
    return folder / f"task-{task}"


def read_result(folder: Path) -> dict[str, Any] | None:
    """The runner's ``hpcbridge-result.json``; None when it wrote none (yet)."""
    try:
        data = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_result(folder: Path, result: dict[str, Any]) -> None:
    tmp = folder / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / RESULT_FILE)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _code_cells(notebook: dict[str, Any]):
    """(position, cell) of each code cell: 1-based, papermill's injected parameters cell
    not counted (the user's own numbering)."""
    position = 0
    for cell in notebook.get("cells") or ():
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        if "injected-parameters" not in ((cell.get("metadata") or {}).get("tags") or ()):
            position += 1
        yield position, cell


def _where(position: int, cell: dict[str, Any]) -> dict[str, Any]:
    source = _text(cell.get("source")).strip().splitlines()
    return {"cell": position, "execution_count": cell.get("execution_count"),
            "source": source[0][:200] if source else ""}


def failing_cell(notebook: dict[str, Any]) -> dict[str, Any] | None:
    """The first code cell of an executed notebook whose output is an error: its position
    among the code cells, its execution count, the error's name and value and the cell's
    first source line."""
    for position, cell in _code_cells(notebook):
        for out in cell.get("outputs") or ():
            if isinstance(out, dict) and out.get("output_type") == "error":
                return {**_where(position, cell), "ename": str(out.get("ename", ""))[:200],
                        "evalue": str(out.get("evalue", ""))[:500]}
    return None


def running_cell(notebook: dict[str, Any] | None) -> dict[str, Any] | None:
    """The cell papermill marked as running when the notebook was last saved (papermill
    saves it as each cell starts): where a stopped run was."""
    for position, cell in _code_cells(notebook or {}):
        if ((cell.get("metadata") or {}).get("papermill") or {}).get("status") == "running":
            return _where(position, cell)
    return None


def cell_text(cell: dict[str, Any]) -> str:
    """``cell 3 (In [3]: first line)`` for a cell as failing_cell/running_cell give it."""
    count = cell.get("execution_count")
    where = f"cell {cell.get('cell')}"
    if cell.get("source"):
        where += f" (In [{count if count is not None else ' '}]: {cell['source']})"
    return where


def describe_failure(result: dict[str, Any]) -> str:
    """``cell 3 (In [3]: x = 1 / 0): ZeroDivisionError: division by zero``, the runner's
    error when no cell failed, and the cell a stopped run was in."""
    cell = result.get("failing_cell")
    if isinstance(cell, dict):
        return f"{cell_text(cell)}: {cell.get('ename')}: {cell.get('evalue')}"
    text = str(result.get("error") or "the run failed")
    running = result.get("running_cell")
    return text + (f", in {cell_text(running)}" if isinstance(running, dict) else "")

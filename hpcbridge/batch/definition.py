"""The folder of one recurring batch notebook (a jupyter-scheduler job definition with a
schedule). Standard library only: the cron job's launcher (``hpcbridge/batch/recurring.py``)
reads it on a compute node while no notebook server runs.

``<jobs folder>/recurring/<notebook>-<definition id>/`` (private to the user) holds::

    hpcbridge-definition.json   what each run runs: notebook, outputs, parameters, the
                                request (environment, compute type, options), where runs go
    <notebook>.ipynb            the notebook as it was when the definition was made/updated
    site-profile.json           the job copy of the site profile the server had, used when
                                the node has no profile of its own ($HPCBRIDGE_SITE_PROFILE)
    runs/<job id>.json          one record per run: its scheduler id, or why it was refused

A run's own folder is ``<jobs folder>/<notebook>-<job id>/``, as for a one-off job.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFINITION_FILE = "hpcbridge-definition.json"
PROFILE_FILE = "site-profile.json"
RUNS_DIR = "runs"
#: the definitions' folders, inside the jobs folder
RECURRING_DIR = "recurring"
#: the scheduler's job name of every launcher (the cron job)
CRON_JOB_NAME = "hpcb-cron"


@dataclass(frozen=True)
class DefinitionSpec:
    """What each run of a definition runs; ``hpcbridge-definition.json``."""

    definition_id: str
    cluster: str
    #: file name of the notebook inside the folder
    input: str
    #: output formats (jupyter-scheduler's names; the notebook always)
    formats: list[str]
    #: where the runs' folders go (the jobs folder the server shows)
    jobs_folder: str
    schedule: str
    parameters: dict[str, str] = field(default_factory=dict)
    environment: str | None = None
    compute_type: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    active: bool = True
    #: who starts the runs: ``scrontab`` (the user's crontab) or ``hub``
    keeper: str = "scrontab"

    def write(self, folder: Path) -> None:
        _write_json(folder / DEFINITION_FILE, asdict(self))

    @classmethod
    def read(cls, folder: Path) -> DefinitionSpec:
        data = json.loads((folder / DEFINITION_FILE).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{folder / DEFINITION_FILE}: not a JSON object")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class RunRecord:
    """One run of a definition: submitted (``scheduler_job_id``) or refused (``error``)."""

    job_id: str
    #: milliseconds since the epoch (jupyter-scheduler's unit; names the outputs)
    create_time: int
    scheduler_job_id: str | None = None
    error: str | None = None
    #: the notebook's file name the run ran (names the run's folder and outputs)
    input: str | None = None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def write_run(folder: Path, record: RunRecord) -> None:
    runs = folder / RUNS_DIR
    runs.mkdir(mode=0o700, exist_ok=True)
    _write_json(runs / f"{record.job_id}.json", asdict(record))


def read_runs(folder: Path) -> list[RunRecord]:
    """Every readable run record of the definition in ``folder``, oldest first."""
    found = []
    try:
        paths = sorted((folder / RUNS_DIR).glob("*.json"))
    except OSError:
        return []
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            record = RunRecord(**{k: data[k] for k in RunRecord.__dataclass_fields__
                                  if k in data})
        except (OSError, ValueError, TypeError):
            continue
        if record.job_id == path.stem:
            found.append(record)
    return sorted(found, key=lambda r: r.create_time)

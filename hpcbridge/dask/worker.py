"""Entry point of a worker in a Slurm job array: ``python -m hpcbridge.dask.worker ARGS``.

Every task of an array runs the same script, but each worker needs its own name so
that the cluster can tell which task it is. The name given on the command line holds
``{task}``; this replaces it with ``SLURM_ARRAY_TASK_ID`` and runs the dask worker
in this process (no shell, no second interpreter).
"""

from __future__ import annotations

import os
import sys

TASK_FIELD = "{task}"


def worker_args(argv: list[str], environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """``argv`` with ``{task}`` in the ``--name`` value replaced by the array task id."""
    task = environ.get("SLURM_ARRAY_TASK_ID", "")
    if not task.isdigit():
        raise SystemExit("hpcbridge.dask.worker runs inside a Slurm job array only "
                         "(SLURM_ARRAY_TASK_ID is not set)")
    out = list(argv)
    for i, word in enumerate(out[:-1]):
        if word == "--name":
            out[i + 1] = out[i + 1].replace(TASK_FIELD, task)
    return out


def main() -> None:
    from distributed.cli.dask_worker import main as dask_worker

    sys.argv = [sys.argv[0], *worker_args(sys.argv[1:], os.environ)]
    dask_worker()


if __name__ == "__main__":
    main()

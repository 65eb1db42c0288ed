"""A batch notebook job's command on the compute node: ``python -m hpcbridge.batch.runner
FOLDER``.

It runs the folder's notebook with papermill (the parameters from ``hpcbridge-job.json``),
in the folder (so files the notebook writes land beside its outputs), writes the executed
notebook even when a cell fails, its HTML when asked, and ``hpcbridge-result.json``: how
the run ended, the failing cell, and how long papermill took around the cells. Its own
output and the kernel's go to ``job.log`` in the folder. The exit code is the scheduler's
verdict: 0 when every cell ran, 1 otherwise (also in the result file: the queue does not
say how a job that just left it exited).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hpcbridge.batch.inputs import link_inputs
from hpcbridge.batch.spec import (
    JOB_PROFILE_ENV,
    LOG_FILE,
    PROFILE_ENV,
    BatchSpec,
    failing_cell,
    running_cell,
    task_folder,
    write_result,
)

#: what a SIGTERM means for a batch job: Slurm sends it at the walltime, on scancel, on
#: preemption (then SIGKILL after KillWait); the scheduler's record says which
STOPPED = "stopped by the scheduler (SIGTERM: its walltime ended, or it was cancelled or " \
          "preempted)"

Execute = Callable[..., Any]
#: seconds the kernel may take to start: papermill's default (60 s) failed runs on nodes
#: busy enough (a sweep's tasks beside workers on the testbed's two cores)
KERNEL_START_TIMEOUT = 300


def _papermill(input_path: str, output_path: str, **kwargs: Any) -> None:
    import papermill
    from traitlets.config import Config

    # The kernel talks over Unix sockets in a private folder of the node, not TCP ports:
    # a sweep's tasks start kernels on one node at the same moment, and a port one of
    # them picked could be taken by another before its kernel bound it ("Address already
    # in use", then papermill waits out its start timeout); the 0700 folder also keeps
    # other users of a shared node away from the kernel's sockets.
    with tempfile.TemporaryDirectory(prefix="hpcbridge-kernel-") as sockets:
        config = Config({"KernelManager": {"transport": "ipc",
                                           "ip": os.path.join(sockets, "kernel")}})
        papermill.execute_notebook(input_path, output_path, config=config, **kwargs)


def _html(notebook_path: Path, html_path: Path) -> None:
    import nbconvert
    import nbformat

    body, _ = nbconvert.HTMLExporter().from_notebook_node(
        nbformat.read(str(notebook_path), as_version=4))
    html_path.write_text(body, encoding="utf-8")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def timings(executed: dict[str, Any] | None) -> dict[str, float]:
    """papermill's whole duration and the cells' sum, from the executed notebook's
    metadata: their difference is what papermill costs around the cells."""
    if not executed:
        return {}
    total = ((executed.get("metadata") or {}).get("papermill") or {}).get("duration")
    cells = 0.0
    for cell in executed.get("cells") or ():
        duration = ((cell.get("metadata") or {}).get("papermill") or {}).get("duration")
        if isinstance(duration, int | float):
            cells += duration
    found = {"cells_seconds": round(cells, 3)}
    if isinstance(total, int | float):
        found["papermill_seconds"] = round(total, 3)
    return found


def run(folder: Path, spec: BatchSpec, *, execute: Execute | None = None,
        to_html: Callable[[Path, Path], None] | None = None,
        workdir: Path | None = None) -> dict[str, Any]:
    """Run the folder's notebook in ``workdir`` (default: the folder), writing outputs
    and the result there; the result."""
    started = time.monotonic()
    source = _read(folder / spec.input) or {}
    kernelspec = (source.get("metadata") or {}).get("kernelspec") or {}
    input_path, folder = folder / spec.input, workdir or folder
    output = folder / spec.outputs["ipynb"]
    error = None
    try:
        (execute or _papermill)(str(input_path), str(output), parameters=spec.parameters,
                cwd=str(folder), kernel_name=None if kernelspec.get("name") else spec.kernel,
                log_output=True, progress_bar=False, start_timeout=KERNEL_START_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 -- any failure is the run's result, told below
        error = f"{type(exc).__name__}: {str(exc).strip()[-1000:]}"
    executed = _read(output)
    cell = failing_cell(executed) if executed and error else None
    result: dict[str, Any] = {
        "ok": error is None, "exit_code": 0 if error is None else 1,
        "node": socket.gethostname(),
        "runner_seconds": round(time.monotonic() - started, 3), **timings(executed)}
    if cell:
        result["failing_cell"] = cell
    elif error:
        result["error"] = error
    if "html" in spec.outputs and executed is not None:
        try:
            (to_html or _html)(output, folder / spec.outputs["html"])
        except Exception as exc:  # noqa: BLE001 -- the notebook's result stands without it
            result["html_error"] = f"{type(exc).__name__}: {exc}"[:500]
    write_result(folder, result)
    return result


def on_sigterm(folder: Path, output: Path, started: float) -> Callable[..., None]:
    """A SIGTERM handler that writes the result at once (the SIGKILL that follows may
    not wait for papermill to unwind), naming the cell that was running, then exits."""
    def handler(signum: int, frame: object) -> None:
        result: dict[str, Any] = {
            "ok": False, "exit_code": 128 + signum, "signal": signal.Signals(signum).name,
            "node": socket.gethostname(), "error": STOPPED,
            "runner_seconds": round(time.monotonic() - started, 3)}
        cell = running_cell(_read(output))
        if cell:
            result["running_cell"] = cell
        write_result(folder, result)
        print(f"hpcbridge: {STOPPED}", flush=True)
        raise SystemExit(128 + signum)
    return handler


def record_session(session: dict[str, Any]) -> None:
    """The run's session record, its start written now (before the notebook runs)."""
    from hpcbridge.sessions.capture import capture

    try:
        capture(session, os.environ, os.path.expanduser("~"))
    except (OSError, ValueError, KeyError) as exc:  # the run matters more than its record
        print(f"hpcbridge: cannot record the session: {exc}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m hpcbridge.batch.runner FOLDER")
    folder = Path(args[0])
    spec = BatchSpec.read(folder)
    workdir, first = folder, True
    if spec.sweep:  # a task of a job array: its own parameters and folder
        names = spec.task_variables or ["SLURM_ARRAY_TASK_ID"]
        task = next((os.environ[n] for n in names if os.environ.get(n)), "")
        if not task.isdigit() or int(task) >= len(spec.sweep):
            raise SystemExit(f"a sweep of {len(spec.sweep)} runs inside its job array only "
                             f"({' / '.join(names)}: {task!r})")
        spec = replace(spec, parameters=spec.sweep[int(task)])
        workdir, first = task_folder(folder, int(task)), int(task) == 0
        workdir.mkdir(mode=0o700, exist_ok=True)
        link_inputs(spec.inputs, workdir)
    log = os.open(workdir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    print(f"hpcbridge: running {spec.input} (job {spec.scheduler_job_id}) on "
          f"{socket.gethostname()}", flush=True)
    if spec.profile and not (os.environ.get(PROFILE_ENV) or os.environ.get(JOB_PROFILE_ENV)):
        os.environ[JOB_PROFILE_ENV] = json.dumps(spec.profile)  # the kernel inherits it
    signal.signal(signal.SIGTERM, on_sigterm(workdir, workdir / spec.outputs["ipynb"],
                                             time.monotonic()))
    if spec.session and first:
        record_session(spec.session)  # one record per run (a sweep's first task)
    result = run(folder, spec, workdir=workdir)
    print(f"hpcbridge: {'completed' if result['ok'] else 'failed'}", flush=True)
    return int(result["exit_code"])


if __name__ == "__main__":
    sys.exit(main())

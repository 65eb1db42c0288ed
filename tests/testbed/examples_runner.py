"""Execute example notebooks with nbclient, in place, and report each on one JSON line.

Runs inside the testbed (``python -m tests.testbed.examples_runner NOTEBOOK...`` as a test
user, with the testbed's Python), so nbformat and nbclient come from there, not from the
host. Each notebook runs with its own folder as the working directory, like JupyterLab
does; the executed notebook replaces the input. Exit status 1 when a notebook failed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

#: seconds one cell may take (a worker job that never starts must not hang the test)
CELL_TIMEOUT = 300


def run(path: Path) -> dict:
    # the testbed's Python has these; the host's need not
    import nbformat  # type: ignore[import-not-found,unused-ignore]
    from nbclient import NotebookClient  # type: ignore[import-not-found,unused-ignore]
    from nbclient.exceptions import (  # type: ignore[import-not-found,unused-ignore]
        CellExecutionError,
    )

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = str(exc)[-4000:]
    except Exception as exc:  # noqa: BLE001 - a dead kernel or a timeout is a failure too
        error = f"{type(exc).__name__}: {exc}"[-4000:]
    finally:
        nbformat.write(notebook, path)
    return {"notebook": path.name, "seconds": round(time.monotonic() - started, 1),
            "error": error, "outputs": outputs_text(notebook)}


def outputs_text(notebook: dict) -> str:
    """Every stream and plain-text output of an executed notebook, in order."""
    parts = []
    for cell in notebook["cells"]:
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                parts.append("".join(out["text"]))
            elif "text/plain" in out.get("data", {}):
                parts.append("".join(out["data"]["text/plain"]))
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    failed = False
    for name in argv:
        report = run(Path(name).resolve())
        failed = failed or report["error"] is not None
        print(json.dumps(report), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

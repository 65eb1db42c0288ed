"""Input files and folders of a batch run (``hpcbridge run --input PATH``, JupyterLab's
"Run job with input folder"): checked before
anything is stored, then copied into the job's folder, which is the notebook's working
directory, so the notebook reads them by their names as it would beside it.

A copy, not a link: the run reads what there was at submission, as it runs the notebook
as it was then. Only paths inside the user's home (symbolic links resolved) are taken,
never one that holds the job's own folder (``~`` or ``~/jobs`` would copy into itself).
A sweep's tasks run in ``task-<i>/``: the runner links each input there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from hpcbridge.errors import RequestError

#: all inputs of one run together: more is refused (they are copied)
MAX_INPUT_BYTES = 2 * 2**30
#: files and folders of one run at most
MAX_INPUTS = 100


def _size(path: Path) -> int:
    """Bytes under ``path``, symbolic links not followed."""
    if not path.is_dir():
        return path.lstat().st_size
    total = 0
    for top, _, files in os.walk(path):
        total += sum(os.lstat(os.path.join(top, name)).st_size for name in files)
    return total


def check_inputs(paths: Sequence[Path], root: Path, folder: Path, taken: Iterable[str]
                 ) -> list[Path]:
    """``paths`` resolved, each inside ``root``, existing, not holding ``folder`` (the
    job's folder-to-be), its name unlike the job's own files (``taken``) and the other
    inputs', all under MAX_INPUT_BYTES together; RequestError naming the first that
    is not."""
    if len(paths) > MAX_INPUTS:
        raise RequestError(f"more than {MAX_INPUTS} inputs")
    root, folder = root.resolve(), folder.absolute()
    names = set(taken)
    found, total = [], 0
    for path in paths:
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            raise RequestError(f"the input {str(path)!r} is outside your home folder")
        if not resolved.exists():
            raise RequestError(f"no input {str(path)!r}")
        if folder.is_relative_to(resolved):
            raise RequestError(f"the input {str(path)!r} holds the job's own folder "
                               f"({folder}): name the files or folders it needs")
        if resolved.name in names or resolved.name.startswith("task-"):
            raise RequestError(f"the input {str(path)!r} is called like another input or "
                               f"a file of the job ({resolved.name})")
        names.add(resolved.name)
        total += _size(resolved)
        if total > MAX_INPUT_BYTES:
            raise RequestError(f"the inputs are larger than {MAX_INPUT_BYTES >> 30} GiB "
                               "together: read large data where it is (a path in the "
                               "notebook's parameters)")
        found.append(resolved)
    return found


def folder_inputs(notebook: Path, folder: Path) -> list[Path]:
    """JupyterLab's "Run job with input folder": what the notebook's folder holds beside
    it, to copy into the job's ``folder`` (then checked by :func:`check_inputs`, as
    ``--input`` paths are). Hidden entries (``.ipynb_checkpoints``, a home's ``.ssh``)
    are left out; RequestError when the notebook's folder holds the jobs' folder (a
    notebook in the home folder itself would copy the home)."""
    source = notebook.parent.resolve()
    if folder.resolve().is_relative_to(source):
        raise RequestError(f"the notebook's folder {source.name or source}/ holds the "
                           f"jobs' folder ({folder.parent.name}/): put the notebook and "
                           "the files it reads into a folder of their own to run it "
                           "with its input folder")
    return sorted(notebook.parent / p.name for p in source.iterdir()
                  if not p.name.startswith(".") and p.name != notebook.name)


def copy_inputs(paths: Sequence[Path], folder: Path) -> None:
    """Copy each input into ``folder`` under its name (links inside copied as links)."""
    for path in paths:
        target = folder / path.name
        if path.is_dir():
            shutil.copytree(path, target, symlinks=True)
        else:
            shutil.copy2(path, target)


def link_inputs(names: Sequence[str], task: Path) -> None:
    """Make the job folder's inputs visible in a sweep's task folder (``../NAME``)."""
    for name in names:
        link = task / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(Path("..") / name)

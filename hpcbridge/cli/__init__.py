"""The ``hpcbridge`` command.

Each command group lives in its own module with a ``register(subparsers)`` function
that adds its sub-commands and sets ``func`` on them; ``func(args) -> int`` is the
exit status. Contracts (names, exit codes, output formats) are in shared/DESIGN.md.

Other distributions add commands through the entry point group ``hpcbridge.cli``: each
entry is a ``register(subparsers)`` called after the built-in groups, so it may also
extend theirs (``subparsers.choices["up"]``). The testbed's commands come this way, from
the separately installed ``slurm_testbed``; without it ``hpcbridge testbed`` says how to
get them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import entry_points

# module name -> imported lazily so that `hpcbridge profile validate` does not import
# JupyterHub
_GROUPS = ("profile", "doctor", "hub", "dask", "batch", "session")
PLUGIN_GROUP = "hpcbridge.cli"
#: what `hpcbridge testbed` and `hpcbridge up` without --site say when no plugin adds them
TESTBED_HINT = ("the testbed commands come with the slurm_testbed package: install it "
                "(./dev in a clone of the repository installs it)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcbridge",
        description="Notebooks and Dask workers as batch jobs at supercomputer centers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _GROUPS:
        importlib.import_module(f"hpcbridge.cli.{name}").register(sub)
    for entry in entry_points(group=PLUGIN_GROUP):
        entry.load()(sub)
    if "testbed" not in sub.choices:
        missing = sub.add_parser("testbed", help="the containerized SLURM testbed (not "
                                 "installed)", add_help=False)
        missing.add_argument("rest", nargs=argparse.REMAINDER)
        missing.set_defaults(func=_no_testbed)
    return parser


def _no_testbed(args: argparse.Namespace) -> int:
    print(f"hpcbridge testbed: {TESTBED_HINT}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``hpcbridge`` command.

Each command group lives in its own module with a ``register(subparsers)`` function
that adds its sub-commands and sets ``func`` on them; ``func(args) -> int`` is the
exit status. Contracts (names, exit codes, output formats) are in shared/DESIGN.md.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module name -> imported lazily so that `hpcbridge profile validate` does not import
# JupyterHub or testcontainers
_GROUPS = ("profile", "doctor", "testbed", "hub", "dask")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcbridge",
        description="Notebooks and Dask workers as batch jobs at supercomputer centers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _GROUPS:
        try:
            module = importlib.import_module(f"hpcbridge.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"hpcbridge.cli.{name}":
                continue  # command group not built yet
            raise
        module.register(sub)
    return parser


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

"""The notebook job's command on the compute node: ``python -m hpcbridge.spawner.launch FILE``.

The hub never writes its token into a batch script or an argv. It writes the server's
environment (token included) as JSON into a private file in the user's home (mode 0600,
in a 0700 folder), and the script names only that file. This launcher reads it, deletes
it, and hands over to batchspawner's single-user wrapper, which picks a free port, reports
it to the hub's port callback and starts ``jupyterhub-singleuser``.
"""

from __future__ import annotations

import json
import os
import sys

WRAPPER = ("-m", "batchspawner.singleuser", "jupyterhub-singleuser")


def read_env_file(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as f:
        env = json.load(f)
    os.unlink(path)  # the token lives on only in this process's environment
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise SystemExit(f"{path}: not a JSON object of strings")
    return env


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m hpcbridge.spawner.launch ENV_FILE")
    env = dict(os.environ)
    env.update(read_env_file(args[0]))
    # jupyterhub-singleuser is found on PATH by the wrapper: put this Python's bin first.
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *WRAPPER], env)


if __name__ == "__main__":
    main()

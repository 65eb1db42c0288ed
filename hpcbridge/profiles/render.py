"""Batch scripts for SLURM and PBS from a site profile and a request. Pure functions.

The directive lines are the scheduler adapter's (``SchedulerDialect.directives``); this
module adds what every scheduler shares: the shell, the environment set-up, the command.

Every request is validated first (:func:`validate_request`), so every value written into
a directive has passed its grammar: no newline, quote or shell metacharacter can reach
the script. The command is written as shell-quoted words. Secrets never appear: a job
receives tokens through the *names* listed in ``export_env``; values are not rendered.

Choices shared by all flavors:
- ``#!/bin/bash -l``: a login shell sets up the user's environment (and ``module``) on
  the node, instead of ``--get-user-env=L``, which Slurm 25.05 rejects.
- No requeue: a notebook server restarted on another node would lose the hub's record.
- Output goes to the user's home directory, named after the job.
"""

from __future__ import annotations

import shlex

from hpcbridge.errors import RequestError
from hpcbridge.profiles.model import Environment, SiteProfile
from hpcbridge.profiles.request import JobRequest, ValidatedRequest, validate_request
from hpcbridge.schedulers.base import JobArray
from hpcbridge.schedulers.registry import dialect_of


def render_script(profile: SiteProfile, request: JobRequest | ValidatedRequest,
                  array: JobArray | None = None) -> str:
    """The exact batch script for ``request`` (a job ``array`` of it when given, in the
    adapter's spelling); raise RequestError / LimitExceeded."""
    req = validate_request(profile, request)
    env = profile.clusters[req.cluster].environments[req.environment]
    dialect = dialect_of(profile.clusters[req.cluster])
    directives = dialect.directives(req)
    if array is not None:
        if not dialect.capabilities.arrays:
            raise RequestError(f"cluster {req.cluster}'s scheduler ({dialect.name}) has no "
                               "job arrays")
        directives = dialect.array_directives(array, directives)
    lines = ["#!/bin/bash -l", *directives]
    lines.append(
        f"# rendered by hpcbridge for site {req.site}, cluster {req.cluster}, "
        f"environment {req.environment}"
    )
    lines += ["", "set -e", *_setup_lines(env), _command_line(req, env)]
    return "\n".join(lines) + "\n"


def _setup_lines(env: Environment) -> list[str]:
    lines = []
    if env.modules:
        lines.append("module load " + " ".join(env.modules))
    if env.venv:
        lines.append(f"source {env.venv}/bin/activate")
    if env.conda:
        if env.conda.init:
            lines.append(f"source {env.conda.init}")
        lines.append(f"conda activate {env.conda.env}")
    lines += env.prologue
    return lines


def _command_line(req: ValidatedRequest, env: Environment) -> str:
    words = list(req.command)
    if words[0] == "python" and env.python:
        words[0] = env.python
    if env.container:
        runner = [env.container.runtime, "exec"]
        if req.gpus:
            runner.append("--nv" if env.container.gpu_vendor == "nvidia" else "--rocm")
        if env.container.bind:
            runner += ["--bind", ",".join(env.container.bind)]
        words = [*runner, env.container.image, *words]
    return "exec " + shlex.join(words)

"""Batch scripts for SLURM and PBS from a site profile and a request. Pure functions.

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

from hpcbridge.profiles.model import Environment, SiteProfile
from hpcbridge.profiles.request import JobRequest, ValidatedRequest, validate_request


def render_script(profile: SiteProfile, request: JobRequest | ValidatedRequest) -> str:
    """The exact batch script for ``request``; raise RequestError / LimitExceeded."""
    req = validate_request(profile, request)
    env = profile.clusters[req.cluster].environments[req.environment]
    directives = {
        "slurm": _slurm_directives,
        "pbspro": _pbspro_directives,
        "torque": _torque_directives,
    }[req.flavor](req)
    lines = ["#!/bin/bash -l", *directives]
    lines.append(
        f"# rendered by hpcbridge for site {req.site}, cluster {req.cluster}, "
        f"environment {req.environment}"
    )
    lines += ["", "set -e", *_setup_lines(env), _command_line(req, env)]
    return "\n".join(lines) + "\n"


def _slurm_directives(req: ValidatedRequest) -> list[str]:
    opts = [f"--job-name={req.job_name}", f"--partition={req.queue}"]
    opts += [f"--{key}={value}" for key, value in (
        ("account", req.account), ("qos", req.qos), ("constraint", req.constraint)
    ) if value]
    opts += [
        f"--nodes={req.nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={req.cores}",
        f"--mem={req.memory}",
    ]
    if req.gpus:
        opts.append(f"--gres={req.gres}:{req.gpus}")
    opts += [
        f"--time={req.walltime}",
        f"--chdir={req.home}",
        f"--output={req.home}/hpcbridge-%x-%j.log",
        "--no-requeue",
        # names only; NONE keeps the submitting environment (hub, sudo) out of the job
        f"--export={','.join(req.export_env) or 'NONE'}",
    ]
    return [f"#SBATCH {opt}" for opt in opts]


def _pbs_common(req: ValidatedRequest) -> list[str]:
    opts = [f"-N {req.job_name}", f"-q {req.queue}"]
    if req.account:
        opts.append(f"-A {req.account}")
    return opts


def _pbs_tail(req: ValidatedRequest) -> list[str]:
    opts = [
        f"-l walltime={req.walltime}",
        "-j oe",
        f"-o {req.home}/hpcbridge-{req.job_name}.log",
        "-r n",
        "-S /bin/bash",
    ]
    if req.export_env:
        opts.append(f"-v {','.join(req.export_env)}")
    return opts


def _pbspro_directives(req: ValidatedRequest) -> list[str]:
    chunk = f"select={req.nodes}:ncpus={req.cores}:mem={req.memory.pbs()}"
    if req.gpus:
        chunk += f":ngpus={req.gpus}"
    opts = [*_pbs_common(req), f"-l {chunk}", *_pbs_tail(req)]
    return [f"#PBS {opt}" for opt in opts]


def _torque_directives(req: ValidatedRequest) -> list[str]:
    # the spelling Slurm's sbatch understands in #PBS lines as well as Torque does;
    # GPUs as naccelerators because sbatch reads ":gpus=" in a nodes spec as a host name
    opts = [*_pbs_common(req), f"-l nodes={req.nodes}:ppn={req.cores}"]
    opts.append(f"-l mem={req.memory.pbs()}")
    if req.gpus:
        opts.append(f"-l naccelerators={req.gpus * req.nodes}")
    opts += _pbs_tail(req)
    return [f"#PBS {opt}" for opt in opts]


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

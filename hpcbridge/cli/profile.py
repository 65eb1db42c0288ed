"""``hpcbridge profile validate|render|schema``: site profiles from the command line.

Contract (shared/DESIGN.md): ``validate`` exits 0 when every profile is valid, else 1
with one ``PATH:LINE:COL: message`` line per problem on stdout; ``render`` prints the
batch script or refuses (exit 1) with the reason on stderr; ``schema`` prints the JSON
schema. Only hpcbridge.profiles is imported: no JupyterHub, no transport.

``hpcbridge doctor PATH`` (compare a profile with the live scheduler) is a separate
top-level command, added with the scheduler dialects and transports; it reads the same
model (Partition limits, Accounts) that these commands check.
"""

from __future__ import annotations

import argparse
import json
import sys

from hpcbridge.errors import ProfileError, RequestError
from hpcbridge.profiles import JobRequest, json_schema, load_profile, render_script
from hpcbridge.profiles.request import DEFAULT_COMMAND


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile", help="validate, preview and describe site profiles"
    )
    sub = parser.add_subparsers(dest="profile_command", metavar="SUBCOMMAND")
    sub.required = True

    validate = sub.add_parser("validate", help="check site profiles; list every problem")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.set_defaults(func=_validate)

    render = sub.add_parser("render", help="print the batch script a request would submit")
    render.add_argument("path", metavar="PATH")
    render.add_argument("--user", required=True, help="user the job is for")
    for name in ("preset", "cluster", "partition", "account", "environment"):
        render.add_argument(f"--{name}")
    render.add_argument("--nodes", type=int)
    render.add_argument("--cores", type=int)
    render.add_argument("--gpus", type=int)
    render.add_argument("--memory", help='memory per node, e.g. "4G"')
    render.add_argument("--walltime", help='e.g. "01:30:00"')
    render.add_argument("--job-name", default="hpcbridge")
    render.add_argument(
        "--export", action="append", default=[], metavar="NAME",
        help="name of an environment variable the job receives (repeatable)",
    )
    render.add_argument(
        "--command", nargs=argparse.REMAINDER, default=[], metavar="WORD",
        help="command the job runs: every word after --command "
        f"(default: {' '.join(DEFAULT_COMMAND)})",
    )
    render.set_defaults(func=_render)

    schema = sub.add_parser("schema", help="print the JSON schema of site profiles")
    schema.set_defaults(func=_schema)


def _validate(args: argparse.Namespace) -> int:
    status = 0
    for path in args.paths:
        try:
            load_profile(path)
        except ProfileError as exc:
            status = 1
            for problem in exc.problems:
                print(problem)
        else:
            print(f"{path}: ok", file=sys.stderr)
    return status


def _render(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args.path)
    except ProfileError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    request = JobRequest(
        user=args.user,
        preset=args.preset,
        cluster=args.cluster,
        partition=args.partition,
        account=args.account,
        environment=args.environment,
        nodes=args.nodes,
        cores=args.cores,
        gpus=args.gpus,
        memory=args.memory,
        walltime=args.walltime,
        job_name=args.job_name,
        command=tuple(args.command) or DEFAULT_COMMAND,
        export_env=tuple(args.export),
    )
    try:
        script = render_script(profile, request)
    except RequestError as exc:
        print(f"hpcbridge: refused: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(script)
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0

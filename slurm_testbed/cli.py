"""``hpcbridge testbed up|down|status|exec|adduser``: the containerized SLURM cluster.

hpcbridge's command finds :func:`register` through the entry point group
``hpcbridge.cli`` (slurm_testbed/pyproject.toml). Besides the ``testbed`` group it makes
``hpcbridge up`` without ``--site`` start the testbed and a hub on it, ``hpcbridge down``
stop the testbed after the hub, and ``hpcbridge doctor`` take the running testbed's
address and users for the testbed profiles.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from hpcbridge.errors import HpcBridgeError
from slurm_testbed.errors import TestbedError


def register(sub: argparse._SubParsersAction) -> None:
    tb = sub.add_parser("testbed", help="the containerized SLURM testbed")
    tsub = tb.add_subparsers(dest="testbed_command", metavar="ACTION")
    tsub.required = True

    up = tsub.add_parser("up", help="build images if needed and start the cluster")
    up.add_argument("--nodes", type=int, default=3, help="compute nodes (default 3)")
    add_slurm_option(up)
    up.set_defaults(func=_up)

    down = tsub.add_parser("down", help="stop and remove containers, network and volumes")
    down.set_defaults(func=_down)

    status = tsub.add_parser("status", help="show containers and node states")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    ex = tsub.add_parser("exec", help="run a command on the login node as a user")
    ex.add_argument("--user", required=True, help="alice, bob, carol, hpcbridge or root")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    ex.set_defaults(func=_exec)

    add = tsub.add_parser("adduser", help="a new directory user: home, Slurm association, "
                          "password (printed)")
    add.add_argument("name", help="login name (a-z, 0-9, _)")
    add.add_argument("--account", default="proj_a", help="Slurm account (default proj_a)")
    add.set_defaults(func=_adduser)
    _extend_hub_commands(sub.choices)


Command = Callable[[argparse.Namespace], int]


def _extend_hub_commands(commands: dict[str, argparse.ArgumentParser]) -> None:
    """The testbed as the default of hpcbridge's own `up`, `down` and `doctor`."""
    up, down, doctor = commands["up"], commands["down"], commands["doctor"]
    add_slurm_option(up)
    up.add_argument("--clusters", type=int, choices=(1, 2), default=1,
                    help="2: a second testbed of Slurm 22.05 beside the 24.11 one, each "
                    "with its own login node, and one hub on both "
                    "(site_profiles/testbed-two-clusters.yaml)")
    up.set_defaults(func=_hub_up(up.get_default("func")))
    down.set_defaults(func=_hub_down(down.get_default("func")))
    doctor.set_defaults(func=_doctor(doctor.get_default("func")))


def _hub_up(on_site: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        if args.site:
            return on_site(args)
        from hpcbridge.cli.hub import print_started
        from hpcbridge.hubrun import Hub
        from slurm_testbed import config, generations
        from slurm_testbed.hub import up_hub

        try:
            tb = _testbed(args.slurm)
            second = None
            if args.clusters == 2:
                if tb.generation.slurm != generations.DEFAULT:
                    raise TestbedError(f"--clusters 2 runs Slurm {generations.DEFAULT} and "
                                       f"{SECOND_SLURM} side by side; leave out --slurm")
                second = companion(tb)
            tb.up()
            if second is not None:
                second.up()
            # the hub's database on the testbed's PostgreSQL, as a center would run it
            st = up_hub(Hub(), tb, users=list(config.USERS), db_url=tb.hub_db_url(),
                        second=second)
        except HpcBridgeError as exc:
            print(f"hpcbridge up: {exc}", file=sys.stderr)
            return 1
        print_started(st)
        return 0
    return run


def _hub_down(hub_down: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        status = hub_down(args)
        try:
            _stop_testbed(with_companion=True)
        except HpcBridgeError as exc:
            print(f"hpcbridge down: {exc}", file=sys.stderr)
            return 1
        return status
    return run


#: the testbed profiles' variables; doctor fills them from the running testbed when unset
_TESTBED_REF = "${HPCBRIDGE_TESTBED_"


def _doctor(check: Command) -> Command:
    """Only when the profile refers to ``${HPCBRIDGE_TESTBED_...}`` and the address is not
    set: explicit variables always win, and any other profile is left alone."""
    def run(args: argparse.Namespace) -> int:
        try:
            text = Path(args.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return check(args)  # doctor reports it
        if _TESTBED_REF not in text or "HPCBRIDGE_TESTBED_SSH_HOST" in os.environ:
            return check(args)
        from slurm_testbed.cluster import Testbed

        testbed = Testbed(progress=lambda msg: None)
        try:
            env, users = testbed.profile_env(), list(testbed.info().users)
        except TestbedError:
            return check(args)
        if "${HPCBRIDGE_TESTBED2_" in text:  # testbed-two-clusters.yaml: its second cluster
            from slurm_testbed.profiles import SECOND_PREFIX

            with contextlib.suppress(TestbedError):
                env.update(companion(testbed).profile_env(SECOND_PREFIX))
        print("doctor: using the running testbed's address "
              f"({env['HPCBRIDGE_TESTBED_SSH_HOST']})", file=sys.stderr)
        os.environ.update(env)
        args.user = args.user or users
        return check(args)
    return run


def add_slurm_option(parser: argparse.ArgumentParser) -> None:
    # checked by slurm_testbed.generations when used: registering imports no testbed code
    parser.add_argument(
        "--slurm", metavar="VERSION", default=None,
        help="Slurm generation of the testbed: 22.05 (Debian bookworm) or 24.11 (trixie); "
             "default $HPCBRIDGE_TESTBED_SLURM, else the running testbed's, else 24.11. "
             "A running testbed of another generation than the one asked for is replaced")


def _testbed(slurm: str | None = None):
    from slurm_testbed.cluster import Testbed

    return Testbed(slurm=slurm)


def _guard(fn):
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except TestbedError as exc:
            print(f"hpcbridge testbed: {exc}", file=sys.stderr)
            return 1
    return run


@_guard
def _up(args: argparse.Namespace) -> int:
    info = _testbed(args.slurm).up(nodes=args.nodes)
    print(f"testbed up: Slurm {info.slurm_version}, login node {info.login_ip}:{info.ssh_port}, "
          f"compute nodes {', '.join(info.nodes)}, users {', '.join(info.users)}")
    print(f"  ssh -i {info.hub_key} -o UserKnownHostsFile={info.known_hosts} alice@{info.login_ip}")
    return 0


@_guard
def _down(args: argparse.Namespace) -> int:
    _stop_testbed()
    return 0


#: the generation of the second cluster of `hpcbridge up --clusters 2`
SECOND_SLURM = "22.05"


def companion(tb):  # -> Testbed
    """The second testbed of `hpcbridge up --clusters 2` beside ``tb`` (named as the
    tests name their testbed of that generation: ``<name>-slurm2205``)."""
    from slurm_testbed import generations
    from slurm_testbed.cluster import Testbed

    generation = generations.get(SECOND_SLURM)
    return Testbed(name=f"{tb.name}-{generation.slug}", slurm=generation.slurm)


def _stop_testbed(with_companion: bool = False) -> None:
    from slurm_testbed import engine

    tb = _testbed()
    tb.down()
    if with_companion:
        second = companion(tb)
        if any(second.leftovers().values()):
            second.down()
    if not tb.other_testbeds_running():
        engine.stop_service(tb.shared_dir)


@_guard
def _status(args: argparse.Namespace) -> int:
    st = _testbed().status()
    if args.json:
        print(json.dumps(st, indent=2))
        return 0 if st.get("up") else 1
    if not st["containers"]:
        print("testbed is down")
        return 1
    if st.get("slurm_version"):
        print(f"Slurm {st['slurm_version']} (generation {st['slurm_generation']})")
    for name, state in sorted(st["containers"].items()):
        print(f"{name:10} {state}")
    for node in st.get("nodes", []):
        print(f"{node['node']:10} {node['partition']:10} {node['state']:10} "
              f"cpus(alloc/idle/other/total) {node['cpus_aiot']}")
    return 0 if st.get("up") else 1


@_guard
def _exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("hpcbridge testbed exec: give a command after --", file=sys.stderr)
        return 2
    proc = _testbed().login_exec(args.user, cmd, timeout=None)
    sys.stdout.buffer.write(proc.stdout)
    sys.stderr.buffer.write(proc.stderr)
    return proc.returncode


@_guard
def _adduser(args: argparse.Namespace) -> int:
    tb = _testbed()
    if not tb.reusable():
        print("hpcbridge testbed adduser: no testbed is up (hpcbridge testbed up)",
              file=sys.stderr)
        return 1
    password = tb.adduser(args.name, args.account)
    print(f"{args.name}: password {password} (account {args.account}; she can log in to the "
          "hub and spawn now)")
    return 0

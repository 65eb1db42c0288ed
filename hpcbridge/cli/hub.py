"""``hpcbridge up | status | down``: the hub, by default on the bundled testbed."""

from __future__ import annotations

import argparse
import json
import os
import sys

from hpcbridge.errors import HpcBridgeError


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="start the hub (default: on the bundled testbed)")
    up.add_argument("--site", default="", help="site profile; default: the bundled testbed")
    up.add_argument("--hub-ip", default="", help="address compute nodes reach the hub at "
                    "(with --site; default: from the profile's hub.connect_url)")
    from hpcbridge.cli.testbed import add_slurm_option

    add_slurm_option(up)
    up.set_defaults(func=_up)
    st = sub.add_parser("status", help="hub URL, admin token, test users")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_status)
    down = sub.add_parser("down", help="stop the hub and the testbed")
    down.set_defaults(func=_down)


def _up(args: argparse.Namespace) -> int:
    from hpcbridge.hubrun import Hub

    try:
        if args.site:
            from urllib.parse import urlparse

            from hpcbridge.profiles import load_profile

            profile = load_profile(args.site)
            connect = str(profile.hub.connect_url or "")
            hub_ip = args.hub_ip or (urlparse(connect).hostname or "127.0.0.1")
            st = Hub().up(site=os.path.abspath(args.site), env={}, hub_ip=hub_ip,
                          connect_url=connect, users=[])
        else:
            from slurm_testbed import config as tbconfig
            from slurm_testbed.cluster import Testbed

            tb = Testbed(slurm=args.slurm)
            tb.up()
            # the hub's database on the testbed's PostgreSQL, as a center would run it
            st = Hub().up_on_testbed(tb, users=list(tbconfig.USERS), db_url=tb.hub_db_url())
    except HpcBridgeError as exc:
        print(f"hpcbridge up: {exc}", file=sys.stderr)
        return 1
    print(f"hub: {st['hub_url']}")
    for user, password in st.get("users", {}).items():
        print(f"  login: {user} / {password}")
    print("hpcbridge status --json  prints these and an admin API token")
    return 0


def _status(args: argparse.Namespace) -> int:
    from hpcbridge.hubrun import Hub

    st = Hub().status()
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        print(f"hub {'running at ' + st['hub_url'] if st.get('running') else 'not running'}")
    return 0 if st.get("running") else 1


def _down(args: argparse.Namespace) -> int:
    from hpcbridge.hubrun import Hub

    Hub().down()
    try:
        from slurm_testbed import engine
        from slurm_testbed.cluster import Testbed

        tb = Testbed()
        tb.down()
        if not tb.other_testbeds_running():
            engine.stop_service(tb.shared_dir)
    except HpcBridgeError as exc:
        print(f"hpcbridge down: {exc}", file=sys.stderr)
        return 1
    return 0

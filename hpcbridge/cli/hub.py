"""``hpcbridge up | status | down``: the hub on a site profile.

With the testbed installed, ``up`` without ``--site`` starts the testbed and a hub on it,
and ``down`` stops both (the testbed's plugin extends these commands: see cli/__init__).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from hpcbridge.cli import TESTBED_HINT
from hpcbridge.errors import HpcBridgeError


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="start the hub (default: on the testbed, when installed)")
    up.add_argument("--site", default="", help="site profile; default: the testbed's")
    up.add_argument("--hub-ip", default="", help="address compute nodes reach the hub at "
                    "(with --site; default: from the profile's hub.connect_url)")
    up.set_defaults(func=_up)
    st = sub.add_parser("status", help="hub URL, admin token, test users")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_status)
    down = sub.add_parser("down", help="stop the hub (and the testbed, when installed)")
    down.set_defaults(func=_down)


def _up(args: argparse.Namespace) -> int:
    from hpcbridge.hubrun import Hub

    if not args.site:
        print(f"hpcbridge up: give --site PROFILE; {TESTBED_HINT}", file=sys.stderr)
        return 2
    from urllib.parse import urlparse

    from hpcbridge.profiles import load_profile

    try:
        profile = load_profile(args.site)
        connect = str(profile.hub.connect_url or "")
        hub_ip = args.hub_ip or (urlparse(connect).hostname or "127.0.0.1")
        st = Hub().up(site=os.path.abspath(args.site), env={}, hub_ip=hub_ip,
                      connect_url=connect)
    except HpcBridgeError as exc:
        print(f"hpcbridge up: {exc}", file=sys.stderr)
        return 1
    print_started(st)
    return 0


def print_started(st: dict) -> None:
    """What `up` prints about a started hub (also the testbed's `up`)."""
    print(f"hub: {st['hub_url']}")
    for user, password in st.get("users", {}).items():
        print(f"  login: {user} / {password}")
    print("hpcbridge status --json  prints these and an admin API token")


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
    return 0

"""``hpcbridge doctor PATH``: compare a site profile with its live schedulers.

Prints one ``PATH:LINE:COL: SEVERITY: KEY: message`` line per finding (the position of
the profile key it is about), followed by an indented ``fix:`` line; errors and
warnings always, notes with ``--verbose``. Exit status: 1 when there is an error (or
the profile does not load), else 0. ``--json`` prints the findings as a JSON list.

``${VAR}`` settings of the profile come from the environment. (The testbed's plugin
fills the ``HPCBRIDGE_TESTBED_*`` ones from the running testbed, and its users for
``--user``, when they are unset: see cli/__init__.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from hpcbridge.doctor import Finding, Severity, compare_cluster, gather_facts, unreachable
from hpcbridge.errors import HpcBridgeError, ProfileError
from hpcbridge.profiles import SiteProfile, load_profile_text
from hpcbridge.profiles.loader import dotted
from hpcbridge.profiles.yamlsrc import read_yaml


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="compare a site profile with the live scheduler; report drift",
        description="Check every cluster of a site profile against its scheduler: "
        "partitions exist, limits (walltime, nodes, cores, memory, GPUs) agree, QOS and "
        "accounts exist. Exit 1 when there is an error.",
    )
    parser.add_argument("path", metavar="PATH")
    parser.add_argument("--cluster", action="append", default=[], metavar="NAME",
                        help="check only this cluster (repeatable)")
    parser.add_argument("--user", action="append", default=[], metavar="USER",
                        help="check the accounts of this user, asking as them (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print notes: where the profile is narrower than the "
                        "scheduler")
    parser.add_argument("--json", action="store_true", help="print findings as JSON")
    parser.set_defaults(func=run)


async def _check(profile: SiteProfile, clusters: list[str], users: list[str]
                 ) -> list[Finding]:
    from hpcbridge.site import Site  # transports (paramiko) only when checking

    site = Site(profile)
    findings: list[Finding] = []
    try:
        for name in clusters:
            cluster = profile.clusters[name]
            path = ("clusters", name)
            as_user = cluster.status_user or (users[0] if users else None)
            if as_user is None and cluster.transport.kind == "ssh" and not cluster.transport.user:
                findings.append(Finding(
                    Severity.ERROR, (*path, "transport"), "no account to ask the scheduler as",
                    "set status_user (or transport.user), or name a user with --user"))
                continue
            try:
                client = site.client(name)
                facts = await gather_facts(client, users, as_user=as_user)
            except (HpcBridgeError, ValueError, OSError) as exc:
                findings.append(unreachable(path, exc))
                continue
            findings += compare_cluster(path, cluster, facts)
    finally:
        await site.close()
    return findings


def run(args: argparse.Namespace) -> int:
    try:
        text = Path(args.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{args.path}:1:1: cannot read the profile: {exc}")
        return 1
    env = os.environ
    try:
        profile = load_profile_text(text, args.path, env)
    except ProfileError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    unknown = [c for c in args.cluster if c not in profile.clusters]
    if unknown:
        print(f"hpcbridge doctor: no such cluster {', '.join(unknown)} "
              f"(clusters: {', '.join(profile.clusters)})", file=sys.stderr)
        return 1
    clusters = args.cluster or list(profile.clusters)
    users = args.user
    findings = asyncio.run(_check(profile, clusters, users))
    _report(args, text, env, findings, clusters)
    return 1 if any(f.severity is Severity.ERROR for f in findings) else 0


def _report(args: argparse.Namespace, text: str, env: Mapping[str, str],
            findings: list[Finding], clusters: list[str]) -> None:
    doc = read_yaml(text, env)
    marked = sorted(((doc.mark(f.path, key=True), f) for f in findings),
                    key=lambda item: (item[0].line, item[0].column))
    shown = [(m, f) for m, f in marked if args.verbose or f.severity is not Severity.NOTE]
    if args.json:
        print(json.dumps([{"severity": f.severity.value, "cluster": _cluster_of(f),
                           "key": dotted(f.path), "line": m.line, "column": m.column,
                           "message": f.message, "fix": f.fix} for m, f in shown],
                         indent=2))
    else:
        for mark, f in shown:
            print(f"{args.path}:{mark.line}:{mark.column}: {f.severity.value}: "
                  f"{dotted(f.path)}: {f.message}")
            if f.fix:
                print(f"    fix: {f.fix}")
    if len(clusters) > 1:  # one line per cluster, then the whole
        for name in clusters:
            mine = [f for f in findings if _cluster_of(f) == name]
            print(f"doctor: cluster {name}: {_summary(mine)}", file=sys.stderr)
    print(f"doctor: {len(clusters)} cluster{'s' if len(clusters) != 1 else ''} checked: "
          f"{_summary(findings)}", file=sys.stderr)


def _cluster_of(finding: Finding) -> str | None:
    """The cluster a finding is about (every finding's key is under ``clusters.NAME``)."""
    path = finding.path
    return str(path[1]) if len(path) > 1 and path[0] == "clusters" else None


def _summary(findings: list[Finding]) -> str:
    counts = {s: sum(f.severity is s for f in findings) for s in Severity}
    return ", ".join(f"{n} {s.value}{'s' if n != 1 else ''}" for s, n in counts.items())

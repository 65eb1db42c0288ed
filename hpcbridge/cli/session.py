"""``hpcbridge session list|show ID|export ID``: your session records (docs/sessions.md),
read from ``~/.hpcbridge/sessions`` as yourself, on a login node or in a notebook.

``list`` also completes records whose job ended without anyone writing its end (a hub
that was restarted, a batch run nobody watched): one status query for all of them, then
the scheduler's accounting, where a site profile is at hand (``--site``,
``$HPCBRIDGE_SITE_PROFILE``, or the job copy inside a notebook server).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from hpcbridge.errors import HpcBridgeError
from hpcbridge.sessions import record


def register(sub: argparse._SubParsersAction) -> None:
    session = sub.add_parser("session", help="your session records (servers, batch runs)")
    session.add_argument("action", nargs="?", default="list", choices=("list", "show", "export"))
    session.add_argument("id", nargs="?", help="show, export: the session's id")
    session.add_argument("--json", action="store_true", help="list: as JSON lines")
    session.add_argument("--to", help="export: the folder to write (default: ./session-ID)")
    session.add_argument("--zip", action="store_true", help="export: a zip of the folder")
    session.add_argument("--site", help="site profile (default: $HPCBRIDGE_SITE_PROFILE)")
    session.set_defaults(func=_session)


def all_records(home: Path) -> list[tuple[str, dict[str, Any] | None, str | None]]:
    """(id, record or None, what is wrong) of every file, newest first."""
    found: list[tuple[str, dict[str, Any] | None, str | None]] = []
    folder = record.folder_of(home)
    for path in sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else ():
        try:
            found.append((path.stem, record.read(path), None))
        except (OSError, ValueError) as exc:
            found.append((path.stem, None, str(exc)))
    return found


def summary(rec: dict[str, Any]) -> str:
    req, start, end = rec.get("request") or {}, rec.get("start") or {}, rec.get("end") or {}
    nodes = ",".join(end.get("nodes") or start.get("nodes") or []) or "-"
    used = end.get("elapsed_seconds")
    hours = record.core_hours(rec)
    packages = len((start.get("packages") or {}).get("requirements") or ())
    return (f"{rec['id']}  {rec['kind']:<6} job {rec.get('job_id') or '-':<8} "
            f"{req.get('partition')}/{req.get('cores')}c/{req.get('environment')}  "
            f"nodes {nodes}  {end.get('state', 'running or unknown')}  "
            f"{'-' if used is None else f'{used} s'}  "
            f"{'-' if hours is None else f'{hours} core-h'}  {packages} packages")


async def complete_ended(home: Path, records: list[dict[str, Any]], site: str | None) -> int:
    """Write the end of every record whose job is over and has none; how many."""
    from hpcbridge.cli.batch import client_for
    from hpcbridge.profiles.jobcopy import profile_in_job
    from hpcbridge.sessions.complete import complete

    open_ = [r for r in records if not r.get("end") and r.get("job_id")]
    if not open_:
        return 0
    profile = profile_in_job(site)
    done = 0
    for cluster in {r["cluster"] for r in open_ if r["cluster"] in profile.clusters}:
        client = client_for(profile, cluster)
        mine = [r for r in open_ if r["cluster"] == cluster]
        states = await client.status([r["job_id"] for r in mine])
        for rec in mine:
            info = states.get(rec["job_id"])
            if info is not None and info.state.is_terminal:
                # as the caller, whatever name a (hand-edited) record holds
                if await complete(client, getpass.getuser(), str(home), rec, rec["job_id"],
                                  info=info, by="cli", pauses=()):
                    done += 1
    return done


def _session(args: argparse.Namespace) -> int:
    home = Path.home()
    try:
        if args.action == "list":
            return _list(home, args)
        if not args.id:
            print(f"hpcbridge session {args.action}: which session? (an id of "
                  "`hpcbridge session list`)", file=sys.stderr)
            return 2
        rec = record.read(record.path_of(home, args.id))
    except FileNotFoundError:
        print(f"hpcbridge session: no session {args.id!r} in {record.folder_of(home)}",
              file=sys.stderr)
        return 1
    except (ValueError, OSError, HpcBridgeError) as exc:
        print(f"hpcbridge session: {exc}", file=sys.stderr)
        return 1
    if args.action == "show":
        print(json.dumps(rec, indent=1))
        return 0
    from hpcbridge.sessions.export import export

    target = Path(args.to or f"session-{rec['id']}").absolute()
    try:
        written = export(rec, target, as_zip=args.zip)
    except OSError as exc:
        print(f"hpcbridge session export: {exc}", file=sys.stderr)
        return 1
    print(written)
    return 0


def _list(home: Path, args: argparse.Namespace) -> int:
    found = all_records(home)
    good = [rec for _, rec, _ in found if rec is not None]
    try:
        if asyncio.run(complete_ended(home, good, args.site)):
            found = all_records(home)
    except HpcBridgeError as exc:  # no profile or no scheduler: list what is there
        print(f"hpcbridge session: ended sessions not completed: {exc}", file=sys.stderr)
    for record_id, rec, wrong in found:
        if args.json:
            print(json.dumps(rec if rec is not None else {"id": record_id, "error": wrong}))
        else:
            print(summary(rec) if rec is not None else f"{record_id}  unreadable: {wrong}")
    return 0

"""The spawner's side of session records (``hpcbridge/sessions/``): the request part it
hands the job, and the end it adds when the job is over.

At each new start (after the profile's gate) the server gets a session: an id, the
request as validated, the profile's digest. It travels in the job's private environment
file (``HPCBRIDGE_SESSION``; the launcher's capture writes the record's start) and stays
in the spawner's state, so that the end can be written when the poll finds the job
ended or a stop cancelled it, also after a hub restart, and also when the job's node
died before the job wrote anything.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from hpcbridge.jobs import JobInfo
from hpcbridge.sessions import complete, origin, record

if TYPE_CHECKING:
    from hpcbridge.profiles.request import ValidatedRequest
    from hpcbridge.spawner.spawner import HpcSpawner


def begin(spawner: HpcSpawner, req: ValidatedRequest) -> None:
    """A new session for this start (before its env file is written)."""
    spawner.session = {**origin.session_of(spawner.site.profile, req, "server",
                                           server_name=spawner.name), "home": req.home}


def job_env(spawner: HpcSpawner) -> dict[str, str]:
    """The session's variables of the job's environment (none without a session)."""
    session = spawner.session
    if not session:
        return {}
    shown = {k: v for k, v in session.items() if k != "home"}
    return {record.SESSION_ENV: json.dumps(shown, sort_keys=True),
            record.SESSION_ID_ENV: str(session["id"])}


def ended(spawner: HpcSpawner, job_id: str | None, info: JobInfo | None = None,
          ran: bool = True) -> None:
    """The server's job ``job_id`` ended (poll) or was cancelled (stop): write the
    record's end in the background, once per session."""
    session = spawner.session
    if not session or not job_id or spawner._session_ended == session.get("id"):
        return
    spawner._session_ended = session.get("id")
    shown = {k: v for k, v in session.items() if k != "home"}
    complete.complete_in_background(spawner._client(), spawner.user.name,
                                    str(session["home"]), shown, job_id, info, ran)

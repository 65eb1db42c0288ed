"""What a spawn must pass before anything runs for it, and what a refused one leaves.

- Identity (``hpcbridge/identity.py``): a hub user named like a system account, the
  cluster's status user or the hub's own account is refused with HTTP 403 naming the
  rule, before the first command for her (spawn form, start, re-attach, warm pool).
- A refusal's words are logged once: JupyterHub logs "Error starting NAME's server: ..."
  with the error, and tornado's 4xx warning would repeat its ``log_message``; a
  :class:`Refusal` carries them as ``jupyterhub_message`` (what JupyterHub's API answers
  and spawn pages show) and in ``str()``, not as a log message.
- Refused options: JupyterHub stores a spawn's ``user_options`` in its database before
  ``start()`` sees them, and a later start with no options (the admin page's button, a
  script) replays them. The options of the last job a server ran are kept in its state
  (``accepted_options``); when new ones are refused they are put back, in the database
  too, so a refused spawn leaves nothing behind (shared design, invariant 6).
- A refused REST spawn of a named server that never ran: JupyterHub's REST handler makes
  the server's database row before ``start()`` sees the options, and keeps it after the
  refusal (a stopped server in the user's list). When the spawn has failed, the row is
  removed as JupyterHub's own ``DELETE …/servers/NAME`` with ``remove`` does, unless a
  later request uses the server by then (:func:`forget_unused_server`). A form's row was
  made when the form was shown, and its spawn page names the refusal: it stays.
"""

from __future__ import annotations

import logging
import time

from jupyterhub.apihandlers.base import APIHandler
from sqlalchemy.orm import object_session
from tornado import web

from hpcbridge.errors import IdentityRefused, SchedulerUnavailable
from hpcbridge.identity import hub_accounts, name_refusal
from hpcbridge.spawner.form import Refused

log = logging.getLogger("hpcbridge.spawner")
#: seconds a refused form submit waits for the form that JupyterHub shows again
REFUSAL_KEPT = 60.0
#: user name -> (time.monotonic(), the refused submit); one entry per user, taken by the
#: next form. By user, not by server: JupyterHub renders the form after a refused submit
#: with the user's default server, also for a named one.
_REFUSED: dict[str, tuple[float, Refused]] = {}


class Refusal(web.HTTPError):
    """A spawn refused with ``message``, shown to the user and logged once."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code)
        self.jupyterhub_message = message

    def __str__(self) -> str:
        return f"HTTP {self.status_code}: {self.jupyterhub_message}"


class Failure(web.HTTPError):
    """A spawn that failed for a reason its user reads as it is: JupyterHub's progress
    page shows ``jupyterhub_message``, where a plain HTTPError reads "HTTP 500: Internal
    Server Error (…)"."""

    def __init__(self, status_code: int, message: str) -> None:
        # tornado formats log_message with %: the text may hold a scheduler's % signs
        super().__init__(status_code, message.replace("%", "%%"))
        self.jupyterhub_message = message


async def check_identity(site, cluster: str | None, user: str) -> None:
    """Return if the hub may act as ``user`` on ``cluster``; HTTP 403 (the rule) if it
    may not, 503 if the login node cannot say now."""
    try:
        await site.identity.check(cluster, user)
    except IdentityRefused as exc:
        raise Refusal(403, str(exc)) from None
    except SchedulerUnavailable as exc:
        raise web.HTTPError(503, f"cluster {site.cluster_name(cluster)}: "
                                 f"{exc.user_message}") from None


def outage_refusal(site, cluster: str) -> str | None:
    """Why a new job on ``cluster`` is refused now: its scheduler or login node does not
    answer the hub's status queries (the jobs it runs are UNKNOWN, not gone); naming the
    clusters that answer. None when it answers."""
    reason = site.outage(cluster)
    if reason is None:
        return None
    others = [n for n in site.profile.clusters if n != cluster and site.outage(n) is None]
    elsewhere = f", or choose cluster {' or '.join(others)}" if others else ""
    return (f"cluster {cluster} does not answer now ({reason}); no job was submitted. "
            f"Your running servers there are kept. Try again later{elsewhere}")


def name_refused(site, cluster: str | None, user: str) -> str | None:
    """The name rule ``user`` breaks on ``cluster`` (no command run), or None."""
    name = site.cluster_name(cluster)
    config = site.cluster(name)
    return name_refusal(name, config, user, hub_accounts(config))


def remember_options(spawner) -> dict | None:
    """The options to keep in the server's state: the current ones while the state
    names a job (they made it), else the ones kept before."""
    if spawner.job_id:
        spawner.accepted_options = dict(spawner.user_options or {})
    return spawner.accepted_options


def restore_options(spawner) -> None:
    """Put back the last accepted options (or none) after ``spawner``'s were refused."""
    accepted = dict(spawner.accepted_options or {})
    spawner.user_options = accepted
    orm = spawner.orm_spawner
    if orm is None:
        return
    orm.user_options = dict(accepted)
    session = object_session(orm)
    if session is not None:
        session.commit()


def keep_refused_form(spawner, options: dict, problems: tuple[tuple[str, str], ...]) -> None:
    """Keep what a refused form submit sent for the form JupyterHub shows next; a REST
    or query spawn has no form to come back to."""
    if spawner.handler is None or isinstance(spawner.handler, APIHandler):
        return
    _REFUSED[spawner.user.name] = (time.monotonic(), Refused(dict(options), problems))


def take_refused_form(user: str) -> Refused | None:
    """The submit of ``user`` refused in the last REFUSAL_KEPT seconds (once), or None."""
    kept = _REFUSED.pop(user, None)
    if kept is None or time.monotonic() - kept[0] > REFUSAL_KEPT:
        return None
    return kept[1]


def forget_unused_server(spawner) -> None:
    """After ``spawner``'s start was refused: when it is a named server that never ran,
    started through the REST API, remove its row once JupyterHub has finished the failed
    spawn (its clean-up still uses the row)."""
    if not spawner.name or spawner.accepted_options is not None or spawner.last_end:
        return  # the default server, or one that ran: its history stays
    if not isinstance(spawner.handler, APIHandler):
        return
    spawn = spawner._spawn_future  # JupyterHub's whole spawn, of which start() is a part
    if spawn is None or spawn.done():
        return
    spawn.add_done_callback(lambda done: _remove_unused_row(spawner, done))


def _remove_unused_row(spawner, spawn) -> None:
    """Remove the row of a server whose spawn ``spawn`` failed, unless it is in use again.
    No await between the check and the removal: no other request runs in between."""
    if spawn.cancelled() or spawn.exception() is None:
        return
    user, row = spawner.user, spawner.orm_spawner
    if (user.spawners.get(spawner.name) is not spawner or spawner.active
            or user.orm_spawners.get(spawner.name) is not row or row.server is not None
            or (row.state or {}).get("job_id")):
        return  # a request since the refusal uses this server
    spawner.log.info("removing %s: its only spawn was refused", spawner._log_name)
    session = object_session(row)
    if session is None:
        return
    session.delete(row)
    user.spawners.pop(spawner.name, None)
    session.commit()

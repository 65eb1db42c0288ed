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
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import object_session
from tornado import web

from hpcbridge.errors import IdentityRefused, SchedulerUnavailable
from hpcbridge.identity import hub_accounts, name_refusal

log = logging.getLogger("hpcbridge.spawner")


class Refusal(web.HTTPError):
    """A spawn refused with ``message``, shown to the user and logged once."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code)
        self.jupyterhub_message = message

    def __str__(self) -> str:
        return f"HTTP {self.status_code}: {self.jupyterhub_message}"


async def check_identity(site, cluster: str | None, user: str) -> None:
    """Return if the hub may act as ``user`` on ``cluster``; HTTP 403 (the rule) if it
    may not, 503 if the login node cannot say now."""
    try:
        await site.identity.check(cluster, user)
    except IdentityRefused as exc:
        raise Refusal(403, str(exc)) from None
    except SchedulerUnavailable as exc:
        raise web.HTTPError(503, exc.user_message) from None


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

"""Re-attach after a hub restart, the job's token, and the port callback's side.

A job holds the token of the start that submitted it; a start that re-attaches to the
job after a hub restart takes that token over when the job reports its port, and a
token no start will use again is revoked (docs/architecture.md, "Re-attach").
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from jupyterhub import orm
from jupyterhub.utils import hash_token
from sqlalchemy.orm import object_session

from hpcbridge.errors import SchedulerUnavailable
from hpcbridge.jobs import JobState
from hpcbridge.spawner import jobenv, teardown

if TYPE_CHECKING:
    from hpcbridge.spawner.spawner import HpcSpawner


async def reattachable(spawner: HpcSpawner) -> bool:
    """Can this start wait for the job of an earlier one? Else forget (or end) it."""
    info = await spawner._fresh_info()
    alive = info is not None and (info.state.is_active or info.state is JobState.UNKNOWN)
    # the job may report its port to this start while the scheduler is asked (a queued
    # job starting now): that report came with the job's own token through
    # accepts_port_from and is this start's to take, not one an earlier start lost
    reported_here = spawner._port is not None and spawner._port.done() and \
        not spawner._port.cancelled()
    if alive and (spawner.reported_port is None or reported_here):
        return True
    if alive:
        # it reported its port to an earlier start, with a token this start cannot
        # learn: JupyterHub's OAuth client for the server would never match it
        spawner.log.warning("%s: job %s reported its port before the hub stopped; its token "
                            "is lost, cancelling it and submitting a new one",
                            spawner._log_name, spawner.job_id)
        try:
            await spawner._client().cancel(spawner.user.name, [spawner.job_id])
        except SchedulerUnavailable:
            spawner.site.cancel_later(spawner.cluster, spawner.user.name, spawner.job_id)
    else:
        spawner.log.info("%s: job %s of a previous start is %s; submitting a new one",
                         spawner._log_name, spawner.job_id,
                         info.state.value if info else "not known")
        # e.g. cancelled in the queue while the hub was down
        await teardown.remove_env_file(spawner)
    spawner._revoke_job_token()
    spawner.clear_state()
    return False


def note_token_row(spawner: HpcSpawner, change) -> None:
    """Remember which of JupyterHub's token rows the job was given (when the digest is
    set for the token JupyterHub made for this start), to revoke it should the job be
    dropped after a hub restart, when no one knows the token any more."""
    spawner.token_id = None
    session = object_session(spawner.orm_spawner) if spawner.orm_spawner is not None else None
    if session is None or not change.new or not spawner.api_token or \
            jobenv.token_digest(spawner.api_token) != change.new:
        return
    row = orm.APIToken.find(session, spawner.api_token)
    spawner.token_id = row.id if row is not None else None


def revoke_job_token(spawner: HpcSpawner) -> None:
    """Delete the token of a job that is gone or going, if it is not this start's.

    JupyterHub keeps a start's token in its database until a stop of a spawner
    holding it; after a restart no spawner holds it (docs/architecture.md,
    "Re-attach").
    """
    session = object_session(spawner.orm_spawner) if spawner.orm_spawner is not None else None
    if spawner.token_id is None or session is None:
        return
    row = session.get(orm.APIToken, spawner.token_id)
    spawner.token_id = None
    if row is None or row.user_id != spawner.orm_spawner.user_id or \
            (spawner.api_token and row.match(spawner.api_token)):
        return
    session.delete(row)
    session.commit()
    spawner.log.info("%s: revoked the API token of job %s", spawner._log_name, spawner.job_id)


def job_holds(spawner: HpcSpawner, token: str | None) -> bool:
    """Is ``token`` the one written into this server's job's environment?"""
    if not token or not spawner.token_digest or spawner.reported_port is not None:
        return False
    return hmac.compare_digest(jobenv.token_digest(token), spawner.token_digest)


def accepts_port_from(spawner: HpcSpawner, token: str | None) -> bool:
    """Does this server's job hold ``token``, while a start waits for its port? (port
    callback)"""
    return job_holds(spawner, token) and spawner._port is not None and not spawner._port.done()


def port_reported(spawner: HpcSpawner, port: int, token: str) -> None:
    """Take the port a job reported with ``token`` (one :meth:`accepts_port_from` took).

    The job holds the token of the start that submitted it. When this start
    re-attached to the job after a hub restart, JupyterHub made a new token for it and
    registered the server's OAuth client with that one. The job's token becomes this
    server's token again, and its OAuth client's secret at once (a hub killed from now
    on finds a consistent server, see get_url). When start() returns, JupyterHub sees
    ``api_token`` changed, deletes its unused new token and registers the client with
    the job's token itself (docs/architecture.md, "Re-attach").
    """
    if token != spawner.api_token:
        spawner.log.info("%s: job %s holds the token of the start that submitted it; "
                         "re-using it", spawner._log_name, spawner.job_id)
        spawner.api_token = token
        client = getattr(spawner.orm_spawner, "oauth_client", None)
        if client is not None:
            client.secret = hash_token(token)  # how JupyterHub stores a client secret
    spawner.reported_port = port
    spawner._save_state_now()  # one commit: the port and the client's secret
    if spawner._port is not None and not spawner._port.done():
        spawner._port.set_result(port)
    spawner._poller().wake()

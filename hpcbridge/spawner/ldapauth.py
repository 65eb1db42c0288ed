"""Logins against the center's LDAP directory, with an outage told apart from a refusal.

jupyterhub-ldapauthenticator answers a wrong password or an unknown user with JupyterHub's
normal "Invalid username or password"; an unreachable directory makes it raise, which
JupyterHub shows as an internal error (HTTP 500). This subclass answers that case with
HTTP 503 and words a user can act on. Nothing else changes: every setting of
``LDAPAuthenticator`` applies (traitlets reads the parent class's section too), and
servers that run are not touched by a login, so an outage never stops them.

Profile: ``hub.authenticator: {kind: ldap, options: {...}}`` selects it.
"""

from __future__ import annotations

from typing import Any

from ldap3.core.exceptions import LDAPCommunicationError
from ldapauthenticator import LDAPAuthenticator
from tornado import web


class DirectoryAuthenticator(LDAPAuthenticator):
    """``LDAPAuthenticator`` whose directory outage is a 503 with a clear message."""

    async def authenticate(self, handler: Any, data: dict[str, Any]) -> Any:
        try:
            return await super().authenticate(handler, data)
        except LDAPCommunicationError as exc:
            self.log.error("login of %.40r: the directory %s is not answering (%s)",
                           data.get("username"), self.server_address, type(exc).__name__)
            raise web.HTTPError(
                503, "The directory that checks passwords is not answering; try again in "
                     "a minute. Servers that are running go on running.") from None

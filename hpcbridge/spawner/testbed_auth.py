"""Password logins for the testbed's users (alice, bob, carol). Testbed only.

Passwords are random per ``hpcbridge up`` and kept in a 0600 file next to the hub's
database; a real center uses its own authenticator (PAM, LDAP, OAuth).
"""

from __future__ import annotations

import hmac
import json

from jupyterhub.auth import Authenticator
from traitlets import Unicode


class TestbedAuthenticator(Authenticator):
    __test__ = False

    passwords_file = Unicode(config=True, help="JSON file {user: password} (mode 0600).")

    def _passwords(self) -> dict[str, str]:
        with open(self.passwords_file, encoding="utf-8") as f:
            return json.load(f)

    async def authenticate(self, handler, data):
        user, password = data.get("username", ""), data.get("password", "")
        expected = self._passwords().get(user)
        if expected is not None and hmac.compare_digest(expected, password):
            return user
        return None

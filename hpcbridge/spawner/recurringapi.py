"""The hub's API for recurring batch notebooks it keeps (``hpcbridge/batch/hubcron.py``).

``PUT /hub/api/hpcbridge/recurring/<definition id>`` registers (or pauses, resumes,
reschedules) a definition, ``DELETE`` removes it, ``GET /hub/api/hpcbridge/recurring``
lists the caller's. The caller is a *user* (her notebook server's token, or her own):
she acts on her own definitions only, since they are keyed by her name; a service or
an unknown token gets 403. Answers: 200 with the entry, 204, 400 with the reason
(schedule, paths, the profile's limits), 403 (the hub does not act as this user),
503 (the login node cannot say who she is: try again).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from jupyterhub.apihandlers import APIHandler
from tornado import web

from hpcbridge.batch import hubcron
from hpcbridge.errors import HpcBridgeError, IdentityRefused, SchedulerUnavailable
from hpcbridge.spawner.api import json_body

ROUTE = r"/api/hpcbridge/recurring(?:/([0-9a-f-]{36}))?"
#: a registration is a few hundred bytes
MAX_BODY = 16384


class RecurringHandler(APIHandler):
    """The caller's definitions kept by the hub (see the module)."""

    #: set by :func:`hpcbridge.spawner.hubconfig.configure`
    profile_path = ""
    state_file = hubcron.STATE_FILE

    def _keeper(self) -> hubcron.HubRecurring:
        keeper = hubcron.service(self.profile_path, self.state_file)
        keeper.start()  # after a restart the hub's loop runs it already; idempotent
        return keeper

    def _user(self) -> str:
        user = self.current_user
        if user is None or not hasattr(user, "spawners"):
            raise web.HTTPError(403, "a user's token is required")
        return str(user.name)

    def _answer(self, body: object, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))

    async def get(self, definition_id: str | None = None) -> None:
        user = self._user()
        entries = [asdict(e) for e in self._keeper().store.of(user)
                   if definition_id in (None, e.definition_id)]
        self._answer({"definitions": entries})

    async def put(self, definition_id: str | None = None) -> None:
        user = self._user()
        if not definition_id:
            raise web.HTTPError(405, "PUT names a definition")
        body = json_body(self.request.body, max_bytes=MAX_BODY, max_depth=2)
        try:
            entry = hubcron.parse_entry(body, user, definition_id, time.time())
            entry = await self._keeper().register(entry)
        except IdentityRefused as exc:
            raise web.HTTPError(403, str(exc)) from None
        except SchedulerUnavailable as exc:
            raise web.HTTPError(503, str(exc)) from None
        except HpcBridgeError as exc:  # the schedule, a path, the profile's limits
            raise web.HTTPError(400, str(exc)) from None
        self.log.info("recurring %s of %s: %s%s", definition_id, user, entry.schedule,
                      "" if entry.active else " (paused)")
        self._answer(asdict(entry))

    async def delete(self, definition_id: str | None = None) -> None:
        user = self._user()
        if not definition_id:
            raise web.HTTPError(405, "DELETE names a definition")
        self._keeper().remove(user, definition_id)
        self.set_status(204)
        self.finish()

"""The notebook server's side of the schedules the hub keeps (``hpcbridge/batch/hubcron.py``):
register, pause/resume/reschedule (the same PUT) and remove a definition through the
hub's API, as the server's user (``$JUPYTERHUB_API_TOKEN``; it never reaches argv or a
log). The hub answers 400/403 with its reason, which the Create Job dialog shows.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from hpcbridge.errors import RequestError, SchedulerUnavailable

TIMEOUT = 30.0


class HubRefused(RequestError):
    """The hub refused the definition; the text is its reason."""


def _call(method: str, url: str, token: str, body: Mapping[str, Any] | None
          ) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def _request(method: str, definition_id: str, body: Mapping[str, Any] | None,
                   env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    api, token = env.get("JUPYTERHUB_API_URL", ""), env.get("JUPYTERHUB_API_TOKEN", "")
    if not api or not token:
        raise SchedulerUnavailable("this server has no hub to keep the schedule "
                                   "(JUPYTERHUB_API_URL is not set)")
    url = f"{api.rstrip('/')}/hpcbridge/recurring/{definition_id}"
    try:
        status, answer = await asyncio.to_thread(_call, method, url, token, body)
    except OSError as exc:
        raise SchedulerUnavailable(f"the hub did not answer: {exc}") from None
    if 200 <= status < 300 or (method == "DELETE" and status == 404):
        return
    try:
        message = str(json.loads(answer).get("message") or "")
    except (ValueError, AttributeError):
        message = answer[:300].decode(errors="replace")
    if status in (400, 403):
        raise HubRefused(message or f"HTTP {status}")
    raise SchedulerUnavailable(f"the hub answered HTTP {status}: {message}")


async def register(definition_id: str, body: Mapping[str, Any]) -> None:
    """Add or change the definition the hub runs (``body``: hubcron's registration)."""
    await _request("PUT", definition_id, body)


async def remove(definition_id: str) -> None:
    await _request("DELETE", definition_id, None)

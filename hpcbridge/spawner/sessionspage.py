""""My sessions": the hub page listing the user's session records (``/hub/sessions``),
newest first, with where each ran, what it used and a "Start again".

The records are read as the logged-in user from her own home on each cluster of the
site profile (``SchedulerClient.read_small_files``): the page takes no user name and no
path from the request, so no one can read or re-run another user's record through it.
"Start again" is JupyterHub's own spawn form post (``/hub/spawn/<user>``) with the
record's request as the form's fields: the same gate as every spawn decides. The page
checks the same gate first and shows a record it refuses (corrupted, edited by hand into
something else, another user's, or no longer allowed by the profile) with the reason
instead of the button.
"""

from __future__ import annotations

import logging
from typing import Any

from jupyterhub.handlers.base import BaseHandler
from tornado import web

from hpcbridge.errors import HpcBridgeError, RequestError
from hpcbridge.profiles import JobRequest, SiteProfile, validate_request
from hpcbridge.sessions import origin, record
from hpcbridge.site import Site

log = logging.getLogger(__name__)

ROUTE = r"/sessions"


def duration(seconds: Any) -> str:
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
        return "–"
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def again_options(rec: dict[str, Any]) -> dict[str, str]:
    request = rec.get("request") or {}
    return {k: str(request[k]) for k in record.OPTION_KEYS if request.get(k) is not None}


def refusal(profile: SiteProfile, user: str, rec: dict[str, Any]) -> str | None:
    """Why "Start again" must not run this record; None when the gate takes it."""
    if rec.get("user") != user:
        return f"this is a record of {str(rec.get('user'))[:40]!r}, not yours"
    if rec.get("kind") != "server":
        return "a batch run: run it again with `hpcbridge run` or the Notebook Jobs panel"
    try:
        validate_request(profile, JobRequest.from_options(again_options(rec), user=user))
    except RequestError as exc:
        return f"the site no longer allows this request: {exc}"
    return None


def row(profile: SiteProfile, user: str, name: str, text: str) -> dict[str, Any]:
    """What the page shows of one file."""
    record_id = name.removesuffix(".json")
    try:
        rec = record.loads(text)
    except ValueError as exc:
        return {"id": record_id, "broken": f"this record cannot be used: {exc}"}
    req, start, end = rec.get("request") or {}, rec.get("start") or {}, rec.get("end") or {}
    packages = (start.get("packages") or {}).get("requirements") or []
    hours = record.core_hours(rec)
    return {
        "id": record_id, "kind": rec["kind"], "job_id": rec.get("job_id"),
        "started": start.get("time") or end.get("started") or record_id[:16],
        "nodes": ", ".join(end.get("nodes") or start.get("nodes") or []) or "–",
        "request": req, "state": end.get("description") or end.get("state") or "running",
        "used": duration(end.get("elapsed_seconds")),
        "core_hours": "–" if hours is None else f"{hours:.3f}",
        "modules": [f"{m.get('name')}/{m.get('version')}" for m in start.get("modules") or []
                    if isinstance(m, dict)],
        "packages": [str(p) for p in packages],
        "container": start.get("container"),
        "same_profile": rec["cluster"] in profile.clusters and
        rec.get("profile_digest") == origin.profile_digest(profile, rec["cluster"]),
        "options": again_options(rec), "refused": refusal(profile, user, rec),
    }


async def user_rows(site: Site, user: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of every record in ``user``'s homes, newest first; problems reading them."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: set[str] = set()
    for name, cluster in site.profile.clusters.items():
        folder = str(record.folder_of(record.home_of(cluster.home, user)))
        try:
            files = await site.client(name).read_small_files(
                user, folder, ".json", max_bytes=record.MAX_BYTES)
        except HpcBridgeError as exc:
            problems.append(f"cluster {name}: cannot read your records now ({exc})")
            continue
        for file_name, text in files.items():
            if file_name not in seen:
                seen.add(file_name)
                rows.append(row(site.profile, user, file_name, text))
    rows.sort(key=lambda r: r["id"], reverse=True)
    return rows, problems


class SessionsHandler(BaseHandler):
    """``GET /hub/sessions``: the logged-in user's records."""

    @web.authenticated
    async def get(self) -> None:
        from hpcbridge.spawner import guard

        user = self.current_user
        spawner = user.spawner
        site = spawner.site
        for name in site.profile.clusters:
            await guard.check_identity(site, name, user.name)
        rows, problems = await user_rows(site, user.name)
        html = await self.render_template(
            "sessions.html", rows=rows, problems=problems, running=spawner.active,
            spawn_url=f"{self.hub.base_url}spawn/{user.escaped_name}"
                      f"?_xsrf={self.xsrf_token.decode('ascii')}")
        self.finish(html)

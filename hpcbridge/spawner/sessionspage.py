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

A batch run's "Start again" is a post to this page: the hub runs
``python -m hpcbridge.sessions.again`` (``hpcbridge/sessions/again.py``) as the user on the
record's cluster's login node, which submits the same notebook run again through the
same checks as every batch submission and answers with the job or the refusal.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from jupyterhub.handlers.base import BaseHandler
from tornado import web

from hpcbridge.errors import HpcBridgeError, RequestError
from hpcbridge.profiles import JobRequest, SiteProfile, validate_request
from hpcbridge.profiles.jobcopy import job_copy_json
from hpcbridge.sessions import origin, record
from hpcbridge.site import Site

log = logging.getLogger(__name__)

ROUTE = r"/sessions"


def duration(seconds: Any) -> str:
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
        return "–"
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def peak_memory(end: dict[str, Any]) -> tuple[str, str]:
    """The largest resident memory a record's job had, and why none when it has none
    (``hpcbridge/sessions/complete.py``'s note)."""
    mb = end.get("max_rss_mb")
    if isinstance(mb, int | float) and not isinstance(mb, bool):
        return (f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"), ""
    return "–", str(end.get("max_rss_note") or "")[:200]


def again_options(rec: dict[str, Any]) -> dict[str, str]:
    request = rec.get("request") or {}
    return {k: str(request[k]) for k in record.OPTION_KEYS if request.get(k) is not None}


def refusal(profile: SiteProfile, user: str, rec: dict[str, Any]) -> str | None:
    """Why "Start again" must not run this record; None when the gate takes it."""
    if rec.get("user") != user:
        return f"this is a record of {str(rec.get('user'))[:40]!r}, not yours"
    if rec.get("kind") == "batch" and not isinstance(rec.get("folder"), str):
        return "a batch run's record without its folder: cannot run it again"
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
        "memory": peak_memory(end),
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
        files = await with_ends(site, user, {n: t for n, t in files.items() if n not in seen})
        for file_name, text in files.items():
            seen.add(file_name)
            rows.append(row(site.profile, user, file_name, text))
    rows.sort(key=lambda r: r["id"], reverse=True)
    return rows, problems


#: records one page load completes at most (each costs an accounting query)
MAX_COMPLETIONS = 20


async def with_ends(site: Site, user: str, files: dict[str, str]) -> dict[str, str]:
    """``files`` (name -> text), the end written into the records whose job ended since
    (a batch run's: nobody else watches it; a server's end a restarted hub missed): one
    status query per cluster for all open records, then the accounting of those that
    ended, without waiting for more (``hpcbridge/sessions/complete.py``)."""
    from hpcbridge.sessions.complete import complete

    open_: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, text in files.items():
        try:
            rec = record.loads(text)
        except ValueError:
            continue
        if not rec.get("end") and rec.get("job_id") and rec.get("user") == user and \
                rec["cluster"] in site.profile.clusters:
            open_.setdefault(rec["cluster"], []).append((name, rec))
    out, budget = dict(files), MAX_COMPLETIONS
    for cluster, recs in open_.items():
        client = site.client(cluster)
        home = record.home_of(site.profile.clusters[cluster].home, user)
        try:
            states = await client.status([r["job_id"] for _, r in recs], as_user=user)
        except HpcBridgeError:
            continue  # shown as they are; the next load asks again
        ended = [(n, r) for n, r in recs
                 if (info := states.get(r["job_id"])) is not None and info.state.is_terminal]
        ended, budget = ended[:budget], budget - len(ended[:budget])
        done = await asyncio.gather(*(
            complete(client, user, home, r, r["job_id"], info=states[r["job_id"]],
                     by="hub", pauses=()) for _, r in ended), return_exceptions=True)
        for (name, _), result in zip(ended, done, strict=True):
            if isinstance(result, dict):
                out[name] = record.dumps(result)
            elif isinstance(result, BaseException):
                log.warning("cannot complete session record %s of %s: %s", name, user,
                            result)
    return out


#: how long the login node may take to check and submit a batch run again
AGAIN_TIMEOUT = 120.0


def again_argv(profile: SiteProfile, rec: dict[str, Any]) -> list[str]:
    """The command that starts a batch run again: the Python of the record's environment
    (hpcbridge is installed there: the run's job needs it too), else ``python3``."""
    cluster = profile.clusters[rec["cluster"]]
    env = cluster.environments.get((rec.get("request") or {}).get("environment") or "")
    return [str(env.python) if env and env.python else "python3", "-m",
            "hpcbridge.sessions.again"]


def again_answer(stdout: str, stderr: str) -> dict[str, Any]:
    """The command's JSON line; a refusal naming its error output when there is none."""
    lines = stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        answer = None
    if isinstance(answer, dict) and ("job_id" in answer or "refused" in answer):
        return answer
    return {"refused": "the login node could not start it again: "
                       f"{(stderr.strip() or stdout.strip())[-300:] or 'no answer'}"}


async def start_batch_again(site: Site, user: str, record_id: str) -> dict[str, Any]:
    """Start the batch run of ``user``'s record ``record_id`` again, as her: the answer
    (``job_id`` and ``folder``, or ``refused`` with the reason)."""
    record.check_id(record_id)
    for name, cluster in site.profile.clusters.items():
        path = str(record.path_of(record.home_of(cluster.home, user), record_id))
        text = await site.client(name).read_private_file(user, path, record.MAX_BYTES)
        if text is None:
            continue
        try:
            rec = record.loads(text)
        except ValueError as exc:
            return {"refused": f"this record cannot be used: {exc}"}
        why = refusal(site.profile, user, rec)
        if why is None and rec.get("kind") != "batch":
            why = "not a batch run's record: start it again from its own button"
        if why is not None:
            return {"refused": why}
        stdin = json.dumps({"id": record_id, "profile": json.loads(
            job_copy_json(site.profile, rec["cluster"]))}).encode()
        done = await site.client(rec["cluster"]).run_tool(
            user, again_argv(site.profile, rec), stdin=stdin, timeout=AGAIN_TIMEOUT)
        return again_answer(done.stdout, done.stderr)
    return {"refused": f"you have no session record {record_id}"}


class SessionsHandler(BaseHandler):
    """``GET /hub/sessions``: the logged-in user's records; ``POST`` (``id``): start a
    batch run's record again."""

    async def _page(self, notice: dict[str, Any] | None = None) -> None:
        from hpcbridge.spawner import guard

        user = self.current_user
        spawner = user.spawner
        site = spawner.site
        for name in site.profile.clusters:
            await guard.check_identity(site, name, user.name)
        rows, problems = await user_rows(site, user.name)
        html = await self.render_template(
            "sessions.html", rows=rows, problems=problems, running=spawner.active,
            notice=notice, again_url=f"{self.hub.base_url}sessions",
            xsrf=self.xsrf_token.decode("ascii"),
            spawn_url=f"{self.hub.base_url}spawn/{user.escaped_name}"
                      f"?_xsrf={self.xsrf_token.decode('ascii')}")
        self.finish(html)

    @web.authenticated
    async def get(self) -> None:
        await self._page()

    @web.authenticated
    async def post(self) -> None:
        from hpcbridge.spawner import guard

        user = self.current_user
        site = user.spawner.site
        record_id = self.get_body_argument("id", "")
        try:
            record.check_id(record_id)
        except ValueError as exc:
            raise web.HTTPError(400, str(exc)) from None
        for name in site.profile.clusters:
            await guard.check_identity(site, name, user.name)
        try:
            answer = await start_batch_again(site, user.name, record_id)
        except HpcBridgeError as exc:
            answer = {"refused": f"cannot start it again now: {exc}"}
        log.info("start again of %s's record %s: %s", user.name, record_id, answer)
        self.set_status(200 if "job_id" in answer else 400)
        await self._page({"id": record_id, **answer})

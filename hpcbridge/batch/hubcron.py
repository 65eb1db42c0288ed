"""Recurring batch notebooks kept by the hub, where the cluster has no crontab of the
scheduler (``recurring: hub``; ``auto`` where ``scrontab`` is missing: Debian's Slurm
22.05 client, PBS).

The user's notebook server registers each definition with the hub
(``hpcbridge/batch/hubclient.py``; route :data:`ROUTE`, the server's own API token): its
schedule, its folder, the request of its runs, active or paused. The hub checks it as it
checks a crontab block (the schedule with our own parser, the paths as crontab words,
the small launcher job through the profile's gate, the user through the identity gate)
and keeps it in a private JSON file beside its database (:class:`Store`), so it survives
a restart of the hub.

Once a minute :class:`HubRecurring` submits, as the user through the scheduler client,
the same launcher job a crontab entry starts (``hpcbridge/batch/recurring.py``) for each
active definition whose schedule selected a minute since its last run; the launcher
passes the run through the gate and submits it, as under scrontab. A definition whose
minutes passed while the hub was down runs *once* when the hub is back, however many it
missed. The hub notes a run as taken before it submits, so a hub killed in between
loses that run rather than doubling it (at most once); a scheduler that cannot be asked
keeps the run due for the next minute. Pausing or deleting removes the entry before the
server answers, and the launcher itself runs nothing for a paused or missing definition.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from hpcbridge.batch.cron import check_time_zone, next_run, parse_schedule
from hpcbridge.batch.crontab import DEFINITION_ID, SAFE_WORD
from hpcbridge.batch.recurring import launcher_request
from hpcbridge.batch.request import batch_request
from hpcbridge.errors import HpcBridgeError, RequestError, SchedulerUnavailable, quote
from hpcbridge.profiles import SiteProfile, ValidatedRequest, render_script

# a child of the hub's own logger: its lines land in the hub's log
log = logging.getLogger("JupyterHub.recurring")

#: the hub's file of definitions, in its working folder (beside jupyterhub.sqlite)
STATE_FILE = "hpcbridge-recurring.json"
#: the module a run's launcher job runs
RUNNER = ("-m", "hpcbridge.batch.recurring")
#: what a registration may carry
_KEYS = {"cluster", "schedule", "timezone", "folder", "python", "environment",
         "compute_type", "options", "active"}


@dataclass(frozen=True)
class Entry:
    """One definition the hub runs on schedule."""

    user: str
    definition_id: str
    cluster: str
    #: checked, numbers only (:func:`hpcbridge.batch.cron.parse_schedule`)
    schedule: str
    #: the definition's folder in the user's home; the launcher reads it
    folder: str
    #: the Python with hpcbridge on the nodes
    python: str
    environment: str | None = None
    compute_type: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    active: bool = True
    #: seconds since the epoch up to which the schedule's minutes are done
    checked_until: float = 0.0
    last_run: float | None = None
    last_job: str | None = None
    last_error: str | None = None

    @property
    def command(self) -> tuple[str, ...]:
        return (self.python, *RUNNER, self.folder)

    def due(self, now: float) -> bool:
        if not self.active:
            return False
        nxt = next_run(parse_schedule(self.schedule),
                       datetime.fromtimestamp(self.checked_until))
        return nxt is not None and nxt.timestamp() <= now


def _path_word(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not (isinstance(value, str) and value.startswith("/") and SAFE_WORD.fullmatch(value)
            and "/../" not in value + "/"):
        raise RequestError(f"{key} must be an absolute path of letters, digits and "
                           f"_ . / + = : - only, got {quote(value)}")
    return value


def _optional_name(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not (isinstance(value, str) and len(value) <= 200):
        raise RequestError(f"{key} must be a short string, got {quote(value)}")
    return value


def parse_entry(body: object, user: str, definition_id: str, now: float) -> Entry:
    """A registration's body checked (paths, schedule, its time zone); RequestError with
    the reason. The request's limits are checked by :func:`launcher_for`."""
    if not DEFINITION_ID.fullmatch(definition_id):
        raise RequestError(f"not a job definition id: {quote(definition_id)}")
    if not isinstance(body, dict) or not set(body) <= _KEYS:
        extra = sorted(set(body) - _KEYS) if isinstance(body, dict) else type(body).__name__
        raise RequestError(f"the body must be an object with keys from "
                           f"{', '.join(sorted(_KEYS))}; got {quote(extra)}")
    cluster, options = body.get("cluster"), body.get("options") or {}
    if not isinstance(cluster, str) or not isinstance(options, dict) or \
            not all(isinstance(v, str | int | float | bool) for v in options.values()):
        raise RequestError("cluster must be a name and options an object of plain values")
    schedule = parse_schedule(body.get("schedule"))
    timezone = _optional_name(body, "timezone")
    check_time_zone(timezone, schedule)  # the hub keeps the schedule in its own time zone
    active = body.get("active", True)
    if not isinstance(active, bool):
        raise RequestError("active must be true or false")
    return Entry(user=user, definition_id=definition_id, cluster=cluster,
                 schedule=schedule.spec, folder=_path_word(body, "folder"),
                 python=_path_word(body, "python"),
                 environment=_optional_name(body, "environment"),
                 compute_type=_optional_name(body, "compute_type"), options=dict(options),
                 active=active, checked_until=now)


def launcher_for(profile: SiteProfile, entry: Entry) -> ValidatedRequest:
    """The launcher job of ``entry``'s runs, through the gate (RequestError, LimitExceeded)."""
    config = profile.clusters.get(entry.cluster)
    if config is None or config.recurring not in ("hub", "auto"):
        raise RequestError(f"cluster {quote(entry.cluster)} does not run schedules kept "
                           f"by the hub (the site profile's recurring)")
    run = batch_request(profile, entry.user, cluster=entry.cluster,
                        environment=entry.environment, compute_type=entry.compute_type,
                        options=entry.options, command=("hostname",), job_name="hpcb-batch")
    return launcher_request(profile, run, entry.command)


class Store:
    """The definitions, by (user, definition id), in a private JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[tuple[str, str], Entry] = {}
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            for raw in data.get("entries", []):
                entry = Entry(**{k: raw[k] for k in Entry.__dataclass_fields__ if k in raw})
                self.entries[(entry.user, entry.definition_id)] = entry

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"entries": [asdict(e) for e in self.entries.values()]}, f, indent=1)
        os.replace(tmp, self.path)

    def of(self, user: str) -> list[Entry]:
        return [e for (u, _), e in self.entries.items() if u == user]


class HubRecurring:
    """The hub's schedule keeper: registrations in, launcher jobs out (see the module)."""

    def __init__(self, site: Any, state_file: Path,
                 user_exists: Callable[[str], bool] | None = None) -> None:
        self.site = site
        self.store = Store(state_file)
        #: is the user still one of the hub's? (a user the admin deleted runs nothing)
        self.user_exists = user_exists or (lambda name: True)
        self._task: asyncio.Task | None = None

    @property
    def profile(self) -> SiteProfile:
        return self.site.profile

    async def register(self, entry: Entry) -> Entry:
        """Add or replace ``entry``, checked first (IdentityRefused, RequestError, ...).
        A resumed or rescheduled definition starts counting from now: minutes it was
        paused through do not run."""
        await self.site.identity.check(entry.cluster, entry.user)
        launcher_for(self.profile, entry)
        old = self.store.entries.get((entry.user, entry.definition_id))
        if old is not None and old.active and entry.active and old.schedule == entry.schedule:
            entry = replace(entry, checked_until=old.checked_until, last_run=old.last_run,
                            last_job=old.last_job, last_error=old.last_error)
        self.store.entries[(entry.user, entry.definition_id)] = entry
        self.store.save()
        return entry

    def remove(self, user: str, definition_id: str) -> bool:
        gone = self.store.entries.pop((user, definition_id), None)
        if gone is not None:
            self.store.save()
        return gone is not None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.tick(time.time())
            except Exception:  # one bad minute must not end the schedules
                log.exception("recurring jobs: a minute's check failed")
            now = time.time()
            await asyncio.sleep(60 - now % 60 + 1)  # just after the next minute starts

    async def tick(self, now: float) -> list[Entry]:
        """Submit every due definition's launcher, concurrently; the entries fired."""
        for entry in [e for e in self.store.entries.values() if not self.user_exists(e.user)]:
            log.info("recurring %s of %s: the user is no longer the hub's; removed",
                     entry.definition_id, entry.user)
            self.remove(entry.user, entry.definition_id)
        due = [e for e in self.store.entries.values() if e.due(now)]
        if not due:
            return []
        for entry in due:  # taken before submitting: at most once, also after a crash
            self._set(replace(entry, checked_until=now, last_run=now))
        self.store.save()
        await asyncio.gather(*(self._fire(e, now) for e in due))
        self.store.save()
        return due

    def _set(self, entry: Entry) -> None:
        key = (entry.user, entry.definition_id)
        if key in self.store.entries:  # removed meanwhile: stays removed
            self.store.entries[key] = entry

    async def _fire(self, entry: Entry, now: float) -> None:
        key = (entry.user, entry.definition_id)
        try:
            await self.site.identity.check(entry.cluster, entry.user)
            request = launcher_for(self.profile, entry)
            current = self.store.entries.get(key)
            if current is None or not current.active:
                return  # paused or deleted while we checked
            job = await self.site.client(entry.cluster).submit(
                entry.user, render_script(self.profile, request), request.log_folder)
        except SchedulerUnavailable as exc:  # not asked: the run stays due
            log.warning("recurring %s of %s: scheduler unavailable, next minute: %s",
                        entry.definition_id, entry.user, exc)
            self._set(replace(self.store.entries.get(key, entry),
                              checked_until=entry.checked_until))
            return
        except HpcBridgeError as exc:
            log.warning("recurring %s of %s: not submitted: %s", entry.definition_id,
                        entry.user, exc)
            self._set(replace(self.store.entries.get(key, entry), last_error=str(exc)))
            return
        log.info("recurring %s of %s: launcher job %s", entry.definition_id, entry.user, job)
        self._set(replace(self.store.entries.get(key, entry), last_job=job, last_error=None))


_SERVICES: dict[str, HubRecurring] = {}


def service(profile_path: str, state_file: str) -> HubRecurring:
    """The hub process's one keeper for ``state_file``, made on first use, with a site
    (clients) of its own: it polls no job, so the spawners' poll interval stays theirs."""
    if state_file not in _SERVICES:
        from hpcbridge.site import Site

        _SERVICES[state_file] = HubRecurring(Site.load(profile_path, env=os.environ),
                                             Path(state_file).absolute(), _hub_users())
    return _SERVICES[state_file]


def _hub_users() -> Callable[[str], bool] | None:
    """Whether a name is a user of the running hub (its database), None outside a hub."""
    from jupyterhub import orm
    from jupyterhub.app import JupyterHub

    if not JupyterHub.initialized():
        return None
    app = JupyterHub.instance()
    return lambda name: app.db.query(orm.User).filter_by(name=name).first() is not None


def uses_hub(profile: SiteProfile) -> bool:
    return any(c.recurring in ("hub", "auto") for c in profile.clusters.values())

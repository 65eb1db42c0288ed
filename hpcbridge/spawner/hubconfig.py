"""Hub-side configuration of hpcbridge, for ``jupyterhub_config.py``::

    from hpcbridge.spawner.hubconfig import configure
    configure(c, site_profile="/etc/hpcbridge/site.yaml")

It selects :class:`HpcSpawner`, keeps servers running when the hub stops (a batch hub
must: ``cleanup_servers`` would cancel every user's job), installs the safe port-callback
route and makes sure batchspawner's attribute-setting handler is not routed even if some
other code imported batchspawner (shared design, known defect 1).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from typing import Any

from tornado import web

from hpcbridge.batch import hubcron
from hpcbridge.spawner import estimate, reattach, recurringapi
from hpcbridge.spawner.api import ROUTE, WARM_ROUTE, PortCallbackHandler, WarmPollHandler
from hpcbridge.spawner.sessionspage import ROUTE as SESSIONS_ROUTE
from hpcbridge.spawner.sessionspage import SessionsHandler

#: hpcbridge's JupyterHub page templates (home.html: "Add New Server" opens the form;
#: spawn_pending.html: Cancel stops this server and returns to the form; spawn.html: a
#: Start button of readable contrast)
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

_VULNERABLE = "BatchSpawnerAPIHandler"


def _jupyterhub_api_routes() -> list:
    from jupyterhub import apihandlers

    return apihandlers.default_handlers


def remove_vulnerable_route() -> int:
    """Drop batchspawner's handler from JupyterHub's API routes; how many were removed."""
    routes = _jupyterhub_api_routes()
    keep = [r for r in routes if getattr(r[1], "__name__", "") != _VULNERABLE]
    removed = len(routes) - len(keep)
    routes[:] = keep
    return removed


def assert_safe_routes() -> None:
    """Refuse to start servers on a hub that routes batchspawner's handler."""
    if any(getattr(r[1], "__name__", "") == _VULNERABLE for r in _jupyterhub_api_routes()):
        raise web.HTTPError(
            500, "this hub routes batchspawner's port handler, which lets a user's server "
                 "token set any spawner attribute; call hpcbridge.spawner.hubconfig.configure(c)"
                 " in jupyterhub_config.py")


def configure(c: Any, *, site_profile: str = "", hub_connect_url: str | None = None,
              job_tag: str = "", recurring_state: str = "") -> None:
    """Apply hpcbridge's hub settings to a JupyterHub config object ``c``.

    ``site_profile`` is required (an empty one stops the hub with that word); the
    profile's ``hub:`` section is applied too (connect and bind
    URLs, authenticator, database, TLS, job tag; see :mod:`hubsettings`): a profile
    error, an unreadable TLS key or one that does not match its certificate stops the
    hub here, before it starts, with one line per problem.
    ``job_tag``: for a second hub on the same cluster (e.g. a test hub beside production);
    its jobs are named ``hpcb-nb.<tag>-*`` and its orphan sweep leaves other hubs' alone.
    ``recurring_state``: the file of the schedules the hub keeps for clusters with
    ``recurring: hub`` or ``auto`` (default: ``hpcbridge-recurring.json`` in the hub's
    working folder, beside its database); the hub runs them from its start on.
    """
    recurring_state = os.path.abspath(recurring_state or hubcron.STATE_FILE)
    if not site_profile:
        # never silently the testbed: a hub without its site's profile is misconfigured
        raise SystemExit("hpcbridge: configure(c, site_profile=PATH) needs the path of the "
                         "site profile (hpcbridge profile validate PATH checks it)")
    job_tag = _apply_profile(c, site_profile, job_tag)
    c.JupyterHub.spawner_class = "hpcbridge"
    c.HpcSpawner.site_profile = site_profile
    c.HpcSpawner.job_tag = job_tag
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.extra_handlers = [(ROUTE, PortCallbackHandler),
                                   (WARM_ROUTE, WarmPollHandler),
                                   (estimate.ROUTE, estimate.EstimateHandler),
                                   (SESSIONS_ROUTE, SessionsHandler),
                                   (recurringapi.ROUTE, type(
                                       "RecurringHandler", (recurringapi.RecurringHandler,),
                                       {"profile_path": site_profile,
                                        "state_file": recurring_state}))]
    _start_recurring(site_profile, recurring_state)
    c.Authenticator.post_auth_hook = prewarm_after_login(
        c.Authenticator.get("post_auth_hook") if "post_auth_hook" in c.Authenticator else None)
    c.Spawner.default_url = "/lab"
    _add_templates(c)
    if hub_connect_url:
        c.JupyterHub.hub_connect_url = hub_connect_url
    # re-attach jobs that were still pending when the hub last stopped
    c.JupyterHub.services.append({
        "name": reattach.SERVICE,
        "command": [sys.executable, "-m", "hpcbridge.spawner.reattach"],
        # the service loads the same site profile to sweep orphaned jobs
        "environment": {**{k: v for k, v in os.environ.items() if k.startswith("HPCBRIDGE_")},
                        "HPCBRIDGE_SITE_PROFILE": site_profile,
                        "HPCBRIDGE_JOB_TAG": job_tag},
    })
    c.JupyterHub.load_roles.append({
        "name": reattach.SERVICE, "scopes": reattach.SCOPES, "services": [reattach.SERVICE],
    })
    remove_vulnerable_route()


def _start_recurring(site_profile: str, state_file: str) -> None:
    """Run the schedules the hub keeps from the hub's start (JupyterHub reads this config
    inside its event loop), not only once a server registers one."""
    from hpcbridge.profiles import load_profile

    if not hubcron.uses_hub(load_profile(site_profile)):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # read outside a hub (a test, a tool): the first request starts it
        return
    loop.call_soon(lambda: hubcron.service(site_profile, state_file).start())


def _add_templates(c: Any) -> None:
    """Our page templates before JupyterHub's own folder (the default list), after a
    site's own folders (a list it set): a site's home.html wins over ours."""
    paths = c.JupyterHub.template_paths
    if isinstance(paths, list):
        if TEMPLATES not in paths:
            c.JupyterHub.template_paths = [*paths, TEMPLATES]
    else:
        paths.prepend([TEMPLATES])


def _apply_profile(c: Any, path: str, job_tag: str) -> str:
    from hpcbridge.errors import HpcBridgeError, ProfileError
    from hpcbridge.profiles import load_profile
    from hpcbridge.spawner import hubsettings

    try:
        profile = load_profile(path)
        problems = hubsettings.preflight_profile(profile)
        if not problems:
            return hubsettings.apply_hub(c, profile.hub, job_tag=job_tag)
    except ProfileError as exc:
        problems = list(exc.problems)
    except HpcBridgeError as exc:
        problems = [str(exc)]
    raise SystemExit("hpcbridge: the hub cannot start:\n" + "\n".join(problems))


def prewarm_after_login(previous=None):
    """A post-auth hook that starts the user's warm jobs (if the site keeps a warm pool)
    once her login has gone through; runs the site's own hook first."""

    if getattr(previous, "hpcbridge_prewarm", False):
        return previous  # configure() ran twice

    async def hook(authenticator, handler, auth_model):
        if previous is not None:
            auth_model = previous(authenticator, handler, auth_model)
            if inspect.isawaitable(auth_model):
                auth_model = await auth_model
        if auth_model and auth_model.get("name"):
            task = asyncio.get_running_loop().create_task(
                _prewarm_when_known(handler, auth_model["name"]))
            _TASKS.add(task)
            task.add_done_callback(_TASKS.discard)
        return auth_model

    # a mark on the function object, so that a second configure() finds its own hook
    hook.hpcbridge_prewarm = True  # type: ignore[attr-defined]
    return hook


_TASKS: set = set()


async def _prewarm_when_known(handler, name: str) -> None:
    # the login handler creates the user after this hook returns
    for _ in range(20):
        user = handler.find_user(name)
        if user is not None:
            prewarm = getattr(user.spawner, "prewarm", None)
            if prewarm is not None:
                prewarm()
            return
        await asyncio.sleep(0.25)

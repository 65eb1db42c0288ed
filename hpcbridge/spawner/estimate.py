"""Before submitting: when exactly this request would start, and what it costs.

The spawn form asks :class:`EstimateHandler` as the user changes values; the answer is
two sentences (start, cost) or the gate's problems. The same cost check refuses an
unaffordable request at submit (:func:`unaffordable`, called by ``options.validated``).
Both come from the cluster's adapter: ``estimate_command`` (Slurm's ``sbatch
--test-only``, run as the user; PBS has none, and the form says the start is unknown)
and ``charge_minutes`` against the account's :class:`~hpcbridge.schedulers.base.Budget`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

from jupyterhub.handlers import BaseHandler
from tornado import web

from hpcbridge.errors import HpcBridgeError, RequestError, SchedulerUnavailable, SubmitRefused
from hpcbridge.profiles import JobRequest, validate_request
from hpcbridge.profiles.render import render_script
from hpcbridge.profiles.request import ValidatedRequest
from hpcbridge.schedulers.base import Budget, Estimate
from hpcbridge.spawner import form, guard, jobenv

ROUTE = r"/hpcbridge/estimate"
#: seconds an answer is reused for the same user and values (the form asks on every change)
REUSE = 20.0
#: user -> (time.monotonic(), options, answer): one entry per user, bounded by the users
_LAST: dict[str, tuple[float, tuple, dict]] = {}
#: one dry run at a time per user
_LOCKS: dict[str, asyncio.Lock] = {}


def core_hours(minutes: int, unit: bool = True) -> str:
    """Core-minutes as core-hours for a sentence: ``2 core-hours``, ``1 core-hour``,
    ``0.5 core-hours``; ``unit=False``: the number alone."""
    number = f"{round(minutes / 60, 2):g}"
    if not unit:
        return number
    return f"{number} core-hour{'' if number == '1' else 's'}"


def _tres(budget: Budget) -> str:
    return "cpu" if "cpu" in budget.limit_minutes else "billing"


def cost_sentence(charge: dict[str, int], account: str | None,
                  budget: Budget | None) -> tuple[str, bool]:
    """("this request costs N core-hours; account X has M left", over the budget?)."""
    tres = _tres(budget) if budget is not None else "cpu"
    text = f"this request costs {core_hours(charge.get(tres, charge.get('cpu', 0)))}"
    left = budget.remaining(tres) if budget is not None else None
    if left is None or account is None:
        return text, False
    return (f"{text}; account {account} has {core_hours(left, unit=False)} left",
            charge.get(tres, 0) > left)


def start_sentence(estimate: Estimate | None, can_estimate: bool, now: datetime) -> str:
    """The scheduler's forecast for the form, in its own (cluster) time."""
    if not can_estimate:
        return "estimated start: unknown on this scheduler"
    if estimate is None:
        return "estimated start: the scheduler gave no forecast"
    on = f" on {', '.join(estimate.nodes)}" if estimate.nodes else ""
    if estimate.start <= now + timedelta(minutes=1):
        return f"estimated start: now{on}, if submitted at once"
    wait = round((estimate.start - now).total_seconds() / 60)
    return (f"estimated start: {estimate.start:%Y-%m-%d %H:%M} (cluster time), in about "
            f"{wait} minutes{on}")


def charged_account(request: ValidatedRequest, accounts: list[str]) -> str | None:
    """The account a job is charged to: the one asked for, else the user's only one."""
    return request.account or (accounts[0] if len(accounts) == 1 else None)


async def _cost(site, request: ValidatedRequest) -> tuple[str, bool]:
    accounts = await site.user_accounts(request.cluster, request.user)
    account = charged_account(request, accounts)
    budget = await site.budget(request.cluster, account, request.user) if account else None
    charge = site.client(request.cluster).dialect.charge_minutes(request)
    return cost_sentence(charge, account, budget)


async def unaffordable(site, request: ValidatedRequest) -> str | None:
    """The refusal of a request its account cannot pay for, or None (also when the budget
    cannot be read now: the scheduler enforces it anyway)."""
    text, over = await _cost(site, request)
    return text if over else None


async def _start(site, request: ValidatedRequest) -> str:
    client = site.client(request.cluster)
    if not client.dialect.capabilities.estimates:
        return start_sentence(None, False, datetime.now())
    try:
        found = await client.estimate(request.user, render_script(site.profile, request))
    except SubmitRefused as exc:
        return f"the scheduler would refuse this request: {exc.user_message}"
    except SchedulerUnavailable:
        return "estimated start: the scheduler is not answering right now"
    except HpcBridgeError as exc:
        return f"estimated start: unknown ({exc})"
    return start_sentence(found, True, datetime.now())


async def preview(site, user: str, options: dict[str, str], job_name: str) -> dict:
    """What the form shows for ``options``: {"start", "cost", "over"} or {"problems"}."""
    try:
        request = validate_request(site.profile, JobRequest.from_options(
            options, user=user, job_name=job_name, command=jobenv.launch_command("ENV_FILE")))
    except RequestError as exc:
        problems = exc.problems or (("", str(exc)),)
        return {"problems": [[key, form.sentence(msg)] for key, msg in problems]}
    start, (cost, over) = await asyncio.gather(_start(site, request), _cost(site, request))
    return {"start": form.sentence(start), "cost": form.sentence(cost), "over": over}


async def cached_preview(site, user: str, options: dict[str, str], job_name: str) -> dict:
    """:func:`preview`, one at a time per user, the same values answered again for
    :data:`REUSE` seconds (each dry run is a request to the scheduler's controller)."""
    key = tuple(sorted(options.items()))
    async with _LOCKS.setdefault(user, asyncio.Lock()):
        last = _LAST.get(user)
        if last and last[1] == key and time.monotonic() - last[0] < REUSE:
            return last[2]
        answer = await preview(site, user, options, job_name)
        _LAST[user] = (time.monotonic(), key, answer)
        return answer


class EstimateHandler(BaseHandler):
    """GET ``/hub/hpcbridge/estimate?<the form's fields>``: the logged-in user's own
    request, through the identity and profile gates of a submit; JSON."""

    @web.authenticated
    async def get(self) -> None:
        user = self.current_user
        spawner = getattr(user, "spawner", None)
        if spawner is None or not hasattr(spawner, "site"):
            raise web.HTTPError(404, "no hpcbridge spawner for this user")
        formdata = {k: [v.decode(errors="replace") for v in values]
                    for k, values in self.request.arguments.items()}
        options = form.options_from_form(formdata)
        site = spawner.site
        await guard.check_identity(site, options.get("cluster"), user.name)
        name = jobenv.job_name(user.name, "", spawner.job_tag)
        answer = await cached_preview(site, user.name, options, name)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(answer)

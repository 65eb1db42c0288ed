"""The spawner's options: the spawn form's content and the check of every start's request."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tornado import web

from hpcbridge.errors import RequestError
from hpcbridge.profiles import JobRequest, validate_request
from hpcbridge.spawner import estimate, form, guard, jobenv

if TYPE_CHECKING:
    from hpcbridge.spawner.spawner import HpcSpawner


def checked_in_start(spawner: HpcSpawner, options: dict) -> None:
    """Options are validated in :meth:`HpcSpawner.start`, on every path."""


async def options_form(spawner: HpcSpawner) -> str:
    site, user = spawner.site, spawner.user.name
    several = len(site.profile.clusters) > 1
    # the clusters are asked at once, each as her; one that does not answer is marked in
    # the form, and the others are offered as usual
    asked = await asyncio.gather(*(_cluster_facts(site, name, user, several)
                                   for name in site.profile.clusters))
    spawner.prewarm()  # the user is about to spawn: her warm jobs start while she chooses
    accounts: dict[str, list[str]] = {}
    free, down, ages = {}, {}, []
    for name, (names, availability, trouble) in zip(site.profile.clusters, asked,
                                                   strict=True):
        accounts[name] = names
        # one cached sinfo per cluster for every form
        free.update({(name, p): a for p, a in availability.items()})
        ages.append(site.availability_age(name))
        if trouble:
            down[name] = trouble
    merged = sorted({a for names in accounts.values() for a in names})
    known = [a for a in ages if a is not None]
    return form.render(site.profile, user, accounts if several else merged, spawner.last_end,
                       free, guard.take_refused_form(user),
                       free_age=max(known) if known else None, down=down)


async def _cluster_facts(site, name: str, user: str, several: bool
                         ) -> tuple[list[str], dict, str | None]:
    """(her accounts, availability, why the cluster does not answer or None)."""
    try:
        await guard.check_identity(site, name, user)
    except web.HTTPError as exc:
        if exc.status_code != 503 or not several:
            raise  # a refused identity, or the only cluster: the page says why
        return [], {}, exc.log_message or "its login node does not answer"
    return (await site.user_accounts(name, user), await site.availability(name),
            site.outage(name))


async def validated(spawner: HpcSpawner, command: tuple[str, ...]):
    """The request of this start, checked by the profile's gate (400 and the last
    accepted options put back when refused) and for its user's identity (403)."""
    try:
        request = validate_request(spawner.site.profile, JobRequest.from_options(
            spawner.user_options or {}, user=spawner.user.name,
            job_name=jobenv.job_name(spawner.user.name, spawner.name, spawner.job_tag),
            command=command))
    except RequestError as exc:
        guard.keep_refused_form(spawner, dict(spawner.user_options or {}), exc.problems)
        guard.restore_options(spawner)
        raise guard.Refusal(400, str(exc)) from None
    if spawner.site.outage(request.cluster):
        await spawner.site.recheck(request.cluster)  # it may answer again by now
    outage = guard.outage_refusal(spawner.site, request.cluster)
    if outage is not None:  # before anything is written there (shared design, invariant 6)
        guard.keep_refused_form(spawner, dict(spawner.user_options or {}),
                                (("cluster", outage),))
        guard.restore_options(spawner)
        raise guard.Refusal(503, outage)
    await guard.check_identity(spawner.site, request.cluster, spawner.user.name)
    if refusal := await estimate.unaffordable(spawner.site, request):
        # the scheduler would queue it forever (or refuse it); say so with the numbers
        guard.keep_refused_form(spawner, dict(spawner.user_options or {}),
                                (("account", refusal),))
        guard.restore_options(spawner)
        raise guard.Refusal(400, form.sentence(refusal))
    return request

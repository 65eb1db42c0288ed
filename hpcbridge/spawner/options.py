"""The spawner's options: the spawn form's content and the check of every start's request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpcbridge.errors import RequestError
from hpcbridge.profiles import JobRequest, validate_request
from hpcbridge.spawner import estimate, form, guard, jobenv

if TYPE_CHECKING:
    from hpcbridge.spawner.spawner import HpcSpawner


def checked_in_start(spawner: HpcSpawner, options: dict) -> None:
    """Options are validated in :meth:`HpcSpawner.start`, on every path."""


async def options_form(spawner: HpcSpawner) -> str:
    site, user = spawner.site, spawner.user.name
    for name in site.profile.clusters:  # the form asks each cluster as her
        await guard.check_identity(site, name, user)
    spawner.prewarm()  # the user is about to spawn: her warm jobs start while she chooses
    accounts = sorted({a for name in site.profile.clusters
                       for a in await site.user_accounts(name, user)})
    free, ages = {}, []
    for name in site.profile.clusters:  # one cached sinfo per cluster for every form
        free.update({(name, p): a for p, a in (await site.availability(name)).items()})
        ages.append(site.availability_age(name))
    known = [a for a in ages if a is not None]
    return form.render(site.profile, user, accounts, spawner.last_end, free,
                       guard.take_refused_form(user), free_age=max(known) if known else None)


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
    await guard.check_identity(spawner.site, request.cluster, spawner.user.name)
    if refusal := await estimate.unaffordable(spawner.site, request):
        # the scheduler would queue it forever (or refuse it); say so with the numbers
        guard.keep_refused_form(spawner, dict(spawner.user_options or {}),
                                (("account", refusal),))
        guard.restore_options(spawner)
        raise guard.Refusal(400, form.sentence(refusal))
    return request

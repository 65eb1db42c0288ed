"""How a cluster shows itself: job summary for its repr, dashboard link via the hub."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping

from hpcbridge.jobs import JobInfo, JobState


def hub_dashboard_link(port: int | None, environ: Mapping[str, str] | None = None
                       ) -> str | None:
    """The dashboard through the hub's proxy when running under JupyterHub, else None.

    The scheduler runs in the notebook's kernel, so jupyter-server-proxy in the same
    server reaches its dashboard at localhost:PORT, and the hub routes
    ``JUPYTERHUB_SERVICE_PREFIX`` to that server.
    """
    env = os.environ if environ is None else environ
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX")
    if not prefix or not port:
        return None
    return f"{prefix.rstrip('/')}/proxy/{int(port)}/status"


def jobs_summary(infos: Iterable[JobInfo]) -> str:
    """``2 running, 1 pending (Resources, start ~12:03)``; ``none`` without live jobs."""
    live = [i for i in infos if not i.state.is_terminal]
    if not live:
        return "none"
    counts = Counter(i.state for i in live)
    order = [JobState.RUNNING, JobState.PENDING, *(s for s in JobState
                                                   if s not in (JobState.RUNNING,
                                                                JobState.PENDING))]
    parts = []
    for state in order:
        if counts[state]:
            detail = _pending_detail(live) if state is JobState.PENDING else ""
            parts.append(f"{counts[state]} {state.value}{detail}")
    return ", ".join(parts)


def _pending_detail(live: list[JobInfo]) -> str:
    pending = [i for i in live if i.state is JobState.PENDING]
    words = sorted({i.reason for i in pending if i.reason})
    starts = sorted(i.start_time for i in pending if i.start_time)
    if starts:
        words.append(f"start ~{starts[0]:%H:%M}")
    return f" ({', '.join(words)})" if words else ""

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
    parts = [f"{n} {state.value}" for state, n in sorted(counts.items(), key=lambda x: x[0].value)]
    pending = [i for i in live if i.state is JobState.PENDING]
    reasons = sorted({i.reason for i in pending if i.reason})
    starts = sorted(i.start_time for i in pending if i.start_time)
    detail = ", ".join(reasons)
    if starts:
        detail += f"{', ' if detail else ''}start ~{starts[0]:%H:%M}"
    return ", ".join(parts) + (f" ({detail})" if detail else "")

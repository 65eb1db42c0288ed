"""The submitter's part of a session record: the request as the profile's gate validated
it and the profile's digest (the hub's spawner, the batch submission)."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from hpcbridge.profiles.jobcopy import job_copy_json
from hpcbridge.sessions import record

if TYPE_CHECKING:
    from hpcbridge.profiles import SiteProfile
    from hpcbridge.profiles.request import ValidatedRequest


def profile_digest(profile: SiteProfile, cluster: str) -> str:
    """The digest of the profile as a job on ``cluster`` sees it (its job copy: that
    cluster only, no hub secrets), so a batch run inside a server computes the same one
    from its copy as the hub did."""
    return "sha256:" + hashlib.sha256(job_copy_json(profile, cluster).encode()).hexdigest()


def request_part(req: ValidatedRequest) -> dict[str, Any]:
    return {"preset": req.preset, "cluster": req.cluster, "partition": req.partition,
            "account": req.account, "cores": req.cores, "memory": str(req.memory),
            "gpus": req.gpus, "walltime": str(req.walltime), "environment": req.environment,
            "nodes": req.nodes}


def session_of(profile: SiteProfile, req: ValidatedRequest, kind: str,
               **extra: Any) -> dict[str, Any]:
    """A new session's request part (a new id) for the validated ``req``."""
    env = profile.clusters[req.cluster].environments[req.environment]
    return json.loads(record.session_env(
        record.new_id(), kind, user=req.user, site=profile.site, cluster=req.cluster,
        profile_digest=profile_digest(profile, req.cluster), request=request_part(req),
        extra={"job_name": req.job_name,
               "container_image": env.container.image if env.container else None, **extra}))

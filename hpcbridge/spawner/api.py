"""The port callback: how a notebook job tells the hub which port it listens on.

batchspawner's own handler (``/hub/api/batchspawner``) sets *every* key of the JSON body
as an attribute of the spawner, so a user holding her server's token could overwrite
``batch_query_cmd`` and have the hub run it (shared design, known defect 1). This handler
answers on the same route, so batchspawner's single-user wrapper works unchanged, and:

- accepts exactly ``{"port": <int 1024..65535>}`` and nothing else;
- only from the API token written into the environment of the server's job, only while
  a start of that server waits for its port (503, "retry", while a server that was
  starting when the hub stopped has not been started again by the re-attach service);
- sets nothing on the spawner from the body: it resolves the spawner's own port future,
  and hands over the token the job proved to hold (after a re-attach it becomes the
  server's token again; see ``HpcSpawner.port_reported``).
- reads at most :data:`MAX_BODY` bytes nested at most :data:`MAX_DEPTH` deep (413 / 400
  otherwise, before the JSON parser sees it), and quotes at most a short prefix of a
  bad value in its answer.

:func:`hpcbridge.spawner.hubconfig.configure` installs it and removes batchspawner's
handler from JupyterHub's route table if anything imported batchspawner.
"""

from __future__ import annotations

import hmac
import json

from jupyterhub.apihandlers import APIHandler
from tornado import web

from hpcbridge.errors import quote
from hpcbridge.spawner.jobenv import token_digest

ROUTE = r"/api/batchspawner"
#: the callbacks' bodies are a few dozen bytes; anything near this is not one of them
MAX_BODY = 4096
#: {"port": N} and {"id": ..., "secret": ...} are one level deep
MAX_DEPTH = 2


def nesting_depth(raw: bytes) -> int:
    """How deeply JSON arrays and objects nest in ``raw`` (brackets inside strings do not
    count), without parsing it: a deep body must not reach the recursive parser."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def json_body(raw: bytes, max_bytes: int = MAX_BODY, max_depth: int = MAX_DEPTH) -> object:
    """A small JSON body, or HTTP 413 (too long) / 400 (too deep, not JSON)."""
    if len(raw) > max_bytes:
        raise web.HTTPError(413, f"the body has {len(raw)} bytes; at most {max_bytes} "
                                 "are accepted")
    if nesting_depth(raw) > max_depth:
        raise web.HTTPError(400, f"the body nests deeper than {max_depth} levels")
    try:
        return json.loads(raw or b"null")
    except ValueError:  # also UnicodeDecodeError
        raise web.HTTPError(400, "the body is not JSON") from None


def parse_port_body(body: object) -> int:
    """The port from a callback body; ValueError for anything but {"port": int}."""
    if not isinstance(body, dict) or set(body) != {"port"}:
        keys = quote(sorted(body)) if isinstance(body, dict) else type(body).__name__
        raise ValueError(f"the body must be exactly {{\"port\": N}}, got {keys}")
    port = body["port"]
    if type(port) is not int or not 1024 <= port <= 65535:
        raise ValueError(f"port must be an integer from 1024 to 65535, got {quote(port)}")
    return port


class PortCallbackHandler(APIHandler):
    """POST {"port": N} from a starting notebook server."""

    async def post(self) -> None:
        user = self.current_user
        if user is None or not hasattr(user, "spawners"):
            raise web.HTTPError(403, "a server's API token is required")
        try:
            port = parse_port_body(json_body(self.request.body))
        except ValueError as exc:
            raise web.HTTPError(400, str(exc)) from None
        token = self.get_auth_token() or ""
        spawner = next((s for s in user.spawners.values()
                        if getattr(s, "accepts_port_from", None) and s.accepts_port_from(token)),
                       None)
        if spawner is None and _awaits_reattach(user, token):
            # its server was starting when the hub stopped; the re-attach service starts
            # it again in a moment, and the launcher retries
            raise web.HTTPError(503, "the hub has not started this server again yet; retry")
        if spawner is None:
            self.log.info("port callback refused for %s (token %s): servers %s", user.name,
                          token_digest(token)[:8], {
                name: (type(s).__name__, getattr(s, "_port", None),
                       getattr(s, "_detached", None), (getattr(s, "token_digest", "") or "")[:8],
                       getattr(s, "reported_port", None))
                for name, s in user.spawners.items()})
            raise web.HTTPError(
                403, "this token belongs to no server of yours that is waiting for its port")
        # the token goes to the spawner: after a re-attach it is the server's token again
        spawner.port_reported(port, token)
        self.set_status(201)
        self.finish(json.dumps({"message": f"port {port} accepted"}))


def _awaits_reattach(user, token: str) -> bool:
    """Is ``token`` the one saved for a job of ``user`` that has not reported its port?"""
    if not token:
        return False
    digest = token_digest(token)
    states = [s.state or {} for s in user.orm_user.orm_spawners.values()]
    return any(not state.get("reported_port") and hmac.compare_digest(
                   str(state.get("token_digest") or ""), digest) for state in states)


WARM_ROUTE = r"/api/hpcbridge/warm"


def parse_warm_body(body: object) -> tuple[str, str]:
    """(id, secret) from a warm job's poll; ValueError for anything else."""
    if not isinstance(body, dict) or set(body) != {"id", "secret"}:
        raise ValueError("the body must be exactly {\"id\": ..., \"secret\": ...}")
    warm_id, secret = body["id"], body["secret"]
    if not (isinstance(warm_id, str) and isinstance(secret, str)
            and 0 < len(warm_id) <= 64 and 0 < len(secret) <= 128):
        raise ValueError("id and secret must be short strings")
    return warm_id, secret


class WarmPollHandler(web.RequestHandler):
    """POST {"id", "secret"} from a warm-pool job: long poll for a server to become.

    Authenticated by the job's own secret (see :mod:`hpcbridge.spawner.warm`), not by a
    cookie or a hub token, so there is no cross-site request to guard against: the xsrf
    check does not apply. Answers 200 {"env": {...}} (the server's environment, for the
    job's own user only), 204 (no spawn yet: ask again), 410 (not a warm job of this hub:
    end), 400 (malformed).
    """

    def check_xsrf_cookie(self) -> None:
        return None

    async def post(self) -> None:
        from hpcbridge.spawner import warm

        try:
            warm_id, secret = parse_warm_body(json_body(self.request.body))
        except ValueError as exc:
            raise web.HTTPError(400, str(exc)) from None
        try:
            env = await warm.wait_for_owner(warm_id, secret)
        except warm.UnknownWarmJob:
            self.set_status(410)
            self.finish({"message": "not a warm job of this hub"})
            return
        if env is None:
            self.set_status(204)
            self.finish()
            return
        self.set_header("Cache-Control", "no-store")
        self.finish({"env": env})

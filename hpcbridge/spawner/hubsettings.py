"""The profile's ``hub:`` section as JupyterHub configuration (used by ``configure``).

Pure: it reads a :class:`hpcbridge.profiles.Hub` and sets values on a traitlets config
object, nothing else. What a key means for JupyterHub:

============== ===================================================================
connect_url    ``JupyterHub.hub_connect_url`` (how compute nodes reach the hub)
bind_url       ``JupyterHub.bind_url`` (what people open)
authenticator  ``JupyterHub.authenticator_class`` and that class's settings
db_url         ``JupyterHub.db_url``
tls            ``JupyterHub.ssl_cert`` / ``ssl_key``
job_tag        ``HpcSpawner.job_tag`` (and the orphan sweep's prefix)
warm_pool      read by the spawner from the profile itself
============== ===================================================================

:func:`preflight` checks what would otherwise fail only after the hub started (a TLS
key that does not match its certificate, unreadable files), with one clear line each.
"""

from __future__ import annotations

import os
import ssl
from importlib.metadata import entry_points
from typing import Any

from hpcbridge.errors import HpcBridgeError
from hpcbridge.profiles.model import Authenticator, Hub, SiteProfile
from hpcbridge.transport.sshca import CaKeyError, check_ca_key

#: short names of authenticators a center is likely to use -> JupyterHub's class spelling
AUTHENTICATORS = {
    # jupyterhub-ldapauthenticator, with a directory outage told apart (ldapauth.py)
    "ldap": "hpcbridge.spawner.ldapauth.DirectoryAuthenticator",
    "pam": "jupyterhub.auth.PAMAuthenticator",
}


def authenticator_class(auth: Authenticator) -> tuple[str, str]:
    """(value for ``JupyterHub.authenticator_class``, the class's config section name)."""
    ref = AUTHENTICATORS.get(auth.kind, auth.kind)
    if "." in ref:
        return ref, ref.rsplit(".", 1)[1]
    # an entry point name of JupyterHub's own group, e.g. "github"
    found = [ep for ep in entry_points(group="jupyterhub.authenticators") if ep.name == ref]
    if not found:
        known = sorted({*AUTHENTICATORS, *(ep.name for ep in
                                           entry_points(group="jupyterhub.authenticators"))})
        raise HpcBridgeError(f"hub.authenticator.kind: no authenticator {auth.kind!r} "
                             f"(known here: {', '.join(known)}; or give module.Class)")
    return ref, found[0].value.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def apply_hub(c: Any, hub: Hub, *, job_tag: str = "") -> str:
    """Set ``c`` from ``hub``; the job tag in effect (``job_tag`` argument first)."""
    if hub.connect_url:
        c.JupyterHub.hub_connect_url = str(hub.connect_url)
    if hub.bind_url:
        c.JupyterHub.bind_url = str(hub.bind_url)
    if hub.db_url:
        c.JupyterHub.db_url = str(hub.db_url)
    if hub.tls:
        c.JupyterHub.ssl_cert = os.path.expanduser(hub.tls.cert)
        c.JupyterHub.ssl_key = os.path.expanduser(hub.tls.key)
    if hub.authenticator:
        ref, section = authenticator_class(hub.authenticator)
        c.JupyterHub.authenticator_class = ref
        for key, value in hub.authenticator.options.items():
            setattr(c[section], key, value)
    return job_tag or hub.job_tag or ""


def preflight_profile(profile: SiteProfile) -> list[str]:
    """:func:`preflight` of the hub, plus each cluster's SSH user CA key (0600)."""
    problems = preflight(profile.hub)
    for name, cluster in profile.clusters.items():
        t = cluster.transport
        if t.kind == "ssh" and t.user_ca_key:
            try:
                check_ca_key(os.path.expanduser(t.user_ca_key))
            except CaKeyError as exc:
                problems.append(f"clusters.{name}.transport.user_ca_key: {exc}")
    return problems


def preflight(hub: Hub) -> list[str]:
    """Problems that would stop the hub after it started, found before: one line each."""
    problems = []
    if hub.tls:
        cert, key = (os.path.expanduser(p) for p in (hub.tls.cert, hub.tls.key))
        for what, path in (("certificate", cert), ("key", key)):
            if not os.access(path, os.R_OK):
                problems.append(f"hub.tls: the {what} {path} cannot be read")
        if not problems:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
            except (ssl.SSLError, ValueError) as exc:
                problems.append(f"hub.tls: the key {key} does not match the certificate "
                                f"{cert} ({exc.__class__.__name__})")
        if not problems and os.stat(key).st_mode & 0o077:
            problems.append(f"hub.tls: the key {key} is readable by others; chmod 600 it")
    if hub.authenticator:
        try:
            authenticator_class(hub.authenticator)
        except HpcBridgeError as exc:
            problems.append(str(exc))
    return problems

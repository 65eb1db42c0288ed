"""The profile's hub section as JupyterHub configuration: every key, and what stops a hub."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
from traitlets.config import Config

from hpcbridge.profiles import load_profile_text
from hpcbridge.spawner import hubsettings
from hpcbridge.spawner.hubconfig import configure

BASE = """\
site: s
clusters:
  c:
    scheduler: slurm
    partitions:
      debug: {max_walltime: "00:30:00", cores_per_node: 8, memory_per_node: 16G}
hub:
"""


def hub_of(text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return load_profile_text(BASE + text, "p.yaml", env or {}).hub


def make_cert(tmp: Path, name: str) -> tuple[str, str]:
    """A self-signed certificate and its key, as PEM files (key 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return str(cert_path), str(key_path)


def test_every_key_reaches_jupyterhub(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "hub")
    hub = hub_of(f"""\
  connect_url: http://10.0.0.1:8081
  bind_url: https://jupyter.example.org
  db_url: postgresql+psycopg://hub:${{DBPW}}@db/hub
  tls: {{cert: {cert}, key: {key}}}
  job_tag: test
  authenticator:
    kind: ldap
    options:
      server_address: ldap.example.org
      bind_dn_template: ["uid={{username}},ou=people,dc=example,dc=org"]
      tls_strategy: on_connect
""", {"DBPW": "s3cret"})
    c = Config()
    assert hubsettings.apply_hub(c, hub) == "test"
    assert c.JupyterHub.hub_connect_url == "http://10.0.0.1:8081"
    assert c.JupyterHub.bind_url == "https://jupyter.example.org"
    assert c.JupyterHub.db_url == "postgresql+psycopg://hub:s3cret@db/hub"
    assert (c.JupyterHub.ssl_cert, c.JupyterHub.ssl_key) == (cert, key)
    assert c.JupyterHub.authenticator_class == \
        "hpcbridge.spawner.ldapauth.DirectoryAuthenticator"
    ldap = c.DirectoryAuthenticator
    assert ldap.server_address == "ldap.example.org"
    assert ldap.bind_dn_template == ["uid={username},ou=people,dc=example,dc=org"]
    assert ldap.tls_strategy == "on_connect"
    assert hubsettings.apply_hub(Config(), hub, job_tag="explicit") == "explicit"
    assert hubsettings.preflight(hub) == []


def test_pam_and_dotted_classes() -> None:
    c = Config()
    pam = "  authenticator: {kind: pam, options: {open_sessions: false}}\n"
    hubsettings.apply_hub(c, hub_of(pam))
    assert c.JupyterHub.authenticator_class == "jupyterhub.auth.PAMAuthenticator"
    assert c.PAMAuthenticator.open_sessions is False
    c = Config()
    hubsettings.apply_hub(c, hub_of("  authenticator: {kind: my.site.Auth}\n"))
    assert c.JupyterHub.authenticator_class == "my.site.Auth"


def test_an_unknown_authenticator_is_one_clear_line() -> None:
    [problem] = hubsettings.preflight(hub_of("  authenticator: {kind: ldpa}\n"))
    assert problem.startswith("hub.authenticator.kind: no authenticator 'ldpa'")


def test_a_key_that_does_not_match_its_certificate_stops_the_hub(tmp_path: Path) -> None:
    cert, _ = make_cert(tmp_path, "a")
    _, other_key = make_cert(tmp_path, "b")
    [problem] = hubsettings.preflight(hub_of(f"  tls: {{cert: {cert}, key: {other_key}}}\n"))
    assert "does not match the certificate" in problem
    [problem] = hubsettings.preflight(hub_of(f"  tls: {{cert: {cert}, key: /nonexistent.key}}\n"))
    assert "/nonexistent.key cannot be read" in problem
    key = tmp_path / "a.key"
    os.chmod(key, 0o644)
    [problem] = hubsettings.preflight(hub_of(f"  tls: {{cert: {cert}, key: {key}}}\n"))
    assert "readable by others" in problem


def test_bad_hub_keys_are_profile_errors_with_positions() -> None:
    from hpcbridge.errors import ProfileError

    with pytest.raises(ProfileError) as info:
        hub_of("  db_urll: sqlite:///x\n  tls: {cert: a}\n")
    text = str(info.value)
    assert "p.yaml:8:3: unknown key 'db_urll' in hub — did you mean 'db_url'?" in text
    assert "p.yaml:9:3: hub.tls: missing required key 'key'" in text


def test_configure_applies_the_profile_or_stops_with_its_problems(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(BASE + "  job_tag: t2\n  db_url: sqlite:///hub.sqlite\n")
    c = Config()
    configure(c, site_profile=str(good))
    assert c.HpcSpawner.job_tag == "t2" and c.JupyterHub.db_url == "sqlite:///hub.sqlite"
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE + "  tls: {cert: /nonexistent.crt, key: /nonexistent.key}\n")
    with pytest.raises(SystemExit) as info:
        configure(Config(), site_profile=str(bad))
    assert "the certificate /nonexistent.crt cannot be read" in str(info.value.code)


def test_a_hub_without_a_site_profile_does_not_start() -> None:
    from hpcbridge.errors import HpcBridgeError
    from hpcbridge.spawner.registry import site_for

    with pytest.raises(SystemExit) as info:
        configure(Config())
    assert "needs the path of the site profile" in str(info.value.code)
    with pytest.raises(HpcBridgeError, match=r"HpcSpawner\.site_profile is not set"):
        site_for("", 30.0)

"""The demo of ``./dev hub`` running beside the test session, watched (issue 14 item 8).

``./dev test`` must leave a running ``./dev hub`` alone: its testbed (containers, network,
volumes), its hub, its users' homes. With ``HPCBRIDGE_TEST_BESIDE_DEMO=1`` (CI sets it)
the session starts that demo first, exactly as ``./dev hub`` does (``hpcbridge up`` with
none of the session's testbed or hub settings in its environment: the default testbed
name, state folder, hub folder and port 8000), records what the session must not change,
runs every other test beside it, and at its very end (after the session's own testbed went
down) checks that nothing changed and that alice still logs in and spawns on the demo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ENABLE = "HPCBRIDGE_TEST_BESIDE_DEMO"
#: what ``./dev hub`` prints (README)
DEMO_URL = "http://127.0.0.1:8000"
USER = "alice"
#: the session's own settings; the demo of a developer's shell has none of them
SESSION_ONLY = ("HPCBRIDGE_TESTBED_NAME", "HPCBRIDGE_TESTBED_DIR", "HPCBRIDGE_HUB_DIR",
                "HPCBRIDGE_TESTBED_SLURM", "HPCBRIDGE_TESTBED_KEEP")


def enabled() -> bool:
    return os.environ.get(ENABLE) == "1"


def demo_env() -> dict[str, str]:
    """The environment ``./dev hub`` runs with in the shell that started ``./dev test``."""
    return {k: v for k, v in os.environ.items() if k not in SESSION_ONLY}


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("hpcbridge")
    return subprocess.run([str(exe), *args], env=demo_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


@dataclass
class Snapshot:
    """What the session must leave as it was."""

    containers: dict[str, tuple[str, str]]  # name -> (id, started at)
    networks: list[str]
    volumes: list[str]
    hub_pid: str
    #: alice's home on the demo: path -> (size, mtime)
    home: dict[str, str] = field(default_factory=dict)

    @classmethod
    def take(cls, tb, hub_dir: Path) -> Snapshot:  # type: ignore[no-untyped-def]
        from slurm_testbed.cluster import NAME_LABEL

        client = tb.engine.docker_client()
        containers = {}
        for c in client.containers.list(all=True, filters={"label": f"{NAME_LABEL}={tb.name}"}):
            containers[c.name] = (c.id, f"{c.status} since {c.attrs['State']['StartedAt']}")
        networks = sorted(f"{n.name} {n.id}" for n in client.networks.list()
                          if n.name == tb.network_name)
        volumes = sorted(v.name for v in client.volumes.list(
            filters={"label": f"{NAME_LABEL}={tb.name}"}))
        listing = tb.login_exec(USER, ["find", f"/home/{USER}", "-printf", r"%P|%s|%T@\n"])
        assert listing.returncode == 0, listing.stderr.decode()
        home = dict(line.split("|", 1) for line in listing.stdout.decode().splitlines())
        pid = (hub_dir / "jupyterhub.pid").read_text().strip()
        return cls(containers, networks, volumes, pid, home)

    def differences(self, later: Snapshot) -> list[str]:
        out = []
        for name in ("containers", "networks", "volumes", "hub_pid"):
            if getattr(self, name) != getattr(later, name):
                out.append(f"{name}: {getattr(self, name)} -> {getattr(later, name)}")
        changed = sorted(p for p in set(self.home) | set(later.home)
                         if self.home.get(p) != later.home.get(p))
        if changed:
            out.append(f"alice's home on the demo: {len(changed)} paths new, gone or changed: "
                       f"{changed[:20]}")
        return out


class Demo:
    """The demo hub and testbed, started like ``./dev hub``."""

    def __init__(self) -> None:
        from slurm_testbed.cluster import DEFAULT_NAME, Testbed

        self.testbed = Testbed(name=DEFAULT_NAME)
        # where `hpcbridge up` keeps the hub's state without HPCBRIDGE_HUB_DIR
        self.hub_dir = Path.home() / ".local" / "state" / "hpcbridge" / "hub"
        self.status: dict = {}
        self.before: Snapshot | None = None

    def running(self) -> bool:
        return bool(self.testbed.status()["containers"]) or cli("status").returncode == 0

    def start(self) -> None:
        up = cli("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"hub: {DEMO_URL}" in up.stdout and f"login: {USER} / " in up.stdout, up.stdout
        st = cli("status", "--json", timeout=60)
        assert st.returncode == 0, st.stdout + st.stderr
        self.status = json.loads(st.stdout)
        assert self.status["hub_url"] == DEMO_URL, self.status
        self.before = self.snapshot()

    def snapshot(self) -> Snapshot:
        return Snapshot.take(self.testbed, self.hub_dir)

    def api(self):  # type: ignore[no-untyped-def]
        from tests.testbed.hubtools import HubApi

        return HubApi(self.status["hub_url"], self.status["admin_token"])

    def stop(self) -> None:
        """What ``./dev down`` does, but leaving the container engine's API service to
        the session's own testbed (``.ci/run`` runs ``./dev down`` after the session)."""
        from hpcbridge.hubrun import Hub

        Hub(self.hub_dir).down()
        self.testbed.down()

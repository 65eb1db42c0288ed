"""The container engine under the testbed: podman (served as a Docker API) or Docker.

testcontainers speaks the Docker API. With podman we start ``podman system service`` on a
socket of our own and point ``DOCKER_HOST`` at it; with a Docker engine we use it as is.
Image builds and ``exec`` go through the engine's own command line (argv lists, no shell),
which streams progress and stdin better than the API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from slurm_testbed.errors import TestbedError

REPO = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = REPO / "containers" / "containers.conf"

INSTALL_HINT = (
    "no container engine found: install podman (Debian: apt-get install podman runc "
    "debootstrap netavark aardvark-dns) or run a Docker engine and set DOCKER_HOST"
)


@dataclass(frozen=True)
class Engine:
    """One container engine: its CLI and the Docker-API socket testcontainers uses."""

    kind: str  # "podman" | "docker"
    cli: str
    docker_host: str

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = self.docker_host
        # No image can be pulled for testcontainers' reaper; down removes everything itself.
        env.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
        if self.kind == "podman":
            env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
        return env

    def run(
        self, *args: str, check: bool = True, capture: bool = True, timeout: float | None = 600,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        argv = [self.cli, *args]
        proc = subprocess.run(
            argv, env=self.env(), input=input, timeout=timeout, check=False,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
        )
        if check and proc.returncode != 0:
            err = (proc.stderr or b"").decode(errors="replace").strip()
            raise TestbedError(
                f"{' '.join(argv[:4])} ... failed ({proc.returncode}): {err[-2000:]}")
        return proc

    def docker_client(self):  # -> docker.DockerClient (imported lazily)
        import docker  # type: ignore[import-untyped]

        return docker.DockerClient(base_url=self.docker_host, timeout=120)


def detect(state_dir: Path) -> Engine:
    """Find podman or Docker; for podman make sure its API service is running."""
    wanted = os.environ.get("HPCBRIDGE_ENGINE", "")
    podman = shutil.which("podman")
    if podman and wanted in ("", "podman"):
        return _podman_engine(podman, state_dir)
    docker_cli = shutil.which("docker")
    if docker_cli and wanted in ("", "docker"):
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        probe = subprocess.run([docker_cli, "info"], capture_output=True, timeout=30,
                               check=False)
        if probe.returncode == 0:
            return Engine("docker", docker_cli, host)
    raise TestbedError(INSTALL_HINT)


def _podman_engine(podman: str, state_dir: Path) -> Engine:
    sock = state_dir / "podman.sock"
    engine = Engine("podman", podman, f"unix://{sock}")
    if _api_alive(engine):
        return engine
    state_dir.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)
    with open(state_dir / "podman-service.log", "ab") as log:
        proc = subprocess.Popen(
            [podman, "system", "service", "--time=0", engine.docker_host],
            env=engine.env(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this command; `testbed down` stops it
        )
    (state_dir / "podman-service.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _api_alive(engine):
            return engine
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise TestbedError(
        f"podman system service did not start; see {state_dir / 'podman-service.log'}"
    )


def _api_alive(engine: Engine) -> bool:
    sock = engine.docker_host.removeprefix("unix://")
    if not os.path.exists(sock):
        return False
    try:
        engine.docker_client().ping()
        return True
    except Exception:  # noqa: BLE001 -- any failure means "not serving yet"
        return False


def stop_service(state_dir: Path) -> None:
    """Stop the podman API service this package started, if any."""
    pidfile = state_dir / "podman-service.pid"
    if not pidfile.exists():
        return
    try:
        os.kill(int(pidfile.read_text()), 15)
    except (ProcessLookupError, ValueError):
        pass
    pidfile.unlink(missing_ok=True)
    (state_dir / "podman.sock").unlink(missing_ok=True)

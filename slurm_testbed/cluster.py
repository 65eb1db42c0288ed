"""Start, inspect, use and stop the containerized SLURM cluster.

Topology (shared design, "Testbed topology"): ``db`` (MariaDB + slurmdbd), ``ctl``
(slurmctld), ``login`` (sshd, Slurm client, torque wrappers) and ``c1..cN`` (slurmd), on a
network of their own, sharing ``/home``, on one of the Slurm generations of generations.py
(24.11 on Debian trixie by default, 22.05 on bookworm); ``/home/dave``
(config.SMALL_HOME_USER) is a small tmpfs of its own, shared the same way, for disk-full
faults. Containers are found again by name, so every command (``up``, ``status``,
``exec``, ``down``) works from a fresh process.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slurm_testbed.errors import TestbedError

from . import config, generations, images, ldap
from . import engine as engines
from .engine import REPO, Engine

DEFAULT_NAME = "hpcbridge-testbed"
#: role of a container ("db", "ctl", "login", "c1", ...), or "home" / "network"
LABEL = "org.hpcbridge.testbed"
#: which testbed a container, network or volume belongs to (several may run side by side)
NAME_LABEL = "org.hpcbridge.testbed.name"
SRC_MOUNT = "/opt/hpcbridge/src"
PYTHON = "/opt/hpcbridge/venv/bin/python"


def testbed_name() -> str:
    """``HPCBRIDGE_TESTBED_NAME`` picks one of several testbeds (default: the only one)."""
    return os.environ.get("HPCBRIDGE_TESTBED_NAME", DEFAULT_NAME)


def default_state_dir(name: str | None = None) -> Path:
    name = name or testbed_name()
    env = os.environ.get("HPCBRIDGE_TESTBED_DIR")
    if env and name == testbed_name():
        return Path(env)
    leaf = "testbed" if name == DEFAULT_NAME else name
    return Path.home() / ".local" / "state" / "hpcbridge" / leaf


def _stderr_progress(msg: str) -> None:
    print(f"[testbed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class TestbedInfo:
    """What a client of the testbed needs: addresses, keys, users. Saved as state.json."""

    __test__ = False

    nodes: list[str]
    login_ip: str
    ssh_port: int
    gateway_ip: str
    hub_key: str
    known_hosts: str
    users: dict[str, str] = field(default_factory=lambda: dict(config.USERS))
    cluster: str = config.CLUSTER
    containers: dict[str, str] = field(default_factory=dict)
    #: the checkout mounted at /opt/hpcbridge/src (a testbed of another checkout is not reused)
    src: str = str(REPO)
    #: the Slurm generation it runs (generations.GENERATIONS) and the exact version
    #: its login node's ``sinfo --version`` printed at start; a state file written before
    #: there were generations has no ``slurm``: its testbed ran 22.05
    slurm: str = "22.05"
    slurm_version: str = ""


class Testbed:
    """The testbed on this machine's container engine."""

    __test__ = False

    def __init__(self, state_dir: Path | None = None,
                 progress: Callable[[str], None] = _stderr_progress,
                 name: str | None = None, slurm: str | None = None,
                 cpus_per_node: int = config.CPUS_PER_NODE) -> None:
        self.name = name or testbed_name()
        #: CPUs each compute node declares at `up` (more only for load benchmarks)
        self.cpus_per_node = cpus_per_node
        #: the generation `up` starts: ``slurm``, else HPCBRIDGE_TESTBED_SLURM, else the
        #: running testbed's (when neither asks for one), else the default
        self.generation = generations.get(slurm)
        self._generation_asked = bool(slurm or os.environ.get("HPCBRIDGE_TESTBED_SLURM"))
        self.state_dir = state_dir or default_state_dir(self.name)
        #: images and the engine's API socket are shared by every testbed of this machine
        self.shared_dir = self.state_dir.parent
        self.progress = progress
        self._engine: Engine | None = None

    # -- engine and naming -------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = engines.detect(self.shared_dir)
        return self._engine

    def container_name(self, role: str) -> str:
        return f"{self.name}-{role}"

    @property
    def network_name(self) -> str:
        return self.name

    @property
    def home_volume(self) -> str:
        return f"{self.name}-home"

    @property
    def small_home_volume(self) -> str:
        return f"{self.name}-home-{config.SMALL_HOME_USER}"

    def _labels(self, role: str) -> dict[str, str]:
        return {LABEL: role, NAME_LABEL: self.name}

    @property
    def hub_key(self) -> Path:
        """The hub's SSH key: may log into the login node as every test user."""
        return self.state_dir / "id_ed25519"

    def profile_env(self, prefix: str = "HPCBRIDGE_TESTBED") -> dict[str, str]:
        """Variables that site_profiles/testbed.yaml expands to reach this testbed
        (``prefix``: the second cluster's of testbed-two-clusters.yaml is
        ``HPCBRIDGE_TESTBED2``)."""
        info = self.info()
        return {
            f"{prefix}_SSH_HOST": info.login_ip,
            f"{prefix}_SSH_PORT": str(info.ssh_port),
            f"{prefix}_DIR": str(self.state_dir),
        }

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def info(self) -> TestbedInfo:
        try:
            return TestbedInfo(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise TestbedError("the testbed is not up (run: hpcbridge testbed up)") from exc

    def _containers(self) -> list:
        client = self.engine.docker_client()
        return client.containers.list(all=True, filters={"label": f"{NAME_LABEL}={self.name}"})

    # -- exec ----------------------------------------------------------------------------
    def exec(self, role: str, argv: Sequence[str], *, user: str | None = None,
             input: bytes | None = None, timeout: float | None = 120,
             check: bool = False, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[bytes]:
        """Run argv in a container (as root or as user), no shell involved."""
        opts = ["exec", "-i"]
        command = list(argv)
        if user:
            home = config.home_of(user)
            opts += ["--workdir", home, "--env", f"HOME={home}", "--env", f"USER={user}"]
            if user != "root":
                # users come from the directory (NSS), which the engine's --user does not
                # ask: runuser does, and sets her groups too
                command = ["runuser", "-u", user, "--", *command]
        for key, value in (env or {}).items():
            opts += ["--env", f"{key}={value}"]
        proc = self.engine.run(*opts, self.container_name(role), *command,
                               check=False, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise TestbedError(
                f"{' '.join(argv)} on {role} as {user or 'root'} failed ({proc.returncode}): "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        return proc

    def login_exec(
        self, user: str, argv: Sequence[str], **kw
    ) -> subprocess.CompletedProcess[bytes]:
        return self.exec("login", argv, user=user, **kw)

    # -- up ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One `up` or `down` at a time on this machine: never two clusters fighting."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.progress("another `testbed up/down` is running; waiting for it")
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def up(self, nodes: int = 3) -> TestbedInfo:
        if nodes < 1 or nodes > 16:
            raise TestbedError(f"--nodes must be between 1 and 16, not {nodes}")
        with self._exclusive():
            return self._up(nodes)

    def _up(self, nodes: int) -> TestbedInfo:
        existing = self._containers()
        if existing and not self._generation_asked:
            # `hpcbridge up` after `testbed up --slurm 24.11` keeps that generation
            with contextlib.suppress(TestbedError):
                self.generation = generations.get(self.info().slurm)
        if existing:
            if self.reusable() and self._images_current():
                info = self.info()
                self.progress(f"already up with {len(info.nodes)} nodes (Slurm "
                              f"{info.slurm_version or info.slurm}); reusing it")
                return info
            self.progress("a broken, half-started, out-of-date (containers/ changed), other "
                          "generation's or other checkout's testbed exists; removing it first")
            self._down()
        elif any(self.leftovers().values()):  # an `up` stopped before its first container
            self._down(quiet=True)
        started = time.monotonic()
        refs = images.ensure_images(self.engine, self.generation, self.shared_dir / "build",
                                    self.progress)
        try:
            info = self._start(refs, nodes)
        except BaseException as exc:
            self._report_failure(exc)
            self._down(quiet=True)
            raise
        self.progress(f"up: Slurm {info.slurm_version}, {len(info.nodes)} compute nodes idle "
                      f"in {time.monotonic() - started:.1f} s")
        return info

    def _start(self, refs: dict[str, str], nodes: int) -> TestbedInfo:
        from testcontainers.core.network import Network

        etc = self.state_dir / "etc"
        shutil.rmtree(etc, ignore_errors=True)
        hub = config.write_run_config(etc, self.hub_key, nodes, self.generation,
                                      self.cpus_per_node)
        self._testcontainers_env()

        client = self.engine.docker_client()
        client.volumes.create(self.home_volume, labels=self._labels("home"))
        client.volumes.create(self.small_home_volume, driver="local",
                              driver_opts=config.small_home_volume_options(),
                              labels=self._labels("home"))
        network = Network(docker_network_kw={"labels": self._labels("network")})
        network.name = self.network_name
        network.create()
        names = config.node_names(nodes)
        hosts = self._plan_addresses(["ldap", "db", "ctl", *names, "login"])

        ldap.write_directory(etc, self.state_dir)
        self.progress("starting ldap (the directory of users and groups)")
        self._run_container(refs["ldap"], "ldap", network, etc, hosts)
        self._wait("the directory", lambda: self._directory_ready(), 60)

        self.progress("starting db (MariaDB + slurmdbd, PostgreSQL)")
        self._run_container(refs["db"], "db", network, etc, hosts)
        self._wait("slurmdbd", lambda: self.exec("db", ["sacctmgr", "-n", "list", "cluster"],
                                                 timeout=20).returncode == 0, 60)
        for argv in config.accounting_commands():
            self.exec("db", argv, check=True)

        self.progress(f"starting ctl, login and {nodes} compute nodes")
        self._run_container(refs["slurm"], "ctl", network, etc, hosts)
        for name in names:
            self._run_container(refs["slurm"], name, network, etc, hosts, role="compute")
        self._run_container(refs["slurm"], "login", network, etc, hosts)
        self._wait("all nodes idle", lambda: self._nodes_idle(names), 90)

        info = self._collect_info(names, etc, self.hub_key, hub.public_line)
        info.slurm_version = self.slurm_version() or ""
        self._wait("sshd on login", lambda: self._ssh_ready(), 30)
        self.state_file.write_text(json.dumps(asdict(info), indent=2))
        return info

    def _testcontainers_env(self) -> None:
        os.environ.update({k: v for k, v in self.engine.env().items()
                           if k in ("DOCKER_HOST", "TESTCONTAINERS_RYUK_DISABLED")})

    def _plan_addresses(self, names: list[str]) -> dict[str, str]:
        """A fixed address on the testbed network for each container, in order.

        Every container finds the others in its /etc/hosts (``_run_container``), not
        through the engine's DNS: podman's aardvark-dns keeps the gateway of the first
        network of a name, so a stale record of an earlier network of the same name
        (left when that network was removed from under its containers) leaves the new
        network with no name service (docs/testbed.md, "Names on the testbed network").
        """
        attrs = self._network().attrs
        subnet = next(cfg["Subnet"] for cfg in (attrs.get("IPAM") or {}).get("Config") or []
                      if cfg.get("Subnet"))
        gateway = _network_gateway(attrs)
        free = (str(ip) for ip in ipaddress.ip_network(subnet).hosts() if str(ip) != gateway)
        return dict(zip(names, free, strict=False))

    def _network(self):  # -> docker.models.networks.Network
        """This testbed's network, by its label (a name filter also matches other
        testbeds' networks whose names start with this one's)."""
        found = self.engine.docker_client().networks.list(
            filters={"label": f"{NAME_LABEL}={self.name}"})
        if not found:
            raise TestbedError(f"the network of testbed {self.name} is missing")
        return found[0]

    def _run_container(self, image: str, name: str, network, etc: Path,
                       hosts: dict[str, str], role: str | None = None,
                       generation: generations.Generation | None = None) -> None:
        from docker import version  # type: ignore[import-untyped]
        from docker.types import EndpointConfig  # type: ignore[import-untyped]
        from testcontainers.core.container import DockerContainer

        # its own fixed address (a node brought back keeps it, as a rebooted machine
        # would) and every testbed host's in /etc/hosts (see _plan_addresses)
        kwargs: dict = {
            "hostname": name, "labels": self._labels(name), "detach": True,
            "extra_hosts": dict(hosts),
            "networking_config": {network.name: EndpointConfig(
                version.__version__, aliases=[name], ipv4_address=hosts[name])},
        }
        if role == "compute":  # a rerun node: its testbed's generation, not this object's
            kwargs["cap_add"] = config.compute_capabilities(generation or self.generation)
        (
            DockerContainer(image)
            .with_name(self.container_name(name))
            .with_network(network)
            .with_network_aliases(name)
            .with_command([role or name])
            .with_volume_mapping(str(etc), "/etc/testbed", "ro")
            .with_volume_mapping(str(REPO), SRC_MOUNT, "ro")
            .with_volume_mapping(self.home_volume, "/home", "rw")
            .with_volume_mapping(self.small_home_volume, f"/home/{config.SMALL_HOME_USER}", "rw")
            .with_kwargs(**kwargs)
            .start()
        )

    def rerun_node(self, name: str, ip: str | None = None) -> None:
        """Start compute node ``name`` again after its container was removed (fault
        injection): same image as ``ctl``, same name, alias, mounts, hosts, and its
        address (``ip`` if given)."""
        from testcontainers.core.network import Network

        self._testcontainers_env()
        image = self.engine.docker_client().containers.get(
            self.container_name("ctl")).attrs["Config"]["Image"]
        network = Network()
        network.name = self.network_name
        info = self.info()
        hosts = {**info.containers, **({name: ip} if ip else {})}
        self._run_container(image, name, network, self.state_dir / "etc", hosts,
                            role="compute", generation=generations.get(info.slurm))

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.5)
        raise TestbedError(f"timed out after {timeout:.0f} s waiting for {what}")

    def _node_states(self) -> dict[str, str] | None:
        """Node -> Slurm state as the login node's sinfo says; None if it cannot say."""
        try:
            proc = self.exec("login", ["sinfo", "-h", "-N", "-o", "%N %T"], timeout=20)
        except subprocess.TimeoutExpired:  # a controller still starting on a busy machine
            return None
        if proc.returncode != 0:
            return None
        return dict(line.split() for line in proc.stdout.decode().splitlines() if line)

    def _nodes_idle(self, names: list[str]) -> bool:
        states = self._node_states() or {}
        return all(states.get(n) == "idle" for n in names)

    def slurm_version(self) -> str | None:
        """The running Slurm's version ("24.11.5") as the login node's sinfo says."""
        proc = self.exec("login", ["sinfo", "--version"], timeout=20)
        words = proc.stdout.decode().split()
        return words[-1] if proc.returncode == 0 and words else None

    def _ssh_ready(self) -> bool:
        proc = self.exec("login", ["ss", "-Hltn", "sport", "=", ":22"], timeout=10)
        return proc.returncode == 0 and bool(proc.stdout.strip())

    def _collect_info(self, names: list[str], etc: Path, hub_key: Path,
                      hub_pub: str) -> TestbedInfo:
        gateway = _network_gateway(self._network().attrs)
        ips: dict[str, str] = {}
        for c in self._containers():
            c.reload()
            nets = c.attrs["NetworkSettings"]["Networks"]
            ips[c.labels[LABEL]] = nets[self.network_name]["IPAddress"]
        host_pub = (etc / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        known_hosts = self.state_dir / "known_hosts"
        known_hosts.write_text(f"{ips['login']} {host_pub[0]} {host_pub[1]}\n")
        return TestbedInfo(
            nodes=names, login_ip=ips["login"], ssh_port=22, gateway_ip=gateway,
            hub_key=str(hub_key), known_hosts=str(known_hosts), containers=ips,
            slurm=self.generation.slurm,
        )

    def _directory_ready(self) -> bool:
        return b"uid: alice" in self.exec("ldap", [
            "ldapsearch", "-x", "-LLL", "-H", "ldap://localhost/", "-b", ldap.PEOPLE,
            "uid=alice", "uid"], timeout=20).stdout

    def adduser(self, name: str, account: str = "proj_a") -> str:
        """A new directory user with a home, a Slurm association and the hub's SSH key
        (the hub reaches users over SSH); her password (also in the state folder)."""
        if not ldap.NAME.fullmatch(name):
            raise TestbedError(f"not a user name for the testbed: {name!r} (use a-z, 0-9, _)")
        found = self.exec("ldap", ["ldapsearch", "-x", "-LLL", "-H", "ldap://localhost/",
                                   "-b", ldap.PEOPLE, "(objectClass=posixAccount)", "uid",
                                   "uidNumber"], check=True).stdout.decode()
        if f"uid: {name}\n" in found + "\n":
            raise TestbedError(f"{name} is in the directory already")
        uids = [int(n) for n in re.findall(r"^uidNumber: (\d+)$", found, re.MULTILINE)]
        uid = max([ldap.FIRST_NEW_UID - 1, *uids]) + 1
        password = secrets.token_urlsafe(9)
        admin = ["-x", "-H", "ldap://localhost/", "-D", ldap.ADMIN_DN,
                 "-y", "/etc/testbed/ldap/admin_password"]
        self.exec("ldap", ["ldapadd", *admin], check=True,
                  input=ldap.person_ldif(name, uid, password).encode())
        self.exec("ldap", ["ldapmodify", *admin], check=True, input=(
            f"dn: cn={ldap.GROUP},{ldap.GROUPS}\nchangetype: modify\nadd: memberUid\n"
            f"memberUid: {name}\n").encode())
        self._wait(f"{name} on the login node", lambda: self.exec(
            "login", ["getent", "passwd", name], timeout=20).returncode == 0, 60)
        home = f"/home/{name}"
        for argv in (["install", "-d", "-o", name, "-g", ldap.GROUP, "-m", "0700", home],
                     ["cp", "-rT", "/etc/skel", home],
                     ["install", "-d", "-o", name, "-g", ldap.GROUP, "-m", "0700",
                      f"{home}/.ssh"],
                     ["install", "-o", name, "-g", ldap.GROUP, "-m", "0600",
                      "/etc/testbed/ssh/authorized_keys", f"{home}/.ssh/authorized_keys"],
                     ["chown", "-R", f"{name}:{ldap.GROUP}", home]):
            self.exec("login", argv, check=True)
        self.exec("db", ["sacctmgr", "--immediate", "add", "user", name,
                         f"Account={account}", f"DefaultAccount={account}"], check=True)
        ldap.remember_password(self.state_dir, name, password)
        return password

    def hub_db_url(self, database: str = config.HUBDB_NAME) -> str:
        """SQLAlchemy URL of a hub database on the testbed's PostgreSQL (db container)."""
        password = (self.state_dir / "etc" / config.HUBDB_PASSWORD_FILE).read_text().strip()
        host = self.info().containers["db"]
        return (f"postgresql+psycopg://{config.HUBDB_USER}:{password}@{host}:5432/"
                f"{database}")

    def create_hub_database(self, database: str) -> str:
        """A new, empty hub database (a name of [a-z0-9_]); its URL."""
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", database):
            raise TestbedError(f"not a database name: {database!r}")
        self.exec("db", ["runuser", "-u", "postgres", "--", "psql", "-q", "-c",
                         f"CREATE DATABASE {database} OWNER {config.HUBDB_USER}"], check=True)
        return self.hub_db_url(database)

    def _report_failure(self, exc: BaseException) -> None:
        self.progress(f"testbed failed to start: {exc}")
        with contextlib.suppress(Exception):
            sinfo = self.exec("login", ["sinfo", "-N", "-o", "%N %T %E"], timeout=10)
            self.progress("sinfo:\n" + sinfo.stdout.decode() + sinfo.stderr.decode())
        try:
            containers = self._containers()
        except Exception:  # noqa: BLE001 -- best effort while reporting another failure
            return
        for c in containers:
            role = c.labels.get(LABEL, c.name)
            logs = c.logs(tail=30).decode(errors="replace")
            self.progress(f"--- {role} ({c.status}) container log ---\n{logs}")
            if c.status == "running":
                for log in ("/var/log/slurm/slurmctld.log", "/var/log/slurm/slurmd.log",
                            "/var/log/slurm/slurmdbd.log"):
                    out = self.exec(role if role != "network" else "login",
                                    ["tail", "-n", "20", log], timeout=10)
                    if out.returncode == 0 and out.stdout:
                        self.progress(f"--- {role}:{log} ---\n{out.stdout.decode()}")

    # -- status / down -------------------------------------------------------------------
    def reusable(self) -> bool:
        """Up, answering, running this checkout's code on this object's generation."""
        try:
            info = self.info()
            return (info.src == str(REPO) and info.slurm == self.generation.slurm
                    and self._nodes_idle_or_busy(info.nodes))
        except TestbedError:
            return False

    def _images_current(self) -> bool:
        """Do ctl and db run the images the checkout's Containerfiles make now? (A testbed
        started before a change of containers/ lacks what the tests expect.)"""
        refs = images.image_refs(self.engine, self.generation)
        running = {c.labels.get(LABEL): c.attrs["Config"]["Image"] for c in self._containers()}
        return running.get("ctl") == refs["slurm"] and running.get("db") == refs["db"]

    def _nodes_idle_or_busy(self, names: list[str]) -> bool:
        return set(names) <= set(self._node_states() or {})

    def status(self) -> dict:
        containers = self._containers()
        out: dict = {"up": False, "name": self.name,
                     "containers": {c.labels.get(LABEL, c.name): c.status for c in containers}}
        if not containers:
            return out
        try:
            out["testbed"] = asdict(self.info())
        except TestbedError:
            return out
        out["slurm_generation"] = out["testbed"]["slurm"]
        out["slurm_version"] = self.slurm_version()
        proc = self.exec("login", ["sinfo", "-h", "-N", "-o", "%N %P %T %C"], timeout=20)
        if proc.returncode == 0:
            out["up"] = True
            out["nodes"] = [
                dict(zip(("node", "partition", "state", "cpus_aiot"), line.split(), strict=False))
                for line in proc.stdout.decode().splitlines() if line.strip()
            ]
        return out

    def down(self, quiet: bool = False) -> None:
        with self._exclusive():
            self._down(quiet)

    def _down(self, quiet: bool = False) -> None:
        started = time.monotonic()
        client = self.engine.docker_client()
        for c in self._containers():
            c.remove(force=True, v=True)
        for net in client.networks.list(filters={"label": f"{NAME_LABEL}={self.name}"}):
            net.remove()
        for vol in client.volumes.list(filters={"label": f"{NAME_LABEL}={self.name}"}):
            vol.remove(force=True)
        shutil.rmtree(self.state_dir / "etc", ignore_errors=True)
        for f in (self.state_file, self.hub_key, self.hub_key.with_suffix(".pub"),
                  self.state_dir / "known_hosts"):
            f.unlink(missing_ok=True)
        if not quiet:
            self.progress(f"down in {time.monotonic() - started:.1f} s")

    def other_testbeds_running(self) -> bool:
        client = self.engine.docker_client()
        return bool(client.containers.list(filters={"label": LABEL}))

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of the testbed still present (for tests)."""
        client = self.engine.docker_client()
        return {
            "containers": [c.name for c in self._containers()],
            "networks": [n.name for n in client.networks.list(
                filters={"label": f"{NAME_LABEL}={self.name}"})],
            "volumes": [v.name for v in client.volumes.list(
                filters={"label": f"{NAME_LABEL}={self.name}"})],
        }


def _network_gateway(attrs: dict) -> str:
    for cfg in (attrs.get("IPAM") or {}).get("Config") or []:
        if cfg.get("Gateway"):
            return cfg["Gateway"]
    for subnet in attrs.get("subnets") or []:
        if subnet.get("gateway"):
            return subnet["gateway"]
    raise TestbedError("cannot find the gateway address of the testbed network")

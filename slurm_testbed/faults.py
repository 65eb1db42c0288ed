"""Fault injection on the testbed: stop and start daemons, kill and bring back nodes.

Every function takes a :class:`~slurm_testbed.cluster.Testbed` and works through the
engine's CLI (argv only). Daemons run in the background of their container (the
container's main process is ``sleep infinity``), so stopping one keeps the container.
The context managers (``slurmctld_stopped``, ``node_killed``, ...) always bring the
cluster back to health on the way out, so a test can fail without breaking the next.

``sdiag`` counters (:func:`rpc_stats`) measure the load a client puts on slurmctld.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from hpcbridge.client import SchedulerClient
from slurm_testbed.errors import TestbedError

from . import config
from .cluster import Testbed

SLURMCTLD = ("ctl", "/usr/sbin/slurmctld", "/run/slurmctld.pid")
SLURMDBD = ("db", "/usr/sbin/slurmdbd", "/run/slurmdbd.pid")
MARIADB_PIDFILE = "/run/mysqld/mysqld.pid"
SSHD_PIDFILE = "/run/sshd.pid"
MARIADB = ("runuser", "-u", "mysql", "--", "/usr/sbin/mariadbd", "--skip-networking=0",
           "--bind-address=127.0.0.1")


def wait_until(what: str, ready: Callable[[], bool], timeout: float,
               interval: float = 0.5) -> float:
    """Poll ``ready`` until it is true; the seconds it took. TestbedError on timeout."""
    started = time.monotonic()
    while True:
        if ready():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TestbedError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# -- processes inside containers ----------------------------------------------------------

def _pid(tb: Testbed, role: str, pidfile: str) -> str | None:
    proc = tb.exec(role, ["cat", pidfile], timeout=20)
    pid = proc.stdout.decode().strip()
    if proc.returncode != 0 or not pid.isdigit():
        return None
    alive = tb.exec(role, ["kill", "-0", pid], timeout=20).returncode == 0
    return pid if alive else None


def _stop_pidfile(tb: Testbed, role: str, pidfile: str, what: str,
                  timeout: float = 30) -> None:
    """SIGTERM the daemon of ``pidfile``, SIGKILL it if it lingers; wait until gone."""
    pid = _pid(tb, role, pidfile)
    if pid is None:
        return
    tb.exec(role, ["kill", "-TERM", pid], timeout=20)
    try:
        wait_until(f"{what} to stop", lambda: _pid(tb, role, pidfile) is None, timeout)
    except TestbedError:
        tb.exec(role, ["kill", "-KILL", pid], timeout=20)
        wait_until(f"{what} to die", lambda: _pid(tb, role, pidfile) is None, 10)


def _daemon(tb: Testbed, role: str, argv: list[str]) -> None:
    """Start a daemon that forks into the background itself."""
    tb.exec(role, argv, timeout=60, check=True)


def _scontrol_ping(tb: Testbed) -> bool:
    return tb.exec("login", ["scontrol", "ping"], timeout=30).returncode == 0


# -- slurmctld ----------------------------------------------------------------------------

def stop_slurmctld(tb: Testbed) -> None:
    role, _, pidfile = SLURMCTLD
    _stop_pidfile(tb, role, pidfile, "slurmctld")


def start_slurmctld(tb: Testbed, timeout: float = 90) -> None:
    """Start slurmctld and wait until every node has registered with it again."""
    role, binary, pidfile = SLURMCTLD
    if _pid(tb, role, pidfile) is None:
        _daemon(tb, role, [binary])
    wait_until("slurmctld to answer", lambda: _scontrol_ping(tb), timeout)
    wait_nodes_responding(tb, timeout=timeout)


STATE_DIR = "/var/lib/slurm/slurmctld"
COLD_CONF = "/run/slurm-cold-start.conf"


def _last_job_id(tb: Testbed) -> int:
    """The highest job id the controller or the accounting records know."""
    ids = [0]
    for argv in (["squeue", "-h", "-a", "-o", "%F"],
                 ["sacct", "-a", "-X", "-n", "-P", "-o", "JobIDRaw", "-S", "2000-01-01"]):
        out = tb.exec("ctl", argv, timeout=60).stdout.decode()
        ids += [int(w.split("_")[0]) for w in out.split() if w.split("_")[0].isdigit()]
    return max(ids)


def slurmctld_cold_start(tb: Testbed, timeout: float = 90) -> None:
    """Restart slurmctld without its saved jobs (a controller whose state was lost):
    every job leaves the queue at once, running ones are killed when their nodes
    report them. Job ids go on after the last one (``FirstJobId`` for this start only),
    so that no new job shares an id with an accounting record."""
    first = _last_job_id(tb) + 100
    role, binary, pidfile = SLURMCTLD
    _stop_pidfile(tb, role, pidfile, "slurmctld")
    tb.exec(role, ["find", STATE_DIR, "-mindepth", "1", "(", "-name", "job_state*", "-o",
                   "-name", "hash.*", ")", "-prune", "-exec", "rm", "-rf", "{}", "+"],
            timeout=60, check=True)
    conf = tb.exec(role, ["cat", "/etc/slurm/slurm.conf"], check=True).stdout
    tb.exec(role, ["dd", f"of={COLD_CONF}", "status=none"],
            input=conf + f"FirstJobId={first}\n".encode(), check=True)
    tb.exec(role, [binary], env={"SLURM_CONF": COLD_CONF}, timeout=60, check=True)
    wait_until("slurmctld to answer", lambda: _scontrol_ping(tb), timeout)
    wait_nodes_responding(tb, timeout=timeout)


def forget_job_records(tb: Testbed, job_id: str) -> None:
    """Delete a job's accounting records (sacct no longer knows it), as lost or purged
    records would."""
    if not job_id.isdigit():
        raise ValueError(f"not a job id: {job_id!r}")
    table = f"{config.CLUSTER}_job_table"
    sql = (f"DELETE s FROM {config.CLUSTER}_step_table s JOIN {table} j "
           f"ON s.job_db_inx = j.job_db_inx WHERE j.id_job = {int(job_id)}; "
           f"DELETE FROM {table} WHERE id_job = {int(job_id)};")
    tb.exec("db", ["mariadb", "--protocol=socket", "slurm_acct_db", "-e", sql],
            timeout=60, check=True)


@contextlib.contextmanager
def slurmctld_stopped(tb: Testbed) -> Iterator[None]:
    stop_slurmctld(tb)
    try:
        yield
    finally:
        start_slurmctld(tb)


# -- slurmdbd and MariaDB -----------------------------------------------------------------

def stop_slurmdbd(tb: Testbed, *, mariadb: bool = True) -> None:
    role, _, pidfile = SLURMDBD
    _stop_pidfile(tb, role, pidfile, "slurmdbd")
    if mariadb:
        _stop_pidfile(tb, "db", MARIADB_PIDFILE, "mariadbd", timeout=60)


def _mariadb_up(tb: Testbed) -> bool:
    argv = ["mariadb-admin", "--protocol=socket", "ping"]
    return tb.exec("db", argv, timeout=20).returncode == 0


def start_slurmdbd(tb: Testbed, timeout: float = 90) -> None:
    if not _mariadb_up(tb):
        # mariadbd stays in the foreground: detach it from the exec session
        tb.engine.run("exec", "-d", tb.container_name("db"), *MARIADB, timeout=60)
        wait_until("MariaDB", lambda: _mariadb_up(tb), timeout)
    role, binary, pidfile = SLURMDBD
    if _pid(tb, role, pidfile) is None:
        _daemon(tb, role, [binary])
    wait_until("slurmdbd to answer", lambda: tb.exec(
        "db", ["sacctmgr", "-n", "list", "cluster"], timeout=20).returncode == 0, timeout)


@contextlib.contextmanager
def slurmdbd_stopped(tb: Testbed, *, mariadb: bool = True) -> Iterator[None]:
    stop_slurmdbd(tb, mariadb=mariadb)
    try:
        yield
    finally:
        start_slurmdbd(tb)


# -- compute nodes ------------------------------------------------------------------------

def node_states(tb: Testbed) -> dict[str, str]:
    """Node name -> Slurm state as sinfo prints it (``idle``, ``down*``, ``mixed``...)."""
    try:
        proc = tb.exec("login", ["sinfo", "-h", "-N", "-o", "%N %T"], timeout=60)
    except subprocess.TimeoutExpired:
        # removing or adding a container restarts the network's DNS for a moment
        return {}
    if proc.returncode != 0:
        return {}
    return dict(line.split(None, 1) for line in proc.stdout.decode().splitlines()
                if line.strip())


def wait_nodes_idle(tb: Testbed, nodes: list[str] | None = None, timeout: float = 120
                    ) -> float:
    names = nodes or tb.info().nodes
    return wait_until(f"nodes {', '.join(names)} idle", lambda: all(
        node_states(tb).get(n) == "idle" for n in names), timeout, interval=1)


#: the reason slurmd drains a node for when a job's processes outlive
#: UnkillableStepTimeout after the job ended (a loaded machine's containers), not a fault
#: a test injected
UNKILLABLE = "Kill task failed"


def resume_unkillable(tb: Testbed) -> list[str]:
    """Put nodes Slurm drained for :data:`UNKILLABLE` back in service; their names."""
    try:
        proc = tb.exec("ctl", ["sinfo", "-h", "-N", "-o", "%N|%T|%E"], timeout=60)
    except subprocess.TimeoutExpired:
        return []
    drained = sorted({line.split("|")[0] for line in proc.stdout.decode().splitlines()
                      if line.count("|") == 2 and line.split("|")[2].startswith(UNKILLABLE)
                      and line.split("|")[1].startswith("drain")})
    for node in drained:
        tb.progress(f"node {node} was drained for '{UNKILLABLE}'; resuming it")
        tb.exec("ctl", ["scontrol", "update", f"nodename={node}", "state=resume"], timeout=60)
    return drained


def wait_nodes_responding(tb: Testbed, timeout: float = 90) -> float:
    """Until no node is DOWN or not responding (``*``), whatever its load."""
    names = tb.info().nodes

    def responding() -> bool:
        resume_unkillable(tb)
        states = node_states(tb)
        return all(n in states and not states[n].endswith("*")
                   and states[n] not in ("down", "unknown", "drained") for n in names)
    return wait_until("nodes to respond", responding, timeout, interval=1)


def kill_node(tb: Testbed, node: str) -> str:
    """SIGKILL and remove compute node ``node``'s container (a crashed machine).
    Returns its address, which :func:`restore_node` gives back to it."""
    ip = tb.info().containers[node]
    tb.engine.run("rm", "--force", "--time", "0", tb.container_name(node), timeout=120)
    return ip


def restore_node(tb: Testbed, node: str, ip: str | None = None, timeout: float = 180
                 ) -> None:
    """Recreate a killed node's container and wait until Slurm has it back: idle, or
    already running jobs (on a busy cluster, queued jobs land on it at once)."""
    exists = tb.engine.run("container", "exists", tb.container_name(node), check=False)
    if exists.returncode != 0:
        tb.rerun_node(node, ip=ip or tb.info().containers[node])
    # ReturnToService=2 brings a DOWN node back when it registers; undrain just in case
    with contextlib.suppress(TestbedError):
        wait_node_up(tb, node, timeout=60)
        return
    scontrol(tb, "update", f"nodename={node}", "state=resume")
    wait_node_up(tb, node, timeout=timeout)


def wait_node_up(tb: Testbed, node: str, timeout: float = 120) -> float:
    """Until ``node`` responds and takes jobs (idle, mixed, allocated or completing)."""
    usable = ("idle", "mixed", "allocated", "completing")
    return wait_until(f"node {node} up", lambda: node_states(tb).get(node) in usable,
                      timeout, interval=1)


@contextlib.contextmanager
def node_killed(tb: Testbed, node: str) -> Iterator[str]:
    resume_unkillable(tb)  # jobs asked onto the node must be able to start there
    ip = tb.info().containers[node]
    try:
        kill_node(tb, node)
        yield ip
    finally:
        restore_node(tb, node, ip)


# -- login node sshd ----------------------------------------------------------------------

#: sshd's processes: the listener, and since OpenSSH 9.8 (trixie: 10.0) each connection
#: in ``sshd-session`` (and ``sshd-auth``); 22.05's bookworm names them all ``sshd``
SSHD_PROCESSES = "sshd|sshd-session|sshd-auth"


def stop_sshd(tb: Testbed, *, drop_sessions: bool = True, timeout: float = 30) -> None:
    """Stop sshd on login; with ``drop_sessions`` every open connection dies too (a login
    node going away), otherwise only the listener stops."""
    if drop_sessions:
        tb.exec("login", ["pkill", "-KILL", "-x", SSHD_PROCESSES], timeout=20)
        wait_until("sshd to die", lambda: tb.exec(
            "login", ["pgrep", "-x", SSHD_PROCESSES], timeout=20).returncode != 0, timeout)
    else:
        _stop_pidfile(tb, "login", SSHD_PIDFILE, "sshd")


def start_sshd(tb: Testbed, *, timeout: float = 30) -> None:
    """Start sshd on login (if it is not listening) and wait until it listens."""
    def listening() -> bool:
        return bool(tb.exec("login", ["ss", "-Hltn", "sport", "=", ":22"],
                            timeout=20).stdout.strip())

    if not listening():
        _daemon(tb, "login", ["/usr/sbin/sshd", "-E", "/var/log/sshd.log"])
    wait_until("sshd on login", listening, timeout)


def restart_sshd(tb: Testbed, *, drop_sessions: bool = True, timeout: float = 30) -> None:
    """Restart sshd on login; with ``drop_sessions`` every open connection dies too
    (a login node reboot), otherwise only the listener restarts (``systemctl restart``)."""
    stop_sshd(tb, drop_sessions=drop_sessions, timeout=timeout)
    start_sshd(tb, timeout=timeout)


# -- jobs ---------------------------------------------------------------------------------

def scontrol(tb: Testbed, *args: str) -> str:
    """``scontrol ARGS`` as root on ctl (an operator's action); its output."""
    return tb.exec("ctl", ["scontrol", *args], timeout=60, check=True).stdout.decode()


def suspend(tb: Testbed, job_id: str) -> None:
    scontrol(tb, "suspend", job_id)


def resume(tb: Testbed, job_id: str) -> None:
    scontrol(tb, "resume", job_id)


def requeue(tb: Testbed, job_id: str, *, hold: bool = False) -> None:
    scontrol(tb, "requeuehold" if hold else "requeue", job_id)


def cancel_jobs(tb: Testbed, job_ids: Sequence[str]) -> None:
    """Cancel jobs (as root); already finished ones are no error."""
    if job_ids:
        tb.exec("ctl", ["scancel", "--", *job_ids], timeout=120)


def sleep_script(seconds: int = 600, *, extra: Sequence[str] = ()) -> str:
    """A tiny batch job (1 core, 100M) that sleeps: load for status queries."""
    lines = ["#!/bin/bash", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=100M",
             "#SBATCH --time=00:15:00", "#SBATCH --output=/dev/null", "#SBATCH --chdir=/tmp",
             *(f"#SBATCH {opt}" for opt in extra), f"sleep {seconds}"]
    return "\n".join(lines) + "\n"


async def submit_spread(client: SchedulerClient, count: int, script: str | None = None,
                        users: Sequence[str] = tuple(config.USERS)) -> dict[str, str]:
    """Submit ``count`` jobs round-robin as ``users`` (each user's in order, the users at
    once); job id -> user."""
    script = script or sleep_script()
    share = {u: len(range(i, count, len(users))) for i, u in enumerate(users)}

    async def as_user(user: str) -> list[tuple[str, str]]:
        return [(await client.submit(user, script), user) for _ in range(share[user])]

    batches = await asyncio.gather(*(as_user(u) for u in users))
    return dict(pair for batch in batches for pair in batch)


def cancel_all(tb: Testbed, users: list[str] | None = None) -> None:
    """Cancel every job of the test users (as root)."""
    for user in users or list(config.USERS):
        tb.exec("ctl", ["scancel", f"--user={user}"], timeout=60)


@contextlib.contextmanager
def qos_limits(tb: Testbed, qos: str = "normal", **limits: int) -> Iterator[None]:
    """Set QOS limits (e.g. ``MaxSubmitJobsPerUser=40``) for a while, then restore the
    testbed's configured values (config.accounting_commands)."""
    defaults = {"MaxJobsPerUser": config.QOS_MAX_JOBS_PER_USER,
                "MaxSubmitJobsPerUser": config.QOS_MAX_SUBMIT_PER_USER}
    unknown = set(limits) - set(defaults)
    if unknown:
        raise ValueError(f"unsupported QOS limits {sorted(unknown)}; known: {sorted(defaults)}")

    def apply(values: dict[str, int]) -> None:
        tb.exec("db", ["sacctmgr", "--immediate", "modify", "qos", "where", f"name={qos}",
                       "set", *(f"{k}={v}" for k, v in values.items())],
                timeout=60, check=True)

    apply(limits)
    try:
        yield
    finally:
        apply({k: defaults[k] for k in limits})


# -- sdiag RPC statistics -----------------------------------------------------------------

@dataclass(frozen=True)
class RpcStats:
    """slurmctld's RPC counters since the last reset (``sdiag``)."""

    #: message type (``REQUEST_JOB_INFO``) -> count
    by_type: dict[str, int] = field(default_factory=dict)
    #: user name as slurmctld resolves it (a uid where it cannot) -> count
    by_user: dict[str, int] = field(default_factory=dict)
    #: uid -> count
    by_uid: dict[int, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_type.values())

    def user(self, name: str, uid: int | None = None) -> int:
        if uid is not None and uid in self.by_uid:
            return self.by_uid[uid]
        return self.by_user.get(name, 0)

    def minus(self, earlier: RpcStats) -> RpcStats:
        """Counts since ``earlier`` (when no reset happened in between)."""
        def sub(a: dict, b: dict) -> dict:
            return {k: v - b.get(k, 0) for k, v in a.items() if v - b.get(k, 0)}
        return RpcStats(sub(self.by_type, earlier.by_type), sub(self.by_user, earlier.by_user),
                        sub(self.by_uid, earlier.by_uid))


_RPC_LINE = re.compile(r"^\s*(\S+)\s+\(\s*(\d+)\)\s+count:(\d+)")


def parse_sdiag(text: str) -> RpcStats:
    """The two RPC tables of ``sdiag`` output: by message type and by user."""
    by_type: dict[str, int] = {}
    by_user: dict[str, int] = {}
    by_uid: dict[int, int] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("Remote Procedure Call statistics by message type"):
            section = "type"
        elif line.startswith("Remote Procedure Call statistics by user"):
            section = "user"
        elif line and not line[0].isspace():
            section = None
        elif section and (m := _RPC_LINE.match(line)):
            name, number, count = m.group(1), int(m.group(2)), int(m.group(3))
            if section == "type":
                by_type[name] = by_type.get(name, 0) + count
            else:
                by_user[name] = by_user.get(name, 0) + count
                by_uid[number] = by_uid.get(number, 0) + count
    return RpcStats(by_type, by_user, by_uid)


def rpc_stats(tb: Testbed) -> RpcStats:
    return parse_sdiag(tb.exec("ctl", ["sdiag"], timeout=30, check=True).stdout.decode())


def reset_rpc_stats(tb: Testbed) -> None:
    tb.exec("ctl", ["sdiag", "--reset"], timeout=30, check=True)


# -- login node sshd: outages and slow logins ---------------------------------------------

@contextlib.contextmanager
def sshd_stopped(tb: Testbed) -> Iterator[None]:
    stop_sshd(tb)
    try:
        yield
    finally:
        start_sshd(tb)


SLOW_SHELL = "/usr/local/bin/hpcb-slow-shell"
SSHD_CONFIG = "/etc/ssh/sshd_config"


@contextlib.contextmanager
def slow_login_shell(tb: Testbed, user: str, seconds: float) -> Iterator[None]:
    """Every command ``user`` runs over SSH on login starts ``seconds`` late (a login
    that sleeps first: a slow profile, a slow home on NFS), through sshd's ForceCommand
    for that user (users may live in the directory, not in /etc/passwd). Open sessions
    are dropped on the way in and out."""
    script = f"#!/bin/sh\nsleep {float(seconds)}\nexec /bin/bash -c \"$SSH_ORIGINAL_COMMAND\"\n"
    tb.exec("login", ["dd", f"of={SLOW_SHELL}", "status=none"], input=script.encode(),
            check=True)
    tb.exec("login", ["chmod", "0755", SLOW_SHELL], check=True)
    original = tb.exec("login", ["cat", SSHD_CONFIG], check=True).stdout
    block = f"\nMatch User {user}\n    ForceCommand {SLOW_SHELL}\n".encode()
    tb.exec("login", ["dd", f"of={SSHD_CONFIG}", "status=none"], input=original + block,
            check=True)
    try:
        restart_sshd(tb, drop_sessions=True)
        yield
    finally:
        tb.exec("login", ["dd", f"of={SSHD_CONFIG}", "status=none"], input=original,
                check=True)
        restart_sshd(tb, drop_sessions=True)

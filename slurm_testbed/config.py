"""Per-run configuration of the testbed: Slurm and slurmdbd files, munge and SSH keys.

Everything here is a pure function of the node count except the keys, which are made
fresh for every ``testbed up`` and written to the run folder that is mounted read-only
at ``/etc/testbed`` in every container.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .generations import DEFAULT, GENERATIONS, Generation

CLUSTER = "tb"
USERS = {"alice": "proj_a", "bob": "proj_a", "carol": "proj_b"}
#: a user whose home is a tiny filesystem of its own, shared by login and compute nodes,
#: for disk-full faults; kept out of USERS (no hub login, no share of load tests)
SMALL_HOME_USER = "dave"
SMALL_HOME_ACCOUNT = "proj_a"
SMALL_HOME_UID = 2004  # as containers/base/Containerfile creates him
USERS_GID = 2000  # hpcusers
SMALL_HOME_MB = 8
CPUS_PER_NODE = 8
MEMORY_MB_PER_NODE = 16384  # 16G, as the testbed site profile says
GPUS_ON_GPU_NODE = 2
#: the proj_b budget, in core-minutes (GrpTRESMins=cpu=...)
PROJ_B_BUDGET_CPU_MINUTES = 60
QOS_MAX_JOBS_PER_USER = 4
QOS_MAX_SUBMIT_PER_USER = 8
PARTITIONS = {
    # name: (max time, default time, nodes: "all" or "gpu")
    "debug": ("00:30:00", "00:10:00", "all"),
    "regular": ("04:00:00", "01:00:00", "all"),
    "gpu": ("02:00:00", "00:30:00", "gpu"),
}


#: homes that are not /home/NAME (`testbed exec --user root` starts in root's own)
SYSTEM_HOMES = {"root": "/root", "hpcbridge": "/var/lib/hpcbridge"}


def home_of(user: str) -> str:
    return SYSTEM_HOMES.get(user, f"/home/{user}")


def compute_capabilities(gen: Generation) -> list[str]:
    """Capabilities a compute node's container adds to the engine's default set.

    Slurm 24.11's slurmd loads a user's login environment (``--export=NONE``, which
    our scripts use) in a child it clones into new namespaces; without CAP_SYS_ADMIN
    that clone fails and slurmd exits (``fatal: clone: Operation not permitted``).
    A real node's slurmd runs as root with every capability.

    Both generations: CAP_SYS_PTRACE, without which slurmstepd may open but not read a
    job's ``/proc/PID/io`` (the kernel checks ptrace access at the read), and
    jobacct_gather/linux then drops the whole sample: no job ever had a MaxRSS.
    """
    return ["SYS_ADMIN", "SYS_PTRACE"] if gen.slurm != "22.05" else ["SYS_PTRACE"]


def node_names(nodes: int) -> list[str]:
    return [f"c{i}" for i in range(1, nodes + 1)]


def gpu_node(nodes: int) -> str:
    return node_names(nodes)[-1]


def slurm_conf(nodes: int, gen: Generation | None = None,
               cpus_per_node: int = CPUS_PER_NODE) -> str:
    """``cpus_per_node``: declared CPUs of each compute node (memory grows with them, 2G a
    CPU); more than the default only for load benchmarks (``python -m bench scale``)."""
    gen = gen or GENERATIONS[DEFAULT]
    names = node_names(nodes)
    gpu = gpu_node(nodes)
    memory = MEMORY_MB_PER_NODE * max(1, cpus_per_node // CPUS_PER_NODE)
    node_line = (
        f"CPUs={cpus_per_node} Boards=1 SocketsPerBoard=1 CoresPerSocket={cpus_per_node} "
        f"ThreadsPerCore=1 RealMemory={memory} State=UNKNOWN"
    )
    lines = [
        f"ClusterName={CLUSTER}",
        "SlurmctldHost=ctl",
        "SlurmUser=slurm",
        "AuthType=auth/munge",
        "CryptoType=crypto/munge",
        "MpiDefault=none",
        # No cgroups inside unprivileged containers: track processes by /proc.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "ReturnToService=2",
        "SlurmctldPidFile=/run/slurmctld.pid",
        "SlurmdPidFile=/run/slurmd.pid",
        "SlurmdSpoolDir=/var/lib/slurm/slurmd",
        "StateSaveLocation=/var/lib/slurm/slurmctld",
        "SlurmctldLogFile=/var/log/slurm/slurmctld.log",
        "SlurmdLogFile=/var/log/slurm/slurmd.log",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=bf_interval=5,sched_min_interval=100000",
        "SelectType=select/cons_tres",
        # With CR_Core_Memory a job without --mem would take a whole node's memory.
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=1024",
        # Nodes are declared larger than the machine (8 CPUs, 16 GB each).
        "SlurmdParameters=config_overrides",
        "GresTypes=gpu",
        "AccountingStorageType=accounting_storage/slurmdbd",
        "AccountingStorageHost=db",
        "AccountingStorageEnforce=associations,limits,qos,safe",
        "AccountingStorageTRES=gres/gpu",
        "JobAcctGatherType=jobacct_gather/linux",
        # a memory sample every 5 s (Slurm's default is 30): a job shorter than the
        # interval has no MaxRSS, and the testbed's jobs are short
        "JobAcctGatherFrequency=task=5",
        # GrpTRESMins budgets need usage, which only multifactor priority records.
        "PriorityType=priority/multifactor",
        "PriorityDecayHalfLife=0",
        "PriorityUsageResetPeriod=NONE",
        "MinJobAge=300",
        "KillWait=5",
        "InactiveLimit=0",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "MessageTimeout=10",
        "UnkillableStepTimeout=30",
        # users' own crontabs (scrontab): recurring batch notebooks (docs/batch.md)
        "ScronParameters=enable",
    ]
    overrides = _generation_settings(gen)
    lines = [line for line in lines if line.split("=", 1)[0] not in overrides]
    lines += [f"{key}={value}" for key, value in overrides.items()]
    for name in names:
        gres = f" Gres=gpu:fake:{GPUS_ON_GPU_NODE}" if name == gpu else ""
        lines.append(f"NodeName={name} {node_line}{gres}")
    for part, (max_time, default_time, which) in PARTITIONS.items():
        members = gpu if which == "gpu" else ",".join(names)
        default = " Default=YES" if part == "debug" else ""
        lines.append(
            f"PartitionName={part} Nodes={members}{default} MaxTime={max_time} "
            f"DefaultTime={default_time} State=UP"
        )
    return "\n".join(lines) + "\n"


def _generation_settings(gen: Generation) -> dict[str, str]:
    """Settings a generation adds or changes (docs/testbed.md, "Slurm generations")."""
    if gen.slurm == "22.05":
        return {}
    return {
        # 24.11 checks at start that MailProg exists (no mail on the testbed)
        "MailProg": "/bin/true",
        # 24.11 logs an error unless UnkillableStepTimeout >= 5 x MessageTimeout
        "UnkillableStepTimeout": "60",
    }


def gres_conf(nodes: int) -> str:
    # The gpu plugin needs one device file per GPU; plain files stand in for them
    # (no cgroup device confinement in the testbed, so they are never opened).
    last = GPUS_ON_GPU_NODE - 1
    return (f"NodeName={gpu_node(nodes)} Name=gpu Type=fake "
            f"File=/etc/testbed/gpu/nvidia[0-{last}]\n")


def slurmdbd_conf() -> str:
    return "\n".join(
        [
            "AuthType=auth/munge",
            "DbdHost=db",
            "SlurmUser=slurm",
            "StorageType=accounting_storage/mysql",
            "StorageHost=localhost",
            "StorageUser=slurm",
            # A testbed-only credential for a database that listens on the db
            # container's loopback only.
            "StoragePass=testbed-only",
            "StorageLoc=slurm_acct_db",
            "LogFile=/var/log/slurm/slurmdbd.log",
            "PidFile=/run/slurmdbd.pid",
        ]
    ) + "\n"


def accounting_commands() -> list[list[str]]:
    """sacctmgr argv lists that create the cluster's accounts, users and limits."""
    cmd = ["sacctmgr", "--immediate"]
    out = [
        [*cmd, "add", "cluster", CLUSTER],
        [*cmd, "modify", "qos", "where", "name=normal", "set",
         f"MaxJobsPerUser={QOS_MAX_JOBS_PER_USER}",
         f"MaxSubmitJobsPerUser={QOS_MAX_SUBMIT_PER_USER}"],
        [*cmd, "add", "account", "proj_a", "Description=project A", "Organization=lab"],
        [*cmd, "add", "account", "proj_b", "Description=project B", "Organization=lab",
         f"GrpTRESMins=cpu={PROJ_B_BUDGET_CPU_MINUTES}"],
    ]
    for user, account in {**USERS, SMALL_HOME_USER: SMALL_HOME_ACCOUNT}.items():
        out.append([*cmd, "add", "user", user, f"Account={account}",
                    f"DefaultAccount={account}"])
    return out


def small_home_volume_options() -> dict[str, str]:
    """Driver options of the small home: a tmpfs of SMALL_HOME_MB in memory (no host disk).

    Sized in 4 KiB pages (``nr_blocks``): podman 4 reads ``size=`` in ``o`` as a disk quota
    request and refuses it where the filesystem has no project quota.
    """
    pages = SMALL_HOME_MB * 256
    return {"type": "tmpfs", "device": "tmpfs",
            "o": f"nr_blocks={pages},uid={SMALL_HOME_UID},gid={USERS_GID},mode=0700"}


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public_line: str


def write_ed25519(path: Path, comment: str) -> KeyPair:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    line = f"{pub} {comment}"
    path.with_suffix(".pub").write_text(line + "\n")
    return KeyPair(path, line)


#: the hub database's password for this run (PostgreSQL on the db container), in etc_dir
HUBDB_PASSWORD_FILE = "hubdb_password"
#: the hub database's role, and the demo hub's database
HUBDB_USER = "hub"
HUBDB_NAME = "jupyterhub"


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write_run_config(etc_dir: Path, hub_key: Path, nodes: int,
                     gen: Generation | None = None,
                     cpus_per_node: int = CPUS_PER_NODE) -> KeyPair:
    """Write /etc/testbed's content into etc_dir and the hub's SSH key to hub_key.

    The hub's private key stays outside etc_dir: etc_dir is mounted into every container.
    """
    (etc_dir / "slurm").mkdir(parents=True, exist_ok=True)
    (etc_dir / "slurm" / "slurm.conf").write_text(slurm_conf(nodes, gen, cpus_per_node))
    (etc_dir / "slurm" / "gres.conf").write_text(gres_conf(nodes))
    (etc_dir / "slurm" / "slurmdbd.conf").write_text(slurmdbd_conf())
    (etc_dir / "gpu").mkdir(exist_ok=True)
    for i in range(GPUS_ON_GPU_NODE):
        (etc_dir / "gpu" / f"nvidia{i}").touch()
    munge = etc_dir / "munge.key"
    fd = os.open(munge, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(1024))
    _write_secret(etc_dir / HUBDB_PASSWORD_FILE, secrets.token_urlsafe(24))
    ssh = etc_dir / "ssh"
    write_ed25519(ssh / "ssh_host_ed25519_key", "login")
    hub = write_ed25519(hub_key, "hpcbridge-hub")
    (ssh / "authorized_keys").write_text(hub.public_line + "\n")
    return hub

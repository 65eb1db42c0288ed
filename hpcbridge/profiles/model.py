"""The typed model of a site profile: one center, its clusters, partitions and presets.

This is plain immutable data. Field descriptions are the documentation: the JSON schema
and docs/profile-reference.md are generated from them. Checks that relate several
fields (a preset over its partition's limits, a default naming nothing) live in
``checks.py`` so that they can point at the exact YAML line.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hpcbridge.schedulers import registry

from hpcbridge.profiles.types import (
    AbsPath,
    ClassRef,
    CondaEnv,
    DbUrl,
    GresName,
    HomeTemplate,
    Host,
    HubUrl,
    ImageRef,
    LocalPath,
    LogFolder,
    Memory,
    ModuleName,
    Name,
    ScriptLine,
    Text,
    UserName,
    Walltime,
)

Count = Annotated[int, Field(gt=0, le=1_000_000)]
OptionalCount = Annotated[int, Field(ge=0, le=1_000_000)]


class _Model(BaseModel):
    # frozen: a loaded profile is shared by the hub, spawners and Dask code
    model_config = ConfigDict(extra="forbid", frozen=True)


class SshTransport(_Model):
    """Run scheduler commands on a login node over SSH, with a pinned host key."""

    kind: Literal["ssh"] = Field(description="Transport kind: `ssh`.")
    host: Host = Field(description="Login node host name or address.")
    port: int = Field(22, ge=1, le=65535, description="SSH port of the login node.")
    user: UserName | None = Field(
        None,
        description="Account to log in as. Unset: log in as the user the command is for.",
    )
    key: LocalPath | None = Field(
        None,
        description="Private key file (OpenSSH format) on the hub machine; `{user}` is "
        "replaced by the user the connection is for. `~` is expanded by the transport.",
    )
    known_hosts: LocalPath = Field(
        description="known_hosts file pinning the login node's host key; unknown or "
        "changed keys are refused."
    )
    user_ca_key: LocalPath | None = Field(
        None,
        description="The hub's SSH user CA key (ed25519, OpenSSH format, mode 0600). Set: "
        "the hub logs in with a certificate it issues itself per user (that user the only "
        "principal, valid `certificate_minutes`), instead of `key`. The login node's sshd "
        "trusts the CA's public key (`TrustedUserCAKeys`).",
    )
    certificate_minutes: int = Field(
        10, ge=1, le=1440,
        description="Validity of each certificate; a new one is made before it expires.",
    )
    connect_timeout: float = Field(
        10.0, gt=0, le=600, description="Seconds to wait for the SSH connection."
    )


class LocalTransport(_Model):
    """Run scheduler commands on this machine (the hub runs on a login node)."""

    kind: Literal["local"] = Field("local", description="Transport kind: `local`.")
    sudo: bool = Field(
        True, description="Run commands as the user with `sudo -u USER` (argv, no shell)."
    )


Transport = Annotated[SshTransport | LocalTransport, Field(discriminator="kind")]


class Partition(_Model):
    """A Slurm partition or PBS queue and the limits hpcbridge enforces before submitting."""

    description: Text | None = Field(None, description="Shown to users in the spawn form.")
    queue: Name | None = Field(
        None,
        description="Name the scheduler knows it by (`--partition` / `-q`). Unset: the key. "
        "Lets one scheduler queue appear twice, e.g. its CPU and its GPU nodes.",
    )
    max_walltime: Walltime = Field(description="Longest walltime a job may request.")
    default_walltime: Walltime | None = Field(
        None, description="Walltime when a request gives none. Unset: `max_walltime`."
    )
    max_nodes: Count = Field(1, description="Most nodes one job may request.")
    cores_per_node: Count = Field(description="CPU cores a job may use on one node.")
    memory_per_node: Memory = Field(description="Memory a job may use on one node.")
    gpus_per_node: OptionalCount = Field(0, description="GPUs on one node; 0: no GPUs.")
    gres: GresName = Field(
        "gpu",
        description="Slurm gres requested for GPUs (`--gres=GRES:N`), e.g. `gpu` or `gpu:a100`.",
    )
    gpu_types: list[Name] = Field(
        default_factory=list,
        description="GPU types users may choose by name (Slurm typed GRES): `gpus: a100:2` "
        "asks `--gres=GRES:a100:2`, a plain count any type. Empty: no choice of type.",
    )
    max_jobs_per_user: Count | None = Field(
        None, description="Jobs one user may run here at once (checked by `doctor` and Dask)."
    )
    qos: Name | None = Field(None, description="Slurm QOS to request (`--qos`).")
    constraint: Name | None = Field(
        None, description="Slurm node feature to request (`--constraint`)."
    )


class Accounts(_Model):
    """Which accounts (projects, allocations) users may charge."""

    source: Literal["scheduler", "static"] = Field(
        "scheduler",
        description="`scheduler`: the user's associations in the scheduler decide; "
        "`static`: only the accounts listed in `names`.",
    )
    names: list[Name] = Field(default_factory=list, description="Accounts (`static` only).")
    default: Name | None = Field(
        None,
        description="Account used when a request names none. Unset: the scheduler's default.",
    )
    required: bool = Field(False, description="Refuse requests that end up with no account.")


class Conda(_Model):
    """A conda environment to activate."""

    env: CondaEnv = Field(description="Environment name or absolute path.")
    init: AbsPath | None = Field(
        None,
        description="Script to source before `conda activate`, e.g. "
        "`/opt/conda/etc/profile.d/conda.sh`. Unset: `conda` is already on PATH.",
    )


class Container(_Model):
    """An Apptainer (Singularity) image the job's command runs in."""

    image: ImageRef = Field(description="Path to a `.sif` image, or a docker:// / oras:// URI.")
    bind: list[AbsPath] = Field(default_factory=list, description="Paths to bind into it.")
    runtime: Literal["apptainer", "singularity"] = Field(
        "apptainer", description="Command that runs the image."
    )
    gpu_vendor: Literal["nvidia", "amd"] = Field(
        "nvidia", description="GPU support flag for GPU jobs: `--nv` (nvidia) or `--rocm` (amd)."
    )


class Environment(_Model):
    """How a job sets up its software before running its command."""

    description: Text | None = Field(None, description="Shown to users in the spawn form.")
    python: AbsPath | None = Field(
        None,
        description="Python interpreter; replaces a command's leading `python`. "
        "Unset: `python` from PATH.",
    )
    modules: list[ModuleName] = Field(
        default_factory=list, description="Environment modules to `module load`, in order."
    )
    venv: AbsPath | None = Field(None, description="Virtual environment directory to activate.")
    conda: Conda | None = Field(None, description="Conda environment to activate.")
    container: Container | None = Field(None, description="Apptainer image to run inside.")
    prologue: list[ScriptLine] = Field(
        default_factory=list,
        description="Shell lines run before the command, after modules and activation. "
        "Written by the site admin; each entry is exactly one line.",
    )


class Cluster(_Model):
    """One scheduler and the login node through which hpcbridge reaches it."""

    description: Text | None = Field(None, description="Shown to users in the spawn form.")
    scheduler: Name = Field(
        description="Batch scheduler adapter: `slurm` or `pbs`, or one a site installs "
        "(entry point group `hpcbridge.schedulers`).",
        json_schema_extra={"examples": ["slurm", "pbs"]},
    )
    scheduler_options: dict[Name, bool | int | str] = Field(
        default_factory=dict,
        description="Options of the scheduler adapter, e.g. `{history: true}` for PBS Pro "
        "with job history (`qstat -x`). Each adapter lists its own; see the architecture "
        "docs.",
    )
    pbs_flavor: Literal["pbspro", "torque"] | None = Field(
        None,
        description="PBS dialect of rendered scripts (`pbs` only): `pbspro` "
        "(`-l select=`) or `torque` (`-l nodes=N:ppn=C`, also read by Slurm's sbatch). "
        "Unset: `pbspro`.",
    )
    transport: Transport = Field(
        default_factory=LocalTransport,
        description="How to reach the scheduler: `{kind: local}` (the default) or "
        "`{kind: ssh, ...}`.",
    )
    home: HomeTemplate = Field(
        "/home/{user}", description="Users' home directories; jobs start there."
    )
    job_logs: LogFolder = Field(
        ".hpcbridge/logs",
        description="Folder of job logs (notebook servers, Dask workers, batch notebooks), "
        "relative to the home; made (private) as the user before each submission, so "
        "that logs do not fill the top of the home.",
    )
    status_user: UserName | None = Field(
        None,
        description="Unprivileged account that asks the scheduler about every tracked job "
        "in one query per interval (it must see other users' jobs). Unset: one query per "
        "user, as that user.",
    )
    min_uid: int = Field(
        1000, ge=0,
        description="Smallest uid (as `getent passwd` on the login node says) of an account "
        "the hub acts as for a hub user; lower uids are system accounts and are refused.",
    )
    deny_users: list[UserName] = Field(
        default_factory=list,
        description="Accounts the hub never acts as for a hub user, besides those always "
        "refused: `root`, `nobody`, `status_user`, the transport's login account and the "
        "hub's own account.",
    )
    deny_shells: list[AbsPath] = Field(
        default_factory=lambda: ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false",
                                 "/usr/bin/false"],
        description="Login shells that mark system accounts (such as `slurm`, whose uid "
        "may be high); the hub never acts as an account with one of them.",
    )
    partitions: dict[Name, Partition] = Field(
        min_length=1, description="Partitions (Slurm) or queues (PBS), by scheduler name."
    )
    default_partition: Name | None = Field(
        None, description="Partition used when a request names none. Unset: the first one."
    )
    accounts: Accounts = Field(default_factory=Accounts, description="Chargeable accounts.")
    environments: dict[Name, Environment] = Field(
        default_factory=lambda: {"default": Environment()},
        description="Software environments users choose from, by name. "
        "Default: one environment `default` with no setup.",
    )
    default_environment: Name | None = Field(
        None,
        description="Environment used when a request names none. Unset: `default` if "
        "declared, else the first one.",
    )

    recurring: Literal["scrontab", "hub", "auto", "off"] = Field(
        "off",
        description="How recurring batch notebooks (job definitions with a schedule) run "
        "without a notebook server: `scrontab` (the user's own Slurm crontab; the cluster "
        "needs `ScronParameters=enable` and the `scrontab` command on its nodes), `hub` "
        "(the hub keeps the schedule and submits each run as the user), `auto` "
        "(scrontab where the user's `scrontab -l` works, else the hub) or `off` "
        "(schedules are refused).",
    )

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        registry.dialect_class(value)  # UnknownScheduler (a ValueError) names the known ones
        return value

    @property
    def flavor(self) -> str:
        """``slurm``, ``pbspro`` or ``torque``: the directive syntax scripts use."""
        if self.scheduler == "slurm":
            return "slurm"
        return self.pbs_flavor or "pbspro"

    def partition_name(self, name: str | None) -> str:
        return name or self.default_partition or next(iter(self.partitions))

    def environment_name(self, name: str | None) -> str:
        if name:
            return name
        if self.default_environment:
            return self.default_environment
        return "default" if "default" in self.environments else next(iter(self.environments))


class _Resources(_Model):
    """What a preset or a Dask worker asks for; unset values come from the partition."""

    cluster: Name | None = Field(None, description="Cluster. Unset: the site's default.")
    partition: Name | None = Field(None, description="Partition. Unset: the cluster's default.")
    account: Name | None = Field(None, description="Account. Unset: the cluster's default.")
    environment: Name | None = Field(
        None, description="Environment. Unset: the cluster's default."
    )
    cores: Count = Field(1, description="CPU cores on the node.")
    memory: Memory | None = Field(
        None, description="Memory on the node. Unset: the partition's memory per core × cores."
    )
    gpus: OptionalCount = Field(0, description="GPUs on the node.")
    walltime: Walltime | None = Field(
        None, description="Walltime. Unset: the partition's default walltime."
    )


class NotebookPreset(_Resources):
    """A choice in the spawn form: a named set of resources for a notebook server."""

    name: Name = Field(description="Identifier, also the REST `preset` option value.")
    description: Text | None = Field(None, description="Shown to users in the spawn form.")


class DaskWorker(_Resources):
    """Resources of one Dask worker job."""

    processes: Count = Field(1, description="Worker processes per job; cores are shared.")


class DaskCaps(_Model):
    """Per-user caps on Dask workers, on top of the scheduler's own limits."""

    max_workers: Count | None = Field(None, description="Worker jobs one user may have.")
    max_cores: Count | None = Field(None, description="Cores over all of a user's workers.")
    max_memory: Memory | None = Field(None, description="Memory over all of a user's workers.")


class Dask(_Model):
    """Dask workers started as batch jobs from a notebook."""

    worker: DaskWorker = Field(default_factory=DaskWorker, description="Worker defaults.")
    per_user: DaskCaps = Field(default_factory=DaskCaps, description="Per-user caps.")


class WarmPool(_Model):
    """Notebook jobs started ahead of time, as their user, for spawns in under a second.

    After a user logs in, the hub submits ``per_user`` jobs per listed preset *as that
    user*; each starts on a compute node, imports Jupyter and waits for the hub. A spawn
    whose options resolve to the same job as a preset is given one of them at once. A
    warm job that waits ``max_idle`` ends by itself (its waiting time is charged to the
    user's account like any job). There is no shared pool identity: a batch job cannot
    change its user, so a server started as a pool account would see that account's
    files, not the user's (see docs/admin/hub.md).
    """

    presets: list[Name] = Field(
        default_factory=list,
        description="Notebook presets kept warm (names from `notebooks`). Empty: no pool.",
    )
    per_user: int = Field(1, ge=1, le=4, description="Warm jobs per preset and user.")
    max_jobs: Count = Field(
        20, description="Most warm jobs waiting on the whole site at once (all users)."
    )
    max_idle: Walltime = Field(
        Walltime.parse("00:15:00"),
        description="How long a warm job waits for its user before it ends by itself. "
        "A server started from it has this much less walltime at most.",
    )
    identity: Literal["user"] = Field(
        "user",
        description="Whose job a warm job is: `user` (the only value: a job per user, "
        "after her login). A shared pool account is refused by design.",
    )


class Authenticator(_Model):
    """Who may log in: a JupyterHub authenticator and its settings."""

    kind: ClassRef = Field(
        description="`ldap` (jupyterhub-ldapauthenticator), `pam` (JupyterHub's own), or "
        "an authenticator's entry point name or `module.Class` path.",
    )
    options: dict[Name, bool | int | str | list[Text]] = Field(
        default_factory=dict,
        description="Settings of that authenticator class, e.g. for `ldap`: "
        "`{server_address: ldap.example.org, bind_dn_template: ['uid={username},ou=people,"
        "dc=example,dc=org'], tls_strategy: on_connect}`. `${VAR}` is expanded (keep "
        "secrets in the environment).",
    )


class Tls(_Model):
    """The certificate the hub's public side presents."""

    cert: LocalPath = Field(description="PEM certificate (chain) of the hub's public name.")
    key: LocalPath = Field(description="Its PEM private key (readable by the hub only).")


class Hub(_Model):
    """The JupyterHub of the site: how people log in and how jobs reach it.

    ``hpcbridge.spawner.hubconfig.configure(c, site_profile=PATH)`` applies every key, so
    a site's ``jupyterhub_config.py`` is that one call.
    """

    connect_url: HubUrl | None = Field(
        None,
        description="Base URL of the hub as compute nodes reach it, e.g. "
        "`http://10.0.0.1:8081`. Unset: the hub's own setting.",
    )
    bind_url: HubUrl | None = Field(
        None,
        description="Public URL people open, e.g. `https://jupyter.example.org`. "
        "Unset: JupyterHub's default (`http://:8000`).",
    )
    authenticator: Authenticator | None = Field(
        None,
        description="Who may log in. Unset: whatever `jupyterhub_config.py` sets.",
    )
    db_url: DbUrl | None = Field(
        None,
        description="Hub database, e.g. `postgresql+psycopg://hub:${HUB_DB_PASSWORD}@db/hub`"
        ". Unset: SQLite in the hub's working directory.",
    )
    tls: Tls | None = Field(
        None, description="Serve the public side over https with this certificate."
    )
    job_tag: Name | None = Field(
        None,
        description="Names this hub's notebook jobs `hpcb-nb.<tag>-*`, for a second hub "
        "on the same cluster (e.g. a test hub beside production).",
    )
    warm_pool: WarmPool = Field(
        default_factory=WarmPool,
        description="Pre-started notebook jobs per user (off unless presets are listed).",
    )


class SiteProfile(_Model):
    """A supercomputer center as hpcbridge sees it."""

    site: Name = Field(description="Short name of the site, used in logs and scripts.")
    description: Text | None = Field(None, description="Shown to users on the hub.")
    clusters: dict[Name, Cluster] = Field(min_length=1, description="Clusters, by name.")
    default_cluster: Name | None = Field(
        None, description="Cluster used when a request names none. Unset: the first one."
    )
    hub: Hub = Field(default_factory=Hub,
                     description="The hub: logins, database, TLS, how jobs reach it.")
    notebooks: list[NotebookPreset] = Field(
        default_factory=list, description="Presets offered in the spawn form, first is default."
    )
    dask: Dask = Field(default_factory=Dask, description="Dask worker defaults and caps.")

    def cluster_name(self, name: str | None) -> str:
        return name or self.default_cluster or next(iter(self.clusters))

    def preset(self, name: str) -> NotebookPreset | None:
        return next((p for p in self.notebooks if p.name == name), None)

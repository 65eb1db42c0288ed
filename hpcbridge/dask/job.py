"""Worker jobs: dask-jobqueue's Job, submitted through hpcbridge instead of a shell.

dask-jobqueue writes a script to a temp file and runs ``sbatch`` / ``qsub`` /
``scancel`` itself on the machine it runs on. Here a job renders its script with
:func:`hpcbridge.profiles.render_script` (so the request passes the one validation
gate and the site's environment set-up) and hands it to a
:class:`~hpcbridge.client.SchedulerClient`: argv only, over whatever transport the
site uses, with the client's error mapping. A job may be one Slurm job array of
``array_tasks`` workers; each task's worker learns its name from the task id through
:mod:`hpcbridge.dask.worker`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from dask_jobqueue.pbs import PBSJob
from dask_jobqueue.slurm import SLURMJob
from distributed.deploy.spec import ProcessInterface

from hpcbridge.client import SchedulerClient
from hpcbridge.dask.worker import TASK_FIELD  # an array worker's name placeholder
from hpcbridge.errors import HpcBridgeError
from hpcbridge.profiles import JobRequest, Memory, SiteProfile, render_script
from hpcbridge.profiles.request import job_log_folder
from hpcbridge.schedulers.base import JobArray

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """What every worker job of one cluster shares; owned by the cluster."""

    profile: SiteProfile
    client: SchedulerClient
    user: str
    request: JobRequest
    processes: int
    lifetime: timedelta
    lifetime_stagger: timedelta
    death_timeout: int = 60
    interface: str | None = None
    #: called with every job right after its submission (the cluster tracks it)
    on_submit: Callable[[Any], None] = lambda job: None
    submissions: int = 0
    extra_worker_args: tuple[str, ...] = field(default_factory=tuple)
    #: Slurm: the job starts with the submitting process's environment (see worker_script)
    inherit_env: bool = True
    #: called with job ids right after they were cancelled (the cluster marks them)
    on_cancel: Callable[[list[str]], None] = lambda job_ids: None

    @property
    def log_folder(self) -> str:
        """Where the worker jobs' logs go (made before each submission)."""
        return job_log_folder(self.profile, self.request.cluster, self.user)


def worker_argv(ctx: WorkerContext, scheduler: str, name: str, *, array: bool) -> list[str]:
    """The dask worker command of one job: argv words, quoted when rendered."""
    threads = max(1, (ctx.request.cores or 1) // ctx.processes)
    memory = _memory_bytes(ctx.request.memory) // ctx.processes
    module = "hpcbridge.dask.worker" if array else "distributed.cli.dask_worker"
    argv = ["python", "-m", module, scheduler, "--name", name,
            "--nthreads", str(threads), "--memory-limit", str(memory)]
    if ctx.processes > 1:
        argv += ["--nworkers", str(ctx.processes)]
    argv += ["--nanny", "--death-timeout", str(ctx.death_timeout),
             "--lifetime", f"{int(ctx.lifetime.total_seconds())}s",
             "--lifetime-stagger", f"{int(ctx.lifetime_stagger.total_seconds())}s",
             "--no-lifetime-restart"]
    if ctx.interface:
        argv += ["--interface", ctx.interface]
    return argv + list(ctx.extra_worker_args)


def _memory_bytes(memory: str | int | None) -> int:
    if memory is None:
        raise HpcBridgeError("a worker's memory must be known to split it between processes")
    return int(memory if isinstance(memory, int) else Memory.parse(memory))


def worker_script(ctx: WorkerContext, scheduler: str, name: str, array_tasks: int = 0) -> str:
    """The batch script of one worker job (or one array of ``array_tasks`` workers).

    With ``ctx.inherit_env`` a Slurm worker job exports the submitting environment, as
    dask-jobqueue's do, instead of the profile's ``--export=NONE``: NONE implies
    ``--get-user-env``, and slurmd (before 23.02, which adds ``--export=NIL``) then
    runs ``su - USER`` for every job and, when that child has not been reaped at once,
    sleeps a whole second -- measured on one of three concurrent jobs in most rounds.
    The submitter is the user's own process (her notebook, or an SSH login as her),
    never the hub, and the script's login shell sets up the environment anyway.
    """
    words = worker_argv(ctx, scheduler, name + ("-" + TASK_FIELD if array_tasks else ""),
                        array=bool(array_tasks))
    script = render_script(ctx.profile, replace(ctx.request, command=tuple(words)),
                           array=JobArray(array_tasks) if array_tasks else None)
    lines = script.split("\n")
    if ctx.inherit_env:
        lines = ["#SBATCH --export=ALL" if ln.startswith("#SBATCH --export=") else ln
                 for ln in lines]
    return "\n".join(lines)


class _HpcJobMixin:
    """Replaces Job.start/close/job_script; keeps dask-jobqueue's constructor and config."""

    # set by dask-jobqueue's Job
    scheduler: str
    name: str
    job_id: str | None

    def __init__(self, scheduler: str | None = None, name: str | None = None, *,
                 hpcb: WorkerContext, array_tasks: int = 0, **kwargs: Any) -> None:
        req = hpcb.request
        kwargs.setdefault("cores", req.cores)
        kwargs.setdefault("memory", str(req.memory))
        kwargs.setdefault("processes", hpcb.processes)
        # set first: dask-jobqueue's constructors may already ask for the script
        self.hpcb = hpcb
        self.array_tasks = array_tasks
        #: task ids still alive (arrays); {0} for a plain job
        self.tasks: set[int] = set(range(array_tasks)) if array_tasks else {0}
        super().__init__(scheduler=scheduler, name=name, **kwargs)  # type: ignore[call-arg]

    def job_script(self) -> str:
        return worker_script(self.hpcb, str(self.scheduler), str(self.name), self.array_tasks)

    def task_job_id(self, task: int) -> str:
        return f"{self.job_id}_{task}" if self.array_tasks else str(self.job_id)

    @property
    def job_ids(self) -> list[str]:
        """Scheduler ids of this job's live parts (array tasks one by one)."""
        if not self.job_id:
            return []
        return [self.task_job_id(t) for t in sorted(self.tasks)]

    async def start(self) -> None:
        script = self.job_script()
        self.job_id = await self.hpcb.client.submit(self.hpcb.user, script,
                                                    self.hpcb.log_folder)
        self.hpcb.submissions += 1
        log.info("submitted worker job %s (%s)", self.job_id, self.name)
        self.hpcb.on_submit(self)
        await ProcessInterface.start(self)  # type: ignore[arg-type]

    async def cancel(self, job_ids: list[str]) -> None:
        if job_ids:
            try:
                await self.hpcb.client.cancel(self.hpcb.user, job_ids)
            except HpcBridgeError as exc:
                log.warning("cancelling %s failed: %s", ", ".join(job_ids), exc)
            else:
                self.hpcb.on_cancel(job_ids)

    async def close(self) -> None:
        await self.cancel(self.job_ids)
        self.tasks.clear()
        await ProcessInterface.close(self)  # type: ignore[arg-type]


class HpcSlurmJob(_HpcJobMixin, SLURMJob):
    """A dask-jobqueue SLURMJob submitted through hpcbridge's scheduler client."""


class HpcPbsJob(_HpcJobMixin, PBSJob):
    """A dask-jobqueue PBSJob submitted through hpcbridge's scheduler client."""

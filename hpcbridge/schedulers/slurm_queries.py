"""Slurm's batch directives and the parsers of its read-only queries (partitions,
associations, QOS, budget): the part of the Slurm adapter that is not about job states.

Commands are built in :mod:`hpcbridge.schedulers.slurm`; the field lists here define
the column order the parsers expect, so they live next to them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from hpcbridge.jobs import JobState
from hpcbridge.schedulers.base import (
    Accounting,
    Association,
    Availability,
    Budget,
    Estimate,
    PartitionInfo,
    QosLimits,
)
from hpcbridge.schedulers.textparse import (
    expand_hostlist,
    gpus_from_gres,
    is_none,
    min_known,
    parse_duration,
    parse_int,
    parse_iso,
    parse_memory_mb,
    parse_tres,
)

if TYPE_CHECKING:
    from hpcbridge.profiles.request import ValidatedRequest

SINFO_FORMAT = "%R|%c|%m|%G|%D"
#: one line per node and partition: ``sinfo -O`` (``:0``: no padding, ``|`` after each
#: field) because only it prints the GPUs in use (GresUsed)
AVAILABILITY_FORMAT = ("NodeList:0|,PartitionName:0|,CPUsState:0|,StateCompact:0|,"
                       "Gres:0|,GresUsed:0")
#: node states whose free cores and GPUs a job can get (``mix``: partly allocated)
_USABLE = {"idle", "mix", "mixed", "alloc", "allocated", "completing", "comp"}
ASSOC_FIELDS = ("Cluster,Account,User,Partition,QOS,DefaultQOS,MaxJobs,MaxSubmitJobs,"
                "MaxWall,MaxTRES,GrpTRES,GrpTRESMins")
QOS_FIELDS = ("Name,Priority,MaxWall,MaxJobsPerUser,MaxSubmitJobsPerUser,MaxTRESPerUser,"
              "MaxTRESPerJob,GrpTRESMins,Flags")
#: GrpTRESRaw is the decayed usage Slurm compares with GrpTRESMins (in TRES-minutes)
SSHARE_FIELDS = "Account,User,RawUsage,GrpTRESMins,GrpTRESRaw"


def _names(text: str) -> tuple[str, ...] | None:
    """``ALL`` (no restriction) -> None; ``a,b`` -> ("a", "b")."""
    if is_none(text) or text.upper() == "ALL":
        return None
    return tuple(x for x in text.split(",") if x)


def _node_shapes(sinfo: str) -> dict[str, tuple[int | None, int | None, int | None]]:
    """partition -> (smallest cores, smallest memory MB, most GPUs) of its nodes."""
    shapes: dict[str, tuple[int | None, int | None, int | None]] = {}
    for line in sinfo.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 5:
            continue
        part, cpus, mem, gres, _count = fields
        c = parse_int(cpus.rstrip("+"))
        m = parse_memory_mb(mem.rstrip("+"))
        g = gpus_from_gres(gres)
        old = shapes.get(part, (None, None, None))
        most_gpus = max(g or 0, old[2] or 0) or None
        shapes[part] = (min_known(c, old[0]), min_known(m, old[1]), most_gpus)
    return shapes


def _gpu_types(sinfo: str) -> dict[str, tuple[str, ...]]:
    """partition -> the GPU types of its nodes, from the ``%G`` column."""
    kinds: dict[str, set[str]] = {}
    for line in sinfo.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 5:
            found = kinds.setdefault(fields[0].rstrip("*"), set())
            found.update(k for k in _gpus_by_type(fields[3]) if k)
    return {part: tuple(sorted(found)) for part, found in kinds.items()}


def parse_partitions(scontrol: str, sinfo: str = "") -> list[PartitionInfo]:
    """``scontrol --oneliner show partition`` (+ ``sinfo`` node shapes) as PartitionInfo."""
    shapes = _node_shapes(sinfo)
    gpu_types = _gpu_types(sinfo)
    out = []
    for line in scontrol.splitlines():
        kv = dict(tok.partition("=")[::2] for tok in line.split() if "=" in tok)
        name = kv.get("PartitionName")
        if not name:
            continue
        cores, mem, gpus = shapes.get(name, (None, None, None))
        out.append(PartitionInfo(
            name=name,
            available=kv.get("State", "UP") == "UP",
            default=kv.get("Default") == "YES",
            max_walltime=parse_duration(kv.get("MaxTime")),
            default_walltime=parse_duration(kv.get("DefaultTime")),
            max_nodes=parse_int(kv.get("MaxNodes")),
            total_nodes=parse_int(kv.get("TotalNodes")),
            total_cpus=parse_int(kv.get("TotalCPUs")),
            cores_per_node=cores,
            memory_per_node_mb=mem,
            gpus_per_node=gpus,
            gpu_types=gpu_types.get(name, ()),
            max_memory_per_node_mb=parse_memory_mb(kv.get("MaxMemPerNode")),
            default_memory_per_cpu_mb=parse_memory_mb(kv.get("DefMemPerCPU")),
            allow_accounts=_names(kv.get("AllowAccounts", "ALL")),
            allow_qos=_names(kv.get("AllowQos", "ALL")),
            nodes=expand_hostlist(kv.get("Nodes")),
        ))
    return out


def parse_associations(stdout: str) -> list[Association]:
    out = []
    for line in stdout.splitlines():
        f = line.rstrip("\n").split("|")
        if len(f) != 12 or not f[1] or not f[2]:
            continue
        cluster, account, user, part, qos, defqos, maxj, maxs, wall, mtres, gtres, gmins = f
        out.append(Association(
            account=account, user=user, cluster=cluster or None, partition=part or None,
            qos=tuple(q for q in qos.split(",") if q), default_qos=defqos or None,
            max_jobs=parse_int(maxj), max_submit_jobs=parse_int(maxs),
            max_walltime=parse_duration(wall), max_tres_per_job=parse_tres(mtres),
            grp_tres=parse_tres(gtres), grp_tres_minutes=parse_tres(gmins),
        ))
    return out


def parse_qos(stdout: str) -> list[QosLimits]:
    out = []
    for line in stdout.splitlines():
        f = line.rstrip("\n").split("|")
        if len(f) != 9 or not f[0]:
            continue
        name, prio, wall, maxj, maxs, tres_pu, tres_pj, gmins, flags = f
        out.append(QosLimits(
            name=name, priority=parse_int(prio), max_walltime=parse_duration(wall),
            max_jobs_per_user=parse_int(maxj), max_submit_jobs_per_user=parse_int(maxs),
            max_tres_per_user=parse_tres(tres_pu), max_tres_per_job=parse_tres(tres_pj),
            grp_tres_minutes=parse_tres(gmins),
            flags=tuple(x for x in flags.split(",") if x),
        ))
    return out


def parse_budget(account: str, stdout: str) -> Budget | None:
    """The account row (no user) of ``sshare``; None when the account has no GrpTRESMins."""
    for line in stdout.splitlines():
        f = line.split("|")
        if len(f) != 5 or f[0].strip() != account or f[1].strip():
            continue
        _acct, _user, raw_usage, grp_mins, grp_raw = f
        limit = parse_tres(grp_mins)
        if not limit:
            return None
        used = parse_tres(grp_raw)
        if not used and parse_int(raw_usage) is not None:
            # RawUsage is in (billing) TRES-seconds
            used = {"billing": int(raw_usage) // 60}
        return Budget(account=account, limit_minutes=limit, used_minutes=used)
    return None


def directives(req: ValidatedRequest) -> list[str]:
    """``#SBATCH`` lines for a validated request (its values passed the grammars)."""
    opts = [f"--job-name={req.job_name}", f"--partition={req.queue}"]
    opts += [f"--{key}={value}" for key, value in (
        ("account", req.account), ("qos", req.qos), ("constraint", req.constraint)
    ) if value]
    opts += [
        f"--nodes={req.nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={req.cores}",
        f"--mem={req.memory}",
    ]
    if req.gpus:
        typed = f":{req.gpu_type}" if req.gpu_type else ""
        opts.append(f"--gres={req.gres}{typed}:{req.gpus}")
    opts += [
        f"--time={req.walltime}",
        f"--chdir={req.home}",
        f"--output={req.log_folder}/%x-%j.log",
        "--no-requeue",
        # names only; NONE keeps the submitting environment (hub, sudo) out of the job
        f"--export={','.join(req.export_env) or 'NONE'}",
    ]
    return [f"#SBATCH {opt}" for opt in opts]


def _gpus_by_type(gres: str) -> dict[str, int]:
    """``gpu:a100:2(S:0),gpu:1`` (Gres) or ``gpu:a100:1(IDX:0)`` (GresUsed) -> counts by
    type ("" for an untyped GPU)."""
    counts: dict[str, int] = {}
    if is_none(gres):
        return counts
    # (S:0-1) and (IDX:0,2) may hold commas: gone before the split
    for item in re.sub(r"\([^)]*\)", "", gres).split(","):
        fields = item.strip().split(":")
        if fields[0] == "gpu" and len(fields) in (2, 3) and fields[-1].isdigit():
            kind = fields[1] if len(fields) == 3 else ""
            counts[kind] = counts.get(kind, 0) + int(fields[-1])
    return counts


def parse_availability(stdout: str) -> list[Availability]:
    """:data:`AVAILABILITY_FORMAT` lines summed by partition: idle and total cores and
    nodes, free and total GPUs by type. Nodes drained, down or not responding (``*``)
    count in the totals only."""
    parts: dict[str, dict] = {}
    for line in stdout.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 6:
            continue
        _node, part, cpus, state, gres, used = fields
        counts = cpus.split("/")
        if not part or len(counts) != 4 or not all(c.isdigit() for c in counts):
            continue
        usable = not state.endswith("*") and state.rstrip("~#!%$@^-+") in _USABLE
        p = parts.setdefault(part.rstrip("*"), {"cpus": [0, 0], "nodes": [0, 0], "gpus": {}})
        p["cpus"][0] += int(counts[1]) if usable else 0
        p["cpus"][1] += int(counts[3])
        p["nodes"][0] += 1 if usable and state.rstrip("~#!%$@^-+") == "idle" else 0
        p["nodes"][1] += 1
        busy = _gpus_by_type(used)
        for kind, total in _gpus_by_type(gres).items():
            free, all_ = p["gpus"].get(kind, (0, 0))
            now = max(0, total - busy.get(kind, 0)) if usable else 0
            p["gpus"][kind] = (free + now, all_ + total)
    return [Availability(name, p["cpus"][0], p["cpus"][1], p["nodes"][0], p["nodes"][1],
                         p["gpus"]) for name, p in parts.items()]


#: ``sbatch: Job 12 to start at 2026-11-30T07:32:13 using 2 processors on nodes c3 in
#: partition gpu`` (stderr of ``sbatch --test-only``; 22.05 and 24.11 alike)
_ESTIMATE = re.compile(r"Job \d+ to start at (\S+) using \d+ processors on nodes (\S+)"
                       r"(?: in partition (\S+))?")


def parse_estimate(stdout: str, stderr: str) -> Estimate | None:
    match = _ESTIMATE.search(stderr) or _ESTIMATE.search(stdout)
    start = parse_iso(match.group(1)) if match else None
    if match is None or start is None:
        return None
    return Estimate(start, expand_hostlist(match.group(2)), match.group(3))


#: what `scrontab -l` prints (exit 1) for a user without a crontab
_NO_CRONTAB = "no crontab for "
#: sbatch options `#SCRON` lines refuse (Slurm requeues a cron job after each run)
_NOT_IN_SCRON = ("--no-requeue",)


def parse_crontab(returncode: int, stdout: str) -> str:
    """The crontab ``scrontab -l`` printed; ValueError when it failed otherwise (e.g.
    "scrontab is disabled on this cluster"): its output is no crontab to write back."""
    if returncode == 0:
        return stdout
    if stdout.startswith(_NO_CRONTAB) and stdout.count("\n") <= 1:
        return ""
    raise ValueError(f"scrontab -l exited with {returncode}")


def crontab_directives(req: ValidatedRequest) -> list[str]:
    """``#SCRON`` lines: the job's options as for sbatch, less what scrontab refuses,
    each run's log appended to the cron job's one log (its id stays the same)."""
    opts = [line.removeprefix("#SBATCH ") for line in directives(req)]
    kept = [o for o in opts if o.split("=", 1)[0] not in _NOT_IN_SCRON]
    return [f"#SCRON {opt}" for opt in [*kept, "--open-mode=append"]]


def crontab_refusal(returncode: int, stdout: str, stderr: str) -> str:
    """scrontab's own words for a crontab it did not install (errors go to both
    streams: 'There are errors in your crontab.' and 'scrontab: error: bad step value')."""
    words = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
    reasons = [w.split("error:", 1)[1].strip() if "error:" in w else w for w in words
               if "error" in w.lower() or "fatal" in w.lower()]
    return "; ".join(dict.fromkeys(reasons or words)) or f"exit status {returncode}"


#: sacct fields of a job's accounting, steps included (no user-controlled text)
USAGE_FIELDS = ("JobID,JobIDRaw,State,ExitCode,AllocCPUS,ElapsedRaw,TotalCPU,MaxRSS,"
                "ConsumedEnergyRaw,NodeList,Start,End")
_STEP = re.compile(r"^(\d+(?:_\d+)?)\.[A-Za-z0-9_]+$")


def cpu_seconds(text: str | None) -> float | None:
    """sacct's TotalCPU: ``[D-][HH:]MM:SS[.mmm]``."""
    if is_none(text):
        return None
    whole, _, fraction = str(text).strip().partition(".")
    duration = parse_duration(whole)
    if duration is None:
        return None
    return duration.total_seconds() + (float(f"0.{fraction}") if fraction.isdigit() else 0.0)


def parse_accounting(stdout: str, job_ids: Sequence[str], map_state: Callable[[str], JobState]
                     ) -> dict[str, Accounting]:
    """``sacct --parsable2`` rows of :data:`USAGE_FIELDS`: per id asked (shown, raw or
    array base id), its allocation rows and the maxima of its steps (MaxRSS is a
    step's; the allocation row's TotalCPU already sums its steps)."""
    allocations: dict[str, list[list[str]]] = {}
    steps: dict[str, list[list[str]]] = {}
    for line in stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 12:
            continue
        step = _STEP.match(fields[0])
        if step:
            steps.setdefault(step.group(1), []).append(fields)
        elif re.fullmatch(r"\d+(?:_\d+)?", fields[0]):
            allocations.setdefault(fields[0], []).append(fields)
            allocations.setdefault(fields[1], []).append(fields)
            if "_" in fields[0]:
                allocations.setdefault(fields[0].split("_", 1)[0], []).append(fields)
    out = {}
    for job_id in job_ids:
        rows = list({id(r): r for r in allocations.get(job_id, [])}.values())
        if rows:
            shown = {r[0] for r in rows}
            own_steps = [s for key in shown for s in steps.get(key, [])]
            out[job_id] = _usage(job_id, rows, own_steps, map_state)
    return out


def _usage(job_id: str, rows: list[list[str]], steps: list[list[str]],
           map_state: Callable[[str], JobState]) -> Accounting:
    first = rows[0]
    code = first[3].partition(":")[0]
    elapsed = [parse_int(r[5]) for r in rows]
    cores = [parse_int(r[4]) for r in rows]
    rss = [m for m in (parse_memory_mb(s[7]) for s in steps) if m is not None]
    energy = [e for e in (parse_int(r[8]) for r in rows) if e]
    cpu = [c for c in (cpu_seconds(r[6]) for r in rows) if c is not None]
    starts = [t for t in (parse_iso(r[10]) for r in rows) if t]
    ends = [t for t in (parse_iso(r[11]) for r in rows) if t]
    core_seconds = sum((e or 0) * (c or 0) for e, c in zip(elapsed, cores, strict=True))
    return Accounting(
        job_id=job_id, state=map_state(first[2]), state_text=first[2],
        exit_code=int(code) if code.isdigit() else None,
        nodes=tuple(dict.fromkeys(n for r in rows if r[9] != "None assigned"
                                  for n in expand_hostlist(r[9]))),
        cores=max((c for c in cores if c is not None), default=None),
        start=min(starts, default=None), end=max(ends, default=None),
        elapsed_seconds=max((e for e in elapsed if e is not None), default=None),
        core_seconds=core_seconds if any(e is not None for e in elapsed) else None,
        cpu_seconds=round(sum(cpu), 3) if cpu else None,
        max_rss_mb=max(rss, default=None), energy_joules=sum(energy) if energy else None,
        settled=all(map_state(s[2]).is_terminal for s in steps))


#: ``scontrol show config``: how often jobacct_gather samples a job's tasks
_GATHER_TYPE = re.compile(r"^JobAcctGatherType\s*=\s*(\S+)\s*$", re.M)
_GATHER_FREQUENCY = re.compile(r"^JobAcctGatherFrequency\s*=\s*(\S+)\s*$", re.M)


def parse_memory_sampling(stdout: str) -> int | None:
    """Seconds between two samples of a job's memory (``JobAcctGatherFrequency``: ``30``
    or ``task=30,energy=…``), 0 when nothing samples it (``jobacct_gather/none``, or a
    task interval of 0); None when the output does not say."""
    kind = _GATHER_TYPE.search(stdout)
    if kind and kind.group(1).endswith("/none"):
        return 0
    found = _GATHER_FREQUENCY.search(stdout)
    if not found:
        return None
    value = found.group(1)
    if "=" in value:
        tasks = [v.split("=", 1)[1] for v in value.split(",") if v.startswith("task=")]
        value = tasks[0] if tasks else "30"  # Slurm's default task interval
    return int(value) if value.isdigit() else None

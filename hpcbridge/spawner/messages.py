"""What the spawn page tells a user: a job's progress while it starts, how it ended."""

from __future__ import annotations

from hpcbridge.jobs import JobInfo, JobState

#: the progress bar's position while the job is in each state
STARTING = {JobState.PENDING: 20, JobState.REQUEUED: 20, JobState.RUNNING: 60,
            JobState.SUSPENDED: 40, JobState.COMPLETING: 90}


def describe_progress(info: JobInfo) -> str:
    if info.state is JobState.PENDING:
        text = f"job {info.job_id} is queued"
        if info.reason and info.reason != "None":
            text += f" ({info.reason})"
        if info.start_time:
            text += f"; estimated start {info.start_time:%H:%M:%S}"
        return text
    if info.state is JobState.RUNNING:
        return f"job {info.job_id} running on {', '.join(info.nodes)}; starting Jupyter"
    return f"job {info.job_id} is {info.state.value}" + (f" ({info.reason})" if info.reason else "")


def describe_end(info: JobInfo) -> str:
    text = info.state.description
    if info.reason and info.reason != "None":
        text += f" ({info.reason})"
    if info.exit_code:
        text += f", exit code {info.exit_code}"
    return text

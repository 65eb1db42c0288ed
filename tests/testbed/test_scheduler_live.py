"""Dialects, SSH transport, client and poller against the containerized Slurm testbed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import paramiko
import pytest

from hpcbridge.client import SchedulerClient
from hpcbridge.errors import HostKeyError
from hpcbridge.jobs import JobInfo, JobState
from hpcbridge.poller import StatusPoller
from hpcbridge.schedulers import PbsDialect, SlurmDialect
from hpcbridge.transport import SshTransport

pytestmark = [pytest.mark.testbed, pytest.mark.both_generations]

SCRIPT = "#!/bin/bash\n#SBATCH --partition=debug\n#SBATCH --time=00:05:00\nsleep 300\n"
PBS_SCRIPT = "#!/bin/bash\n#PBS -l walltime=00:05:00\nsleep 300\n"


def ssh(testbed, **kw) -> SshTransport:  # type: ignore[no-untyped-def]
    info = testbed.info()
    options = {"port": info.ssh_port, "known_hosts": info.known_hosts,
               "keys": lambda user: info.hub_key, "default_user": "alice"}
    options.update(kw)
    return SshTransport(info.login_ip, **options)


@pytest.fixture
async def slurm(testbed) -> AsyncIterator[SchedulerClient]:  # type: ignore[no-untyped-def]
    transport = ssh(testbed)
    yield SchedulerClient(SlurmDialect(), transport)
    await transport.close()


async def _wait_for(client: SchedulerClient, job_id: str, state: JobState) -> JobState:
    seen = JobState.UNKNOWN
    for _ in range(240):  # a freshly started testbed may take a while to run jobs
        seen = (await client.status([job_id], as_user="alice"))[job_id].state
        if seen is state:
            break
        await asyncio.sleep(0.5)
    return seen


async def test_submit_query_cancel_as_alice_over_ssh(slurm: SchedulerClient) -> None:
    job_id = await slurm.submit("alice", SCRIPT)
    try:
        assert await _wait_for(slurm, job_id, JobState.RUNNING) is JobState.RUNNING
        info = (await slurm.status([job_id]))[job_id]
        assert info.user == "alice" and info.nodes and info.time_left is not None
    finally:
        await slurm.cancel("alice", [job_id])
    assert await _wait_for(slurm, job_id, JobState.CANCELLED) is JobState.CANCELLED


async def test_torque_wrappers_through_the_pbs_dialect(testbed) -> None:  # type: ignore[no-untyped-def]
    transport = ssh(testbed)
    client = SchedulerClient(PbsDialect(), transport)
    try:
        job_id = await client.submit("alice", PBS_SCRIPT)
        infos = await client.status([job_id], as_user="alice")
        assert infos[job_id].state in (JobState.PENDING, JobState.RUNNING)
        await client.cancel("alice", [job_id])
    finally:
        await transport.close()


async def test_wrong_host_key_is_refused(testbed, tmp_path) -> None:  # type: ignore[no-untyped-def]
    other = paramiko.RSAKey.generate(2048)  # not the login node's key
    info = testbed.info()
    pinned = tmp_path / "known_hosts"
    pinned.write_text(f"{info.login_ip} {other.get_name()} {other.get_base64()}\n")
    transport = ssh(testbed, known_hosts=str(pinned))
    with pytest.raises(HostKeyError, match=info.login_ip):
        await transport.run(["true"])


async def test_hostile_job_name_never_reaches_a_shell(testbed, slurm: SchedulerClient
                                                      ) -> None:  # type: ignore[no-untyped-def]
    name = "x;id>/tmp/pwned|$(id>/tmp/pwned2)`id`|123|COMPLETED"
    script = SCRIPT.replace("sleep 300", "sleep 2").replace(
        "#SBATCH --time", f"#SBATCH --job-name={name}\n#SBATCH --time")
    job_id = await slurm.submit("alice", script)
    try:
        infos = await slurm.status([job_id], as_user="alice")
        assert infos[job_id].state in (JobState.PENDING, JobState.RUNNING, JobState.COMPLETED)
    finally:
        await slurm.cancel("alice", [job_id])
    for path in ("/tmp/pwned", "/tmp/pwned2"):
        assert testbed.login_exec("alice", ["test", "!", "-e", path]).returncode == 0


async def test_read_only_queries(slurm: SchedulerClient) -> None:
    partitions = {p.name: p for p in await slurm.partitions(as_user="alice")}
    assert "debug" in partitions and partitions["debug"].cores_per_node
    assocs = await slurm.associations("alice")
    assert "proj_a" in {a.account for a in assocs}
    assert await slurm.qos(["normal"], as_user="alice")
    await slurm.budget("proj_b", as_user="carol")


async def test_poller_sees_a_job_start(slurm: SchedulerClient) -> None:
    poller = StatusPoller(slurm, interval=1.0, min_gap=0.2, query_as="alice")
    job_id = await slurm.submit("alice", SCRIPT)
    try:
        async with poller:
            changes = poller.changes()
            poller.track(job_id, "alice")
            async with asyncio.timeout(60):
                async for change in changes:
                    if change.current.state is JobState.RUNNING:
                        break
            await changes.aclose()
    finally:
        await slurm.cancel("alice", [job_id])


async def test_a_later_round_parses_no_line_again_yet_reads_the_time_left_anew(
        slurm: SchedulerClient, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Real squeue lines two rounds apart: the running job's line differs only in its time
    left, the held job's not at all. The later round parses neither field by field (the
    adapter's memo of the last answer) and reads what a fresh adapter reads."""
    from hpcbridge.schedulers import slurm_status

    running = await slurm.submit("alice", SCRIPT)
    held = await slurm.submit("alice", SCRIPT.replace("sleep", "#SBATCH --hold\nsleep"))
    try:
        assert await _wait_for(slurm, running, JobState.RUNNING) is JobState.RUNNING
        first = await slurm.status([running, held])
        await asyncio.sleep(1.5)  # squeue's time left counts whole seconds
        parsed: list[str] = []
        parse = slurm_status._squeue_row
        monkeypatch.setattr(slurm_status, "_squeue_row",
                            lambda line: parsed.append(line) or parse(line))
        second = await slurm.status([running, held])
        monkeypatch.undo()
        fresh = await SchedulerClient(SlurmDialect(), slurm.transport).status([running, held])
    finally:
        await slurm.cancel("alice", [running, held])
    assert parsed == []
    assert second[held] is first[held] and second[held].state is JobState.PENDING
    left = [i[running].time_left for i in (first, second, fresh)]
    assert None not in left and left[0] > left[1] >= left[2]  # type: ignore[operator]
    def read(info: JobInfo) -> tuple[object, ...]:  # all but the time left
        return (info.state, info.reason, info.user, info.partition, info.nodes,
                info.start_time, info.extra)

    assert [read(second[j]) for j in (running, held)] == [read(fresh[j]) for j in (running, held)]

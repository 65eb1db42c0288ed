"""The testbed behaves like a small real center: jobs, accounting limits, torque wrappers."""

from __future__ import annotations

import re
import subprocess
import time
import uuid

import pytest

from slurm_testbed import faults

pytestmark = pytest.mark.testbed


def run(tb, user, *argv, check=True, **kw):
    proc = tb.login_exec(user, list(argv), **kw)
    if check:
        assert proc.returncode == 0, (argv, proc.stderr.decode())
    return proc.stdout.decode()


def squeue_field(tb, user, job_id, fmt):
    return run(tb, user, "squeue", "-h", "-j", job_id, "-o", fmt).strip()


def squeue_user(tb, user):
    """The user's queued and running jobs."""
    out = run(tb, user, "squeue", "-h", "-u", user, "-t", "PENDING,RUNNING", "-o", "%i")
    return out.split()


def state_reason(tb, user, job_id):
    """(state, reason) once the scheduler has set a reason ("None" until its next pass)."""
    fields = squeue_field(tb, user, job_id, "%T %r").split()
    return fields if len(fields) == 2 and fields[1] != "None" else None


def wait_until(pred, timeout=60.0, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


@pytest.mark.both_generations
def test_exec_as_root_starts_in_roots_home_and_reports_the_slurm_version(testbed):
    assert run(testbed, "root", "pwd").strip() == "/root"  # not /home/root
    version = run(testbed, "alice", "sinfo", "--version").split()[-1]
    assert version.startswith(testbed.generation.slurm + ".")
    assert testbed.status()["slurm_version"] == version


@pytest.mark.both_generations
def test_every_container_finds_the_testbed_hosts_in_its_own_hosts_file(testbed):
    # Not through the engine's DNS: podman's aardvark-dns kept a stale record of an earlier
    # network named like the 24.11 testbed's, so that testbed's nodes resolved no name
    # (not even `ldap`: no user, "testbed failed to start") while 22.05's ran beside it.
    addresses = testbed.info().containers
    for role in addresses:
        proc = testbed.exec(role, ["getent", "-s", "files", "hosts", *addresses])
        found = {name: ip for ip, *names in map(str.split, proc.stdout.decode().splitlines())
                 for name in names if name in addresses}
        assert found == addresses, role


@pytest.mark.both_generations
def test_stopping_sshd_ends_the_open_sessions_too(testbed):
    # faults.stop_sshd is a login node going away: OpenSSH 10 (trixie) serves each
    # connection from an sshd-session process, which killing `sshd` alone left running
    info = testbed.info()
    session = subprocess.Popen(
        ["ssh", "-i", info.hub_key, "-o", f"UserKnownHostsFile={info.known_hosts}",
         "-o", "BatchMode=yes", f"alice@{info.login_ip}", "sleep", "121"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: run(testbed, "root", "pgrep", "-u", "alice", "-f", "sleep 121",
                               check=False).strip(), 30)
        faults.stop_sshd(testbed)
        try:
            assert session.wait(timeout=30) != 0
        finally:
            faults.start_sshd(testbed)
    finally:
        session.kill()
        run(testbed, "root", "pkill", "-u", "alice", "-f", "sleep 121", check=False)


def test_job_runs_as_alice_on_a_compute_node_and_writes_her_home(testbed):
    tag = uuid.uuid4().hex[:8]
    script = (
        "#!/bin/bash\n#SBATCH -t 00:01:00\n#SBATCH -o /dev/null\n"
        f'echo "$(id -un) $(hostname) $SLURM_JOB_ID" > "$HOME/who-{tag}.txt"\n'
    )
    out = run(testbed, "alice", "sbatch", "--parsable", "--wait", input=script.encode())
    job_id = out.strip().split(";")[0]
    written = run(testbed, "alice", "cat", f"/home/alice/who-{tag}.txt").split()
    assert written[0] == "alice"
    assert written[1] in testbed.info().nodes
    assert written[2] == job_id
    owner = run(testbed, "alice", "stat", "-c", "%U", f"/home/alice/who-{tag}.txt").strip()
    assert owner == "alice"


def test_srun_spans_two_nodes(testbed):
    out = run(testbed, "bob", "srun", "-N2", "-t", "1", "hostname")
    hosts = set(out.split())
    assert len(hosts) == 2 and hosts <= set(testbed.info().nodes)


def test_fifth_concurrent_job_pends_on_qos_max_jobs_per_user(testbed):
    ids = []
    # jobs alice already has (e.g. a notebook server of an earlier test) count towards the 4
    others = len(squeue_user(testbed, "alice"))
    assert others <= 4
    try:
        for _ in range(5 - others):
            out = run(testbed, "alice", "sbatch", "--parsable", "-t", "2", "-c", "1",
                      "-o", "/dev/null", "--wrap", "sleep 110")
            ids.append(out.strip())
        wait_until(lambda: sum(squeue_field(testbed, "alice", i, "%T") == "RUNNING"
                               for i in ids) == 4 - others, timeout=120)
        pending = [i for i in ids if squeue_field(testbed, "alice", i, "%T") == "PENDING"]
        assert len(pending) == 1
        _, reason = wait_until(lambda: state_reason(testbed, "alice", pending[0]), timeout=30)
        assert reason == "QOSMaxJobsPerUserLimit"
    finally:
        if ids:
            run(testbed, "alice", "scancel", *ids, check=False)


def test_proj_b_job_beyond_budget_is_refused_or_held(testbed):
    # 8 cores x 30 min = 240 core-minutes against proj_b's 60.
    proc = testbed.login_exec("carol", ["sbatch", "--parsable", "-A", "proj_b", "-c", "8",
                                        "-t", "30", "-o", "/dev/null", "--wrap", "sleep 5"])
    if proc.returncode != 0:
        assert re.search(r"(?i)limit|budget", proc.stderr.decode())
        return
    job_id = proc.stdout.decode().strip()
    try:
        state, reason = wait_until(lambda: state_reason(testbed, "carol", job_id), timeout=30)
        assert state == "PENDING"
        assert reason == "AssocGrpCPUMinutesLimit"
    finally:
        run(testbed, "carol", "scancel", job_id, check=False)


def test_torque_wrappers_qsub_qstat_qdel(testbed):
    script = (
        "#!/bin/bash\n#PBS -N pbs-check\n#PBS -l walltime=00:02:00\n#PBS -l nodes=1:ppn=2\n"
        "sleep 100\n"
    )
    run(testbed, "bob", "tee", "/home/bob/pbs-check.sh", input=script.encode())
    job_id = run(testbed, "bob", "qsub", "/home/bob/pbs-check.sh").strip()
    assert job_id.isdigit()
    def running_full():
        text = run(testbed, "bob", "qstat", "-f", job_id)
        return text if "job_state = R" in text else None

    full = wait_until(running_full)
    assert "Job_Name = pbs-check" in full
    assert "Resource_List.walltime = 00:02:00" in full
    assert "Resource_List.ncpus = 2" in full
    run(testbed, "bob", "qdel", job_id)
    wait_until(lambda: squeue_field(testbed, "bob", job_id, "%T") in ("CANCELLED", ""))


@pytest.mark.testbed_last
def test_down_removes_everything(testbed, testbed_pool):
    from slurm_testbed.cluster import LABEL, NAME_LABEL

    others = [tb for tb, _ in testbed_pool.started.values() if tb is not testbed]
    # and a network named like the demo's "hpcbridge-testbed" is to the session's
    # "hpcbridge-test": this testbed's name plus more
    neighbour = f"{testbed.name}-neighbour-{uuid.uuid4().hex[:6]}"
    client = testbed.engine.docker_client()
    client.networks.create(neighbour, labels={LABEL: "network", NAME_LABEL: neighbour})
    try:
        testbed.down()
        assert testbed.leftovers() == {"containers": [], "networks": [], "volumes": []}
        for other in others:  # another generation's, named like this one plus "-slurm2411"
            assert other.leftovers()["networks"] == [other.name]
        assert [n.name for n in client.networks.list() if n.name == neighbour] == [neighbour]
    finally:
        for net in client.networks.list():
            if net.name == neighbour:
                net.remove()

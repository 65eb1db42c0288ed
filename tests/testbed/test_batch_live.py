"""Notebooks as batch jobs on the testbed (issue 15): jupyter-scheduler's REST API of a
server HpcSpawner started, as alice with her own token; real Slurm underneath."""

from __future__ import annotations

import json
import time

import pytest

from slurm_testbed import faults
from tests.testbed.batchtools import SERVER, ended, job_folder, home_text, start_server, open_lab
from tests.testbed.hubtools import squeue

pytestmark = pytest.mark.testbed



@pytest.fixture(scope="module")
def lab(hub, testbed):  # type: ignore[no-untyped-def]
    yield from open_lab(hub, testbed)


def test_create_job_runs_the_notebook_as_alice_on_a_compute_node(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    created = time.time()
    r = lab.create("batchtests/square.ipynb", parameters={"n": "7", "pause": "15"})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    seen = lab.follow(job_id, ended)
    statuses = [s for s, _ in seen]
    assert statuses[-1] == "COMPLETED", seen
    assert "QUEUED" in statuses and "IN_PROGRESS" in statuses, seen
    (running,) = {m for s, m in seen if s == "IN_PROGRESS"}
    assert " running on c" in running, seen
    scheduler_id = running.split()[1].rstrip(":")
    assert seen[-1][1].startswith(f"job {scheduler_id}: completed on c"), seen

    job = lab.job(job_id)
    folder = job_folder(job)
    links = {f["file_format"]: f["file_path"] for f in job["job_files"]}
    assert links["ipynb"] and links["html"] and job["downloaded"]
    executed = json.loads(home_text(testbed, "alice", "cat", "/home/alice/" + links["ipynb"]))
    text = json.dumps(executed)
    assert "square 49" in text and "ran as alice on c" in text
    assert home_text(testbed, "alice", "cat", f"{folder}/square.txt") == "49"
    owners = home_text(testbed, "alice", "stat", "-c", "%U %a", folder).split()
    assert owners == ["alice", "700"]
    account = home_text(testbed, "alice", "sacct", "-n", "-X", "-P", "-j", scheduler_id,
                    "-o", "User,State,ExitCode,JobName")
    assert account.strip() == "alice|COMPLETED|0:0|hpcb-batch"
    # for docs/batch.md: Create Job -> running, and papermill's cost around the cells
    times = home_text(testbed, "alice", "sacct", "-n", "-X", "-P", "-j", scheduler_id,
                  "-o", "Submit,Start,End", "--noconvert").strip().split("|")
    submit, start, end = (time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%S")) for t in times)
    result = json.loads(home_text(testbed, "alice", "cat", f"{folder}/hpcbridge-result.json"))
    print(f"\nbatch timings: create->submit {submit - created:.1f} s, submit->start "
          f"{start - submit:.0f} s, job {end - start:.0f} s (1 s resolution); "
          f"runner {result['runner_seconds']} s, papermill {result.get('papermill_seconds')} s,"
          f" cells {result.get('cells_seconds')} s")


def test_a_failing_notebook_fails_with_its_failing_cell(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    r = lab.create("batchtests/failing.ipynb")
    assert r.status_code == 200, r.text
    seen = lab.follow(r.json()["job_id"], ended)
    status, message = seen[-1]
    assert status == "FAILED", seen
    assert message.endswith("failed (exit code 1): cell 3 (In [3]: raise ValueError(f'n must "
                            "be even, not {n}')): ValueError: n must be even, not 1"), message
    job = lab.job(r.json()["job_id"])
    links = {f["file_format"]: f["file_path"] for f in job["job_files"]}
    executed = home_text(testbed, "alice", "cat", "/home/alice/" + links["ipynb"])
    assert "n must be even" in executed  # the executed notebook, with the error
    assert json.loads(executed)["cells"][-1]["outputs"] == []  # nothing ran after it


def test_over_the_partitions_walltime_is_refused_and_nothing_is_left(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    before = lab.jobs()
    home_text(testbed, "alice", "mkdir", "-p", "/home/alice/jobs")  # when run alone
    folders = home_text(testbed, "alice", "ls", "-A", "/home/alice/jobs")
    queue = squeue(testbed, "alice", "%i")
    r = lab.create("batchtests/square.ipynb",
                   runtime_environment_parameters={"partition": "debug", "walltime": "01:00:00"})
    # a refusal, not a server error: 400 with the plain sentence (hpcbridge/batch/app.py)
    assert r.status_code == 400, r.text
    assert r.json()["message"] == ("walltime 01:00:00 is over partition debug's "
                                   "max_walltime 00:30:00")
    assert lab.jobs() == before
    assert home_text(testbed, "alice", "ls", "-A", "/home/alice/jobs") == folders
    assert squeue(testbed, "alice", "%i") == queue


def test_stop_cancels_the_job_in_slurm(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    r = lab.create("batchtests/square.ipynb", parameters={"pause": "600"})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    seen = lab.follow(job_id, lambda j: j["status"] == "IN_PROGRESS")
    scheduler_id = seen[-1][1].split()[1].rstrip(":")
    assert [scheduler_id] == [i for i, n in squeue(testbed, "alice", "%i", "%j")
                              if n == "hpcb-batch" and i == scheduler_id]
    r = lab.call("PATCH", f"/scheduler/jobs/{job_id}", json={"status": "STOPPED"})
    assert r.status_code == 204, r.text
    seen = lab.follow(job_id, ended, timeout=60)
    assert seen[-1] == ("STOPPED", f"job {scheduler_id}: cancelled"), seen
    assert scheduler_id not in [i for (i,) in squeue(testbed, "alice", "%i")]
    state = home_text(testbed, "alice", "sacct", "-n", "-X", "-P", "-j", scheduler_id,
                      "-o", "State")
    assert state.strip().startswith("CANCELLED")


def test_the_job_runs_on_after_its_server_stops(lab, hub, testbed) -> None:  # type: ignore[no-untyped-def]
    r = lab.create("batchtests/square.ipynb", parameters={"n": "5", "pause": "45"})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    seen = lab.follow(job_id, lambda j: j["status"] == "IN_PROGRESS")
    scheduler_id = seen[-1][1].split()[1].rstrip(":")
    hub.stop("alice", SERVER)
    hub.wait_stopped("alice", SERVER)
    assert [s for i, s in squeue(testbed, "alice", "%i", "%T") if i == scheduler_id] == \
        ["RUNNING"]
    start_server(hub)  # the list of the new server shows what the job did meanwhile
    seen = lab.follow(job_id, ended)
    assert seen[-1][0] == "COMPLETED", seen
    folder = job_folder(lab.job(job_id))
    assert home_text(testbed, "alice", "cat", f"{folder}/square.txt") == "25"


def _rpcs(testbed, user: str) -> int:  # type: ignore[no-untyped-def]
    """slurmctld's count of RPCs from ``user`` (sdiag)."""
    for line in home_text(testbed, "root", "sdiag").splitlines():
        words = line.split()
        if words and words[0] == user:
            return int(line.split("count:")[1].split()[0])
    return 0


def test_queued_jobs_show_their_reason_and_share_one_status_query(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    # alice's QOS runs 4 jobs (her server is one); queued ones it allows up to 24 here (8
    # on the testbed): of 20 batch jobs 3 (fewer if another job of hers runs) run and the
    # others wait for QOSMaxJobsPerUserLimit; the server asks about all 20 at once
    with faults.qos_limits(testbed, MaxSubmitJobsPerUser=TRACKED + 4):
        ids = []
        try:
            for _ in range(TRACKED):
                r = lab.create("batchtests/square.ipynb", parameters={"pause": "600"})
                assert r.status_code == 200, r.text
                ids.append(r.json()["job_id"])
            _one_query_for_all(lab, testbed, ids)
        finally:
            for job_id in ids:
                r = lab.call("PATCH", f"/scheduler/jobs/{job_id}", json={"status": "STOPPED"})
                assert r.status_code == 204, r.text
    for job_id in ids:
        assert lab.follow(job_id, ended, timeout=60)[-1][0] == "STOPPED"


#: batch jobs one user's server tracks at once in the status query test (issue 15: 20)
TRACKED = 20


def _one_query_for_all(lab, testbed, ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        shown = [lab.job(i) for i in ids]
        if all(j["status"] == "IN_PROGRESS" or "queued (QOSMaxJobsPerUserLimit)" in
               j["status_message"] for j in shown):
            break
        time.sleep(2)
    statuses = [j["status"] for j in shown]
    assert statuses.count("QUEUED") >= len(ids) - 3 and statuses.count("IN_PROGRESS") >= 1, shown
    assert all(j["status"] == "IN_PROGRESS" or "queued (QOSMaxJobsPerUserLimit)" in
               j["status_message"] for j in shown), shown
    window, before = 60, _rpcs(testbed, "alice")
    time.sleep(window)
    rpcs = _rpcs(testbed, "alice") - before
    print(f"\nalice's RPCs in {window} s with {len(ids)} batch jobs tracked: {rpcs}")
    # one squeue per 10 s interval (at most 7 rounds in 60 s with jitter) costs slurmctld
    # at most 2 RPCs; a query per job would be 20 times that
    assert 1 <= rpcs <= 14, rpcs


HPCBRIDGE = ["/opt/hpcbridge/venv/bin/python", "-m", "hpcbridge"]
SITE = "/opt/hpcbridge/src/site_profiles/testbed.yaml"


def test_hpcbridge_run_and_jobs_on_the_login_node(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    def cli(*argv: str):  # type: ignore[no-untyped-def]
        return testbed.exec("login", [*HPCBRIDGE, *argv, "--site", SITE], user="alice",
                            env={"HOME": "/home/alice"}, timeout=300)

    home_text(testbed, "alice", "mkdir", "-p", "/home/alice/jobs")  # when run alone
    before = home_text(testbed, "alice", "ls", "-A", "/home/alice/jobs")
    refused = cli("run", "batchtests/square.ipynb", "--partition", "debug",
                  "--walltime", "01:00:00")
    assert refused.returncode == 1
    assert "over partition debug's max_walltime 00:30:00" in refused.stderr.decode()
    assert home_text(testbed, "alice", "ls", "-A", "/home/alice/jobs") == before

    proc = cli("run", "batchtests/square.ipynb", "-p", "n=9", "--preset", "debug", "--html",
               "--wait")
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    first, *rest = out.splitlines()
    sid, folder = first.split()[1].rstrip(":"), first.split("outputs in ")[1]
    assert folder.startswith("/home/alice/jobs/square-")
    assert rest[-1].startswith(f"job {sid}: completed on c"), out
    assert home_text(testbed, "alice", "cat", f"{folder}/square.txt") == "81"
    files = home_text(testbed, "alice", "ls", folder).split()
    assert any(f.endswith(".html") for f in files) and "job.log" in files

    listed = cli("jobs")
    assert listed.returncode == 0, listed.stderr.decode()
    (line,) = [ln for ln in listed.stdout.decode().splitlines() if f"job {sid}:" in ln]
    assert line.startswith("COMPLETED") and folder.rsplit("/", 1)[1] in line

    # the run's session record (docs/sessions.md): its start by the runner, its end from
    # accounting by `session list`
    sessions = cli("session", "list", "--json")
    assert sessions.returncode == 0, sessions.stderr.decode()
    (record,) = [r for r in map(json.loads, sessions.stdout.decode().splitlines())
                 if r.get("job_id") == sid]
    assert record["kind"] == "batch" and record["folder"] == folder, record
    assert record["request"]["preset"] == "debug" and record["start"]["packages"]["requirements"]
    assert "#SBATCH --partition=debug" in record["start"]["script"]
    assert record["end"]["state"] == "completed" and record["end"]["elapsed_seconds"] > 0


def test_a_sweep_of_four_is_one_sbatch_with_an_array(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    testbed.exec("login", ["tee", "/home/alice/batchtests/sweep.yaml"], user="alice",
                 input=b"- {n: 1}\n- {n: 2}\n- {n: 3}\n- {n: 4}\n", check=True)
    proc = testbed.exec("login", [*HPCBRIDGE, "run", "batchtests/square.ipynb", "--sweep",
                                  "batchtests/sweep.yaml", "--preset", "debug", "--wait",
                                  "--site", SITE],
                        user="alice", env={"HOME": "/home/alice"}, timeout=400)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    first, *rest = out.splitlines()
    assert "submitted as one array of 4 tasks" in first, out
    sid, folder = first.split()[1].rstrip(":"), first.split("outputs in ")[1]
    assert {ln.split(":")[0] for ln in rest if "completed on c" in ln} == {
        f"job {sid}_{i}" for i in range(4)}, out
    squares = [home_text(testbed, "alice", "cat", f"{folder}/task-{i}/square.txt")
               for i in range(4)]
    assert squares == ["1", "4", "9", "16"]  # each task its own parameters and notebook
    # one submission: one array job whose 4 tasks ran
    tasks = home_text(testbed, "alice", "sacct", "-n", "-X", "-P", "-j", sid,
                      "-o", "JobID,State").split()
    assert sorted(tasks) == [f"{sid}_{i}|COMPLETED" for i in range(4)], tasks


def _crontab(testbed) -> str:  # type: ignore[no-untyped-def]
    proc = testbed.login_exec("alice", ["scrontab", "-l"])
    return proc.stdout.decode() if proc.returncode == 0 else ""


def _runs(testbed, folder: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The run records of the definition in ``folder`` (its cron job writes them)."""
    text = testbed.login_exec("alice", ["find", f"{folder}/runs", "-name", "*.json",
                                        "-exec", "cat", "{}", ";"]).stdout.decode()
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        record, at = decoder.raw_decode(text, at)
        found.append(record)
    return found


def test_a_schedule_runs_on_the_cluster_while_no_server_runs(lab, hub, testbed) -> None:  # type: ignore[no-untyped-def]
    # alice's own line of her crontab: hpcbridge must never touch it
    own = "# alice's own\n0 3 1 1 * /bin/true\n"
    testbed.login_exec("alice", ["scrontab", "-"], input=own.encode(), check=True)
    definition = {"input_uri": "batchtests/square.ipynb", "runtime_environment_name": "default",
                  "compute_type": "debug", "name": "every-minute", "output_formats": ["ipynb"],
                  "parameters": {"n": "3"}, "schedule": "* * * * *", "timezone": "UTC"}
    try:
        home_text(testbed, "alice", "mkdir", "-p", "/home/alice/jobs")  # when run alone
        before = home_text(testbed, "alice", "ls", "-AR", "/home/alice/jobs")
        for bad, words in (
                ({"schedule": "61 * * * *"}, "the schedule's minute field has 61"),
                ({"schedule": "* * * * * ; touch /tmp/x"}, "not five"),
                ({"runtime_environment_parameters": {"walltime": "01:00:00"}},
                 "over partition debug's max_walltime 00:30:00")):
            r = lab.call("POST", "/scheduler/job_definitions", json={**definition, **bad})
            assert r.status_code == 400 and words in r.json()["message"], r.text
        assert lab.call("GET", "/scheduler/job_definitions").json()["job_definitions"] == []
        assert home_text(testbed, "alice", "ls", "-AR", "/home/alice/jobs") == before
        assert _crontab(testbed) == own

        created = time.monotonic()
        r = lab.call("POST", "/scheduler/job_definitions", json=definition)
        assert r.status_code == 200, r.text
        def_id = r.json()["job_definition_id"]
        tab = _crontab(testbed)
        assert tab.endswith(own) and f"# hpcbridge job definition {def_id}: begin" in tab
        assert "\n* * * * * /" in tab, tab
        (folder,) = [ln.split()[-1] for ln in tab.splitlines() if ln.startswith("* * * * *")]
        hub.stop("alice", SERVER)
        hub.wait_stopped("alice", SERVER)

        # no server of alice's runs now: her crontab starts each run on its minute
        deadline, runs = time.monotonic() + 360, []  # a loaded machine skips minutes
        while len(runs) < 2 and time.monotonic() < deadline:
            time.sleep(2)
            runs = _runs(testbed, folder)
        assert len(runs) >= 2, runs
        assert all(r["scheduler_job_id"] and not r["error"] for r in runs), runs
        second = time.monotonic() - created
        start_server(hub)  # while the second run runs

        jobs = {}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            listed = lab.call("GET", "/scheduler/jobs",
                              params={"job_definition_id": def_id}).json()["jobs"]
            jobs = {j["job_id"]: j for j in listed}
            if len(jobs) >= 2 and all(j["status"] == "COMPLETED" for j in jobs.values()):
                break
            time.sleep(2)
        assert len(jobs) >= 2 and {j["status"] for j in jobs.values()} == {"COMPLETED"}, jobs
        print(f"\nrecurring: second run submitted {second:.0f} s after the definition, "
              f"both shown completed after {time.monotonic() - created:.0f} s")
        for job in jobs.values():
            assert job["name"] == "every-minute"
            assert home_text(testbed, "alice", "cat", f"{job_folder(job)}/square.txt") == "9"
            sid = job["status_message"].split()[1].rstrip(":")
            account = home_text(testbed, "alice", "sacct", "-n", "-X", "-P", "-j", sid,
                                "-o", "User,State,JobName")
            assert account.strip() == "alice|COMPLETED|hpcb-batch"

        r = lab.call("PATCH", f"/scheduler/job_definitions/{def_id}", json={"active": False})
        assert r.status_code == 204, r.text
        tab = _crontab(testbed)
        assert "\n* * * * * /" not in tab and f"{def_id}: begin" in tab and tab.endswith(own)
        # no cron job of the definition is queued: no more runs
        assert "hpcb-cron" not in [n for (n,) in squeue(testbed, "alice", "%j")]

        r = lab.call("DELETE", f"/scheduler/job_definitions/{def_id}")
        assert r.status_code == 204, r.text
        assert _crontab(testbed) == own  # nothing of ours left, her line as it was
        assert testbed.login_exec("alice", ["test", "-e", folder]).returncode == 1
        for job in jobs.values():  # the runs' results stay
            assert home_text(testbed, "alice", "cat", f"{job_folder(job)}/square.txt") == "9"
    finally:
        testbed.login_exec("alice", ["scrontab", "-"], input=b"")

def test_a_sweep_from_the_dialog_that_cannot_run_is_refused_with_400(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    # the parameter "sweep" names a YAML file of sets; refused before anything is stored: a
    # set the notebook does not take, more runs than her QOS lets her queue
    # (MaxSubmitJobsPerUser=8). A sweep that runs: tests/testbed/test_batch_browser.py
    home_text(testbed, "alice", "mkdir", "-p", "/home/alice/jobs")  # when run alone
    folders = home_text(testbed, "alice", "ls", "-A", "/home/alice/jobs")
    before = lab.jobs()
    for sets, message in (("- {n: 1}\n- {m: 2}\n", "parameter 'm' is not set in the "
                                                   "notebook's parameters cell"),
                          ("".join(f"- {{n: {i}}}\n" for i in range(9)),
                           "a sweep of 9 runs does not fit: your QOS normal lets you queue 8 "
                           "jobs at once")):
        testbed.exec("login", ["tee", "/home/alice/batchtests/sweep.yaml"], user="alice",
                     input=sets.encode(), check=True)
        r = lab.create("batchtests/square.ipynb", parameters={"sweep": "batchtests/sweep.yaml"})
        assert r.status_code == 400 and message in r.json()["message"], r.text
    assert home_text(testbed, "alice", "ls", "-A", "/home/alice/jobs") == folders
    assert lab.jobs() == before


PBS_SITE = "/opt/hpcbridge/src/site_profiles/testbed-pbs.yaml"


def test_a_sweep_through_the_torque_wrappers_is_one_qsub_with_an_array(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    # the PBS adapter's "#PBS -t 0-1%N" (torque flavor), read by sbatch behind the wrappers'
    # qsub; each task finds its index (the wrappers set only SLURM_ARRAY_TASK_ID)
    testbed.exec("login", ["tee", "/home/alice/batchtests/sweep-pbs.yaml"], user="alice",
                 input=b"- {n: 6}\n- {n: 7}\n", check=True)
    proc = testbed.exec("login", [*HPCBRIDGE, "run", "batchtests/square.ipynb", "--sweep",
                                  "batchtests/sweep-pbs.yaml", "--partition", "debug",
                                  "--site", PBS_SITE],
                        user="alice", env={"HOME": "/home/alice"}, timeout=120)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    assert "submitted as one array of 2 tasks" in out, out
    sid, folder = out.split()[1].rstrip(":"), out.split("outputs in ")[1].strip()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        states = home_text(testbed, "alice", "sacct", "-n", "-X", "-P", "-j", sid,
                           "-o", "JobID,State").split()
        if len(states) == 2 and all(s.endswith("|COMPLETED") for s in states):
            break
        time.sleep(2)
    assert sorted(states) == [f"{sid}_0|COMPLETED", f"{sid}_1|COMPLETED"], states
    squares = [home_text(testbed, "alice", "cat", f"{folder}/task-{i}/square.txt")
               for i in range(2)]
    assert squares == ["36", "49"]
    listed = testbed.exec("login", [*HPCBRIDGE, "jobs", "--site", PBS_SITE], user="alice",
                          env={"HOME": "/home/alice"}, timeout=60)
    lines = [ln for ln in listed.stdout.decode().splitlines() if f"job {sid}:" in ln]
    assert lines and lines[0].startswith("COMPLETED") and "2 of 2 completed" in lines[0], \
        listed.stdout.decode() + listed.stderr.decode()

"""Notebooks as batch jobs on the testbed (issue 15): jupyter-scheduler's REST API of a
server HpcSpawner started, as alice with her own token; real Slurm underneath."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

from tests.testbed.hubtools import squeue

pytestmark = pytest.mark.testbed

SERVER = "batch"


def _code(source: str, tags: tuple[str, ...] = ()) -> dict:
    return {"cell_type": "code", "source": source, "metadata": {"tags": list(tags)},
            "outputs": [], "execution_count": None}


def _notebook(*cells: dict) -> dict:
    return {"cells": list(cells), "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}}}


SQUARE = _notebook(
    _code("n = 2\npause = 0", tags=("parameters",)),
    _code("import os, pwd, socket, time\n"
          "time.sleep(pause)\n"
          "print('ran as', pwd.getpwuid(os.getuid()).pw_name, 'on', socket.gethostname())\n"
          "print('square', n * n)\n"
          "with open('square.txt', 'w') as f:\n"
          "    f.write(str(n * n))"),
)
FAILING = _notebook(
    _code("n = 1", tags=("parameters",)),
    _code("x = n + 1"),
    _code("raise ValueError(f'n must be even, not {n}')"),
    _code("print('never')"),
)


class Lab:
    """alice's server: its contents and jupyter-scheduler APIs, with her token."""

    def __init__(self, hub, user: str = "alice") -> None:  # type: ignore[no-untyped-def]
        self.user = user
        self.base = f"{hub.url}/user/{user}/{SERVER}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {hub.user_token(user)}"

    def call(self, method: str, path: str, **kw) -> requests.Response:  # type: ignore[no-untyped-def]
        return self.session.request(method, self.base + path, timeout=60, **kw)

    def put_notebook(self, path: str, nb: dict) -> None:
        folder = path.rsplit("/", 1)[0]
        self.call("PUT", f"/api/contents/{folder}", json={"type": "directory"})
        r = self.call("PUT", f"/api/contents/{path}",
                      json={"type": "notebook", "format": "json", "content": nb})
        assert r.status_code in (200, 201), r.text

    def create(self, path: str, **kw) -> requests.Response:  # type: ignore[no-untyped-def]
        body = {"input_uri": path, "runtime_environment_name": "default",
                "compute_type": "debug", "name": f"test-{uuid.uuid4().hex[:6]}",
                "output_formats": ["ipynb", "html"], **kw}
        return self.call("POST", "/scheduler/jobs", json=body)

    def job(self, job_id: str) -> dict:
        r = self.call("GET", f"/scheduler/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def jobs(self) -> list[dict]:
        r = self.call("GET", "/scheduler/jobs")
        assert r.status_code == 200, r.text
        return r.json()["jobs"]

    def follow(self, job_id: str, until, timeout: float = 240) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
        """(status, message) as the job list shows them, each change once, until
        ``until(job)`` holds."""
        seen: list[tuple[str, str]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            entry = (job["status"], job.get("status_message") or "")
            if not seen or seen[-1] != entry:
                seen.append(entry)
            if until(job):
                return seen
            time.sleep(1)
        raise AssertionError(f"job {job_id}: condition not met in {timeout} s; seen {seen}")


def _ended(job: dict) -> bool:
    return job["status"] in ("COMPLETED", "FAILED", "STOPPED")


def _start(hub) -> None:  # type: ignore[no-untyped-def]
    if not hub.server("alice", SERVER).get("ready"):
        r = hub.spawn("alice", {"preset": "debug"}, server=SERVER)
        assert r.status_code in (201, 202), r.text
        hub.wait_ready("alice", SERVER)


@pytest.fixture(scope="module")
def lab(hub, testbed):  # type: ignore[no-untyped-def]
    _start(hub)
    lab = Lab(hub)
    lab.put_notebook("batchtests/square.ipynb", SQUARE)
    lab.put_notebook("batchtests/failing.ipynb", FAILING)
    yield lab
    for job in squeue(testbed, "alice", "%i", "%j"):
        if job[1] == "hpcb-batch":
            testbed.login_exec("alice", ["scancel", job[0]])
    hub.stop("alice", SERVER)
    hub.wait_stopped("alice", SERVER)


def _home(testbed, user: str, *argv: str) -> str:  # type: ignore[no-untyped-def]
    proc = testbed.login_exec(user, list(argv))
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def _folder(job: dict) -> str:
    (link,) = [f["file_path"] for f in job["job_files"] if f["file_format"] == "input"]
    return "/home/alice/" + link.rsplit("/", 1)[0]


def test_create_job_runs_the_notebook_as_alice_on_a_compute_node(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    created = time.time()
    r = lab.create("batchtests/square.ipynb", parameters={"n": "7", "pause": "15"})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    seen = lab.follow(job_id, _ended)
    statuses = [s for s, _ in seen]
    assert statuses[-1] == "COMPLETED", seen
    assert "QUEUED" in statuses and "IN_PROGRESS" in statuses, seen
    (running,) = {m for s, m in seen if s == "IN_PROGRESS"}
    assert " running on c" in running, seen
    scheduler_id = running.split()[1].rstrip(":")
    assert seen[-1][1].startswith(f"job {scheduler_id}: completed on c"), seen

    job = lab.job(job_id)
    folder = _folder(job)
    links = {f["file_format"]: f["file_path"] for f in job["job_files"]}
    assert links["ipynb"] and links["html"] and job["downloaded"]
    executed = json.loads(_home(testbed, "alice", "cat", "/home/alice/" + links["ipynb"]))
    text = json.dumps(executed)
    assert "square 49" in text and "ran as alice on c" in text
    assert _home(testbed, "alice", "cat", f"{folder}/square.txt") == "49"
    owners = _home(testbed, "alice", "stat", "-c", "%U %a", folder).split()
    assert owners == ["alice", "700"]
    account = _home(testbed, "alice", "sacct", "-n", "-X", "-P", "-j", scheduler_id,
                    "-o", "User,State,ExitCode,JobName")
    assert account.strip() == "alice|COMPLETED|0:0|hpcb-batch"
    # for docs/batch.md: Create Job -> running, and papermill's cost around the cells
    times = _home(testbed, "alice", "sacct", "-n", "-X", "-P", "-j", scheduler_id,
                  "-o", "Submit,Start,End", "--noconvert").strip().split("|")
    submit, start, end = (time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%S")) for t in times)
    result = json.loads(_home(testbed, "alice", "cat", f"{folder}/hpcbridge-result.json"))
    print(f"\nbatch timings: create->submit {submit - created:.1f} s, submit->start "
          f"{start - submit:.0f} s, job {end - start:.0f} s (1 s resolution); "
          f"runner {result['runner_seconds']} s, papermill {result.get('papermill_seconds')} s,"
          f" cells {result.get('cells_seconds')} s")


def test_a_failing_notebook_fails_with_its_failing_cell(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    r = lab.create("batchtests/failing.ipynb")
    assert r.status_code == 200, r.text
    seen = lab.follow(r.json()["job_id"], _ended)
    status, message = seen[-1]
    assert status == "FAILED", seen
    assert message.endswith("failed (exit code 1): cell 3 (In [3]: raise ValueError(f'n must "
                            "be even, not {n}')): ValueError: n must be even, not 1"), message
    job = lab.job(r.json()["job_id"])
    links = {f["file_format"]: f["file_path"] for f in job["job_files"]}
    executed = _home(testbed, "alice", "cat", "/home/alice/" + links["ipynb"])
    assert "n must be even" in executed  # the executed notebook, with the error
    assert json.loads(executed)["cells"][-1]["outputs"] == []  # nothing ran after it


def test_over_the_partitions_walltime_is_refused_and_nothing_is_left(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    before = lab.jobs()
    folders = _home(testbed, "alice", "ls", "-A", "/home/alice/jobs")
    queue = squeue(testbed, "alice", "%i")
    r = lab.create("batchtests/square.ipynb",
                   runtime_environment_parameters={"partition": "debug", "walltime": "01:00:00"})
    assert r.status_code == 500, r.text
    assert "walltime 01:00:00 is over partition debug's max_walltime 00:30:00" in \
        r.json()["message"]
    assert lab.jobs() == before
    assert _home(testbed, "alice", "ls", "-A", "/home/alice/jobs") == folders
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
    seen = lab.follow(job_id, _ended, timeout=60)
    assert seen[-1] == ("STOPPED", f"job {scheduler_id}: cancelled"), seen
    assert scheduler_id not in [i for (i,) in squeue(testbed, "alice", "%i")]
    state = _home(testbed, "alice", "sacct", "-n", "-X", "-P", "-j", scheduler_id, "-o", "State")
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
    _start(hub)  # the list of the new server shows what the job did meanwhile
    seen = lab.follow(job_id, _ended)
    assert seen[-1][0] == "COMPLETED", seen
    folder = _folder(lab.job(job_id))
    assert _home(testbed, "alice", "cat", f"{folder}/square.txt") == "25"


def _rpcs(testbed, user: str) -> int:  # type: ignore[no-untyped-def]
    """slurmctld's count of RPCs from ``user`` (sdiag)."""
    for line in _home(testbed, "root", "sdiag").splitlines():
        words = line.split()
        if words and words[0] == user:
            return int(line.split("count:")[1].split()[0])
    return 0


def test_queued_jobs_show_their_reason_and_share_one_status_query(lab, testbed) -> None:  # type: ignore[no-untyped-def]
    # alice's QOS runs 4 jobs (her server is one) and queues up to 8: 6 batch jobs are 3
    # running and 3 queued for QOSMaxJobsPerUserLimit; the server asks about all at once
    ids = []
    for _ in range(6):
        r = lab.create("batchtests/square.ipynb", parameters={"pause": "600"})
        assert r.status_code == 200, r.text
        ids.append(r.json()["job_id"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        shown = [lab.job(i) for i in ids]
        if sum(j["status"] == "IN_PROGRESS" for j in shown) == 3 and all(
                "QOSMaxJobsPerUserLimit" in j["status_message"] for j in shown
                if j["status"] == "QUEUED"):
            break
        time.sleep(2)
    assert [j["status"] for j in shown].count("QUEUED") == 3, shown
    window, before = 60, _rpcs(testbed, "alice")
    time.sleep(window)
    rpcs = _rpcs(testbed, "alice") - before
    print(f"\nalice's RPCs in {window} s with 6 batch jobs tracked: {rpcs}")
    # one squeue per 10 s interval (at most 7 rounds in 60 s with jitter) costs slurmctld
    # at most 2 RPCs; a query per job would be 6 times that
    assert 1 <= rpcs <= 14, rpcs
    for job_id in ids:
        r = lab.call("PATCH", f"/scheduler/jobs/{job_id}", json={"status": "STOPPED"})
        assert r.status_code == 204, r.text
    for job_id in ids:
        assert lab.follow(job_id, _ended, timeout=60)[-1][0] == "STOPPED"

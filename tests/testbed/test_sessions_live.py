"""Session records of notebook servers on the real hub and cluster (issue K): the job
writes its start (node, modules with versions, packages), the hub its end (accounting),
`hpcbridge.session.current()` reads it in a kernel, nobody else can read it, and no
record holds the server's token. A node failure's record: test_spawner_faults.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.testbed.batchtools import SQUARE, home_text
from tests.testbed.hubtools import log_in, run_in_new_kernel, squeue, wait_server

HPCBRIDGE = ["/opt/hpcbridge/venv/bin/python", "-m", "hpcbridge"]
SITE = "/opt/hpcbridge/src/site_profiles/testbed.yaml"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

pytestmark = pytest.mark.testbed

OPTIONS = {"partition": "debug", "cores": 2, "memory": "2G", "walltime": "00:10:00",
           "environment": "modules-demo"}
#: the nodes' Python environments, one lock per Python version
LOCKS = Path(__file__).resolve().parents[2] / "containers" / "slurm"
#: small pure Python packages of the nodes' environment, installed for real
PURE = ("six", "idna", "packaging", "toolz", "decorator", "cloudpickle")
CELL = ("import json, os, hpcbridge.session\n"
        "print(json.dumps({'token': os.environ['JUPYTERHUB_API_TOKEN'],\n"
        "                  'record': hpcbridge.session.current()}))")


def read_record(testbed, user: str, record_id: str, as_user: str | None = None):
    path = f"/home/{user}/.hpcbridge/sessions/{record_id}.json"
    return testbed.login_exec(as_user or user, ["cat", path], check=False)


def wait_record(testbed, user: str, record_id: str, pred, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        done = read_record(testbed, user, record_id)
        if done.returncode == 0:
            last = json.loads(done.stdout)
            if pred(last):
                return last
        time.sleep(1)
    raise AssertionError(f"record {record_id} of {user}: condition not met: {last}")


@pytest.fixture(scope="module")
def batch_run(testbed) -> dict:
    """A batch run of alice's (`hpcbridge run` on the login node, n=6), submitted before
    the server of ``ended`` starts so that both run at once: its folder and record id."""
    testbed.login_exec("alice", ["mkdir", "-p", "/home/alice/sessiontests"])
    testbed.login_exec("alice", ["tee", "/home/alice/sessiontests/square.ipynb"],
                       input=json.dumps(SQUARE).encode(), check=True)
    done = testbed.exec("login", [*HPCBRIDGE, "run", "sessiontests/square.ipynb", "-p", "n=6",
                                  "--preset", "debug", "--site", SITE], user="alice",
                        env={"HOME": "/home/alice"}, timeout=120)
    assert done.returncode == 0, done.stderr
    folder = done.stdout.decode().split("outputs in ")[1].strip()
    spec = json.loads(testbed.login_exec(
        "alice", ["cat", f"{folder}/hpcbridge-job.json"]).stdout)
    return {"folder": folder, "id": spec["session"]["id"]}


@pytest.fixture(scope="module")
def ended(hub, testbed, batch_run):
    """One server of alice's, started, read from a kernel, stopped: its record once the
    hub wrote the end, the kernel's view of it, and the server's token."""
    user = "alice"
    if hub.server(user):
        hub.stop(user)
        hub.wait_stopped(user, timeout=120)
    r = hub.spawn(user, OPTIONS)
    assert r.status_code in (201, 202), r.text
    server = hub.wait_ready(user)
    ready = time.monotonic()
    session = server["state"]["session"]
    assert server["state"]["job_id"] and "token" not in json.dumps(session).lower()
    out = run_in_new_kernel(f"{hub.url}/user/{user}", hub.user_token(user), CELL, 120, user)
    seen = json.loads(out.strip().splitlines()[-1])
    # run at least two of the testbed's memory sampling intervals (5 s): a peak memory
    time.sleep(max(0.0, 11 - (time.monotonic() - ready)))
    hub.stop(user)
    hub.wait_stopped(user)
    done = wait_record(testbed, user, session["id"], lambda rec: rec.get("end"))
    return {"record": done, "current": seen["record"], "token": seen["token"],
            "job_id": server["state"]["job_id"]}


def test_server_record_start_end_current_and_no_token(ended, testbed):
    user, current, job_id = "alice", ended["current"], ended["job_id"]
    # the record as the notebook saw it: the request, the node, modules, packages
    assert current["id"] == ended["record"]["id"] and current["job_id"] == job_id
    assert current["schema"] == "hpcbridge-session/1" and current["kind"] == "server"
    assert {k: current["request"][k] for k in OPTIONS} == OPTIONS
    start = current["start"]
    assert start["nodes"] and start["host"] in start["nodes"], start
    assert {"name": "hpcbridge-demo", "version": "1.0"} in start["modules"]
    assert any(p.lower().startswith("jupyterhub==") for p in start["packages"]["requirements"])
    assert "#SBATCH --partition=debug" in start["script"]
    assert current["profile_digest"].startswith("sha256:")
    # private: 0600 in a 0700 folder, alice's; bob cannot read it
    folder = f"/home/{user}/.hpcbridge/sessions"
    modes = testbed.login_exec(user, ["stat", "-c", "%a %U", folder,
                                      f"{folder}/{current['id']}.json"]).stdout.decode()
    assert modes.split("\n")[:2] == ["700 alice", "600 alice"], modes
    assert read_record(testbed, user, current["id"], as_user="bob").returncode != 0
    # the end, from accounting, written by the hub after the stop
    end = ended["record"]["end"]
    assert end["state"] == "cancelled" and end["recorded_by"] == "hub", end
    assert end["nodes"] == start["nodes"] and end["cores"] == 2, end
    assert end["elapsed_seconds"] > 0 and end["core_seconds"] >= 2 * end["elapsed_seconds"]
    # its peak memory, sampled by Slurm (the server's Python and JupyterLab: tens of MB)
    assert end["max_rss_mb"] > 20 and "max_rss_note" not in end, end
    assert ended["record"]["start"] == start  # the job's part is kept
    # no record of alice's holds the server's token (grep, as root, every record)
    found = testbed.login_exec("root", ["grep", "-rlF", "--", ended["token"], folder],
                               check=False)
    assert found.returncode == 1 and not found.stdout, found.stdout


def test_export_rebuilds_the_kernels_packages(ended, testbed, tmp_path):
    """`hpcbridge session export` on the login node, as alice: its requirements.txt pins
    exactly the nodes' locked environment, and a fresh venv installs from it (a few of
    its pure Python packages, at exactly the recorded versions)."""
    text = exported_requirements(testbed, ended["record"]["id"])
    pins = {canonical(line) for line in text.splitlines() if line and not line.startswith("#")}
    assert any(line.startswith("# not from an index: hpcbridge") for line in text.splitlines())
    # the pins are the nodes' lock (from which the image was built, hash-checked), plus
    # the installer itself
    python = ".".join(ended["record"]["start"]["python_version"].split(".")[:2])
    lock = (LOCKS / f"requirements-py{python}.txt").read_text()
    locked = {canonical(m.group(0)) for m in re.finditer(r"^[A-Za-z0-9._-]+==\S+", lock, re.M)}
    assert locked <= pins, sorted(locked - pins)[:10]
    assert {p.split("==")[0] for p in pins - locked} <= {"pip", "setuptools", "wheel"}, \
        sorted(pins - locked)
    # a fresh venv installs from it (a few small pure Python packages, for real)
    few = sorted(p for p in pins if p.split("==")[0] in PURE)
    assert len(few) >= 2, pins
    (tmp_path / "requirements.txt").write_text("\n".join(few) + "\n")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)  # this pip installs into it: no copy of pip to set up
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
           "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "-r", str(tmp_path / "requirements.txt")],
                   check=True, timeout=300)
    frozen = {canonical(line) for line in subprocess.run(
        [*pip, "freeze"], capture_output=True, text=True, check=True).stdout.split()}
    assert set(few) <= frozen, (few, frozen)


#: what a kernel of the nodes imports from its environment, checked in the rebuilt venv
KERNEL_IMPORTS = "import dask.distributed, ipykernel, numpy, pandas, papermill, xarray, netCDF4"


@pytest.mark.parametrize("slurm_generation", ["22.05"], indirect=True)
def test_export_rebuilds_every_package_in_a_fresh_venv(ended, testbed, tmp_path):
    """The whole export: every pin of its requirements.txt installs into a fresh venv
    (`pip install -r`, each at its recorded version, binary wheels only) and the kernel's
    packages import there. On 22.05, whose nodes run the same Python minor version as
    this machine's tests."""
    python = ".".join(ended["record"]["start"]["python_version"].split(".")[:2])
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert python == here, f"the record's Python {python} is not this machine's {here}"
    text = exported_requirements(testbed, ended["record"]["id"])
    pins = sorted({canonical(line) for line in text.splitlines()
                   if line and not line.startswith("#")})
    assert len(pins) > 100, pins  # the nodes' whole environment, not a sample
    (tmp_path / "requirements.txt").write_text(text)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
           "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--only-binary=:all:", "-r",
                    str(tmp_path / "requirements.txt")], check=True, timeout=900)
    frozen = {canonical(line) for line in subprocess.run(
        [*pip, "freeze", "--all"], capture_output=True, text=True, check=True).stdout.split()}
    assert set(pins) <= frozen, sorted(set(pins) - frozen)[:10]
    imported = subprocess.run([str(venv / "bin" / "python"), "-c", KERNEL_IMPORTS],
                              capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr[-2000:]


def exported_requirements(testbed, record_id: str) -> str:
    """`hpcbridge session export` of alice's record on the login node, as her: the files
    it wrote, and its requirements.txt."""
    out = f"/home/alice/export-{record_id}"
    done = testbed.login_exec("alice", ["/opt/hpcbridge/venv/bin/python", "-m", "hpcbridge",
                                        "session", "export", record_id, "--to", out])
    assert done.returncode == 0, done.stderr
    try:
        listed = testbed.login_exec("alice", ["ls", out]).stdout.decode().split()
        assert {"record.json", "requirements.txt", "environment.yml", "job.sh",
                "job.log"} <= set(listed), listed
        return testbed.login_exec("alice", ["cat", f"{out}/requirements.txt"]).stdout.decode()
    finally:
        testbed.login_exec("alice", ["rm", "-rf", "--", out])


def canonical(pin: str) -> str:
    """``Jupyter_Server==2.0`` -> ``jupyter-server==2.0`` (names as indexes compare them)."""
    name, _, version = pin.partition("==")
    return re.sub(r"[-_.]+", "-", name).lower() + "==" + version


def put_record(testbed, user: str, record_id: str, text: str) -> None:
    path = f"/home/{user}/.hpcbridge/sessions/{record_id}.json"
    done = testbed.login_exec(user, ["dd", f"of={path}", "status=none"], input=text.encode())
    assert done.returncode == 0, done.stderr


def test_my_sessions_in_the_browser_and_start_again(ended, batch_run, hub, testbed, browser):
    """alice's page shows her stopped server's node, walltime used, core-hours and
    packages; "Start again" spawns the same partition, cores and environment. A record
    edited into something else, one the profile no longer allows, and another user's
    are shown with the reason and no button; bob's page never shows alice's records.
    A batch run's "Start again" submits the same notebook run again as alice (the login
    node's answer on the page; its parameter's effect in the new folder); a batch record
    whose folder is gone is refused by the login node with the reason."""
    rec = ended["record"]
    batch = wait_record(testbed, "alice", batch_run["id"], lambda r: r.get("start"))
    corrupt, shrunk, foreign, gone, batch_shrunk = (
        "20200101T000000Z-corrup", "20200101T000001Z-shrunk", "20200101T000002Z-foreig",
        "20200101T000003Z-gone", "20200101T000004Z-bshrunk")
    put_record(testbed, "alice", corrupt, '{"schema": "hpcbridge-session/1", "id": 1}')
    put_record(testbed, "alice", shrunk, json.dumps(
        {**rec, "id": shrunk, "request": {**rec["request"], "walltime": "05:00:00"}}))
    put_record(testbed, "alice", foreign, json.dumps({**rec, "id": foreign, "user": "bob"}))
    put_record(testbed, "alice", gone, json.dumps(
        {**batch, "id": gone, "folder": "/home/alice/jobs/square-gone"}))
    put_record(testbed, "alice", batch_shrunk, json.dumps(
        {**batch, "id": batch_shrunk, "request": {**batch["request"], "cores": 64}}))
    made = [corrupt, shrunk, foreign, gone, batch_shrunk]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        log_in(page, hub, "alice", next_url="/hub/sessions")
        row = page.locator(f'tr[data-session="{rec["id"]}"]')
        row.wait_for(timeout=30000)
        end = rec["end"]
        assert row.locator(".session-nodes").inner_text() == ", ".join(end["nodes"])
        used = end["elapsed_seconds"]
        assert row.locator(".session-used").inner_text() == \
            f"{used // 3600}:{used % 3600 // 60:02d}:{used % 60:02d}"
        assert row.locator(".session-core-hours").inner_text() == \
            f"{end['core_seconds'] / 3600:.3f}"
        assert row.locator(".session-memory").inner_text() == f"{end['max_rss_mb']:.0f} MB"
        packages = len(rec["start"]["packages"]["requirements"])
        summary = row.locator(".session-packages summary")
        assert summary.inner_text() == f"{packages} packages, 1 modules"
        page.screenshot(path=str(SHOTS / "my-sessions.png"))
        summary.click()
        assert row.locator(".session-packages li", has_text="jupyterhub==").count() == 1
        for rid, said in ((corrupt, "cannot be used: id is"),
                          (shrunk, "no longer allows"), (foreign, "not yours"),
                          (batch_shrunk, "no longer allows")):
            other = page.locator(f'tr[data-session="{rid}"]')
            assert said in other.locator(".session-refused").inner_text()
            assert other.locator(".session-again").count() == 0
        # a batch run's Start again: refused by the login node when its folder is gone,
        # else the same run submitted again as alice
        notice = page.locator("#session-again-notice")
        page.locator(f'tr[data-session="{gone}"] .session-again').click()
        notice.wait_for(timeout=60000)
        assert "/home/alice/jobs/square-gone' is gone" in notice.inner_text(), \
            notice.inner_text()
        page.locator(f'tr[data-session="{batch["id"]}"] .session-again').click()
        page.locator("#session-again-notice.alert-success").wait_for(timeout=60000)
        said = notice.inner_text()
        rerun = said.split("batch job ")[1].split()[0]
        refolder = said.split("outputs in ")[1].split(" ")[0]
        assert refolder.startswith("/home/alice/jobs/square-") and \
            refolder != batch_run["folder"], said
        assert [r for r in squeue(testbed, "alice", "%i", "%u", "%P")
                if r[0] == rerun] in ([], [[rerun, "alice", "debug"]])  # [] when ended
        # bob's own page: none of alice's records
        bob = browser.new_page()
        log_in(bob, hub, "bob", next_url="/hub/sessions")
        bob.locator("#hpcbridge-sessions").wait_for(timeout=30000)
        assert rec["id"] not in bob.content()
        bob.close()
        # Start again: the same request through the spawn form's gate, submitted
        row.locator(".session-again").click()
        page.wait_for_url("**/hub/spawn-pending/alice**", timeout=60000)
        server = wait_server(hub, "alice", "", lambda s: (s.get("state") or {}).get("job_id"),
                             timeout=120)
        again = server["state"]["session"]
        assert again["id"] != rec["id"]
        assert {k: again["request"][k] for k in OPTIONS} == OPTIONS
        job = [r for r in squeue(testbed, "alice", "%i", "%P", "%C")
               if r[0] == server["state"]["job_id"]]
        assert job and job[0][1:] == ["debug", "2"], job
        # the run again: its parameter's effect (n=6) in its own folder, its own record
        respec = json.loads(home_text(testbed, "alice", "cat", f"{refolder}/hpcbridge-job.json"))
        assert respec["parameters"] == {"n": 6} and respec["scheduler_job_id"] == rerun
        assert respec["session"]["request"]["partition"] == "debug"
        wait_record(testbed, "alice", respec["session"]["id"], lambda r: r.get("start"))
        deadline = time.monotonic() + 120
        while testbed.login_exec("alice", ["test", "-e", f"{refolder}/square.txt"],
                                 check=False).returncode and time.monotonic() < deadline:
            time.sleep(1)
        assert home_text(testbed, "alice", "cat", f"{refolder}/square.txt") == "36"
        # both batch runs ended: the page writes their ends (nobody else watches them)
        deadline = time.monotonic() + 60  # square.txt comes before the runner's end
        while [r for r in squeue(testbed, "alice", "%i") if r[0] == rerun] and \
                time.monotonic() < deadline:
            time.sleep(1)
        page.goto(f"{hub.url}/hub/sessions")
        for rid in (batch["id"], respec["session"]["id"]):
            assert page.locator(f'tr[data-session="{rid}"] .session-state').inner_text() \
                == "completed"
        ends = [wait_record(testbed, "alice", rid, lambda r: r.get("end"), timeout=5)["end"]
                for rid in (batch["id"], respec["session"]["id"])]
        assert all(e["state"] == "completed" and e["recorded_by"] == "hub" for e in ends)
    finally:
        page.close()
        testbed.login_exec("alice", ["rm", "-f", "--", *(
            f"/home/alice/.hpcbridge/sessions/{rid}.json" for rid in made)])
        if hub.server("alice"):
            hub.stop("alice")
            hub.wait_stopped("alice")

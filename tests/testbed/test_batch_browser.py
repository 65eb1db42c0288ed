"""Create Notebook Job in JupyterLab, in a real browser (Debian's Chromium, Playwright):
alice opens a notebook in the server HpcSpawner started, creates a job with a parameter
through jupyter-scheduler's dialog, and the job list shows what Slurm does with it.

Also writes the screenshots docs/batch.md shows."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.testbed.batchtools import SERVER, Lab, home_text, job_folder, open_lab
from tests.testbed.hubtools import log_in, sbatch_sleepers, squeue

pytestmark = pytest.mark.testbed

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DEBUG = Path("/tmp/hpcbridge-batch-browser")


@pytest.fixture(scope="module")
def lab(hub, testbed):  # type: ignore[no-untyped-def]
    yield from open_lab(hub, testbed)


def open_create_job(page, notebook: str) -> None:  # type: ignore[no-untyped-def]
    """The notebook's Create Job dialog, once it names the notebook: on a loaded machine
    a click right after the toolbar appears opened it empty ("Input path '' does not
    exist" at Create), and the name typed into it was reset."""
    title = re.compile(f"^{re.escape(notebook.rsplit('/', 1)[-1])}$")
    tab = page.locator(".lm-TabBar-tab").filter(
        has=page.locator(".lm-TabBar-tabLabel", has_text=title)).first
    # the open notebooks' toolbars all have the button; the shown one is this notebook's
    button = page.locator('[data-jp-item-name="create-job"]:visible').first
    field = page.locator("#jp-create-job-inputFile")
    for _ in range(3):
        tab.click()
        button.wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
        button.click()
        try:
            field.wait_for(timeout=30_000)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if field.input_value().endswith(notebook):
                    page.wait_for_timeout(1000)  # the form settles before it is typed in
                    return
                page.wait_for_timeout(500)
        except PlaywrightTimeout:
            pass
    raise AssertionError(f"the Create Job dialog never named {notebook}: "
                         f"{field.input_value() if field.count() else 'no dialog'}")


def fill_create_job(page, hub, notebook: str, name: str,  # type: ignore[no-untyped-def]
                    parameter: tuple[str, str]) -> None:
    """Log alice in at ``notebook``, open Create Job and fill it: ``name``, the debug
    preset and one parameter (the dialog stays open)."""
    log_in(page, hub, "alice", next_url=f"/user/alice/{SERVER}/lab/tree/{notebook}")
    open_create_job(page, notebook)
    page.fill("#jp-create-job-jobName", name)
    page.get_by_text("small", exact=True).click()
    page.get_by_role("option", name="debug").click()
    page.get_by_role("button", name="Add new parameter").click()
    # typed, then left: the dialog checks each field when it loses focus
    for field, text in zip(("name", "value"), parameter, strict=True):
        page.locator(f'input[name="parameter-0-{field}"]').press_sequentially(text)
        page.keyboard.press("Tab")
    news = page.get_by_role("button", name="No", exact=True)
    if news.is_visible():
        news.click()  # JupyterLab's news question covers the form's corner


def test_create_job_in_jupyterlab_runs_it_on_a_compute_node(lab: Lab, hub, testbed, browser
                                                            ) -> None:  # type: ignore[no-untyped-def]
    DEBUG.mkdir(exist_ok=True)
    name = f"square-{uuid.uuid4().hex[:6]}"  # alice's job list outlives her servers
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sleepers: list[str] = []
    try:
        fill_create_job(page, hub, "batchtests/slow-square.ipynb", name, ("n", "6"))
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "batch-create-job.png"))
        # the notebook's folder goes with it (copied into the job's folder, as --input)
        page.get_by_label("Run job with input folder").check()
        # alice's QOS runs 4 jobs at once: her server and 3 sleepers make the job queue
        sleepers = sbatch_sleepers(testbed, "alice", 3)
        deadline = time.monotonic() + 60
        while [s for i, s in squeue(testbed, "alice", "%i", "%T") if i in sleepers] != \
                ["RUNNING"] * 3 and time.monotonic() < deadline:
            time.sleep(1)
        page.get_by_role("button", name="Create", exact=True).click()

        # the job list, reloaded as a user would, until the job has ended
        row = page.locator("tr", has_text=name)
        seen: list[str] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            page.get_by_role("button", name="Reload").click()
            page.wait_for_timeout(1000)
            if row.count():
                status = row.first.locator("td").nth(4).inner_text().strip()
                if not seen or seen[-1] != status:
                    seen.append(status)
                if status == "Queued" and sleepers:
                    testbed.login_exec("alice", ["scancel", *sleepers])  # room for it
                    sleepers = []
                if status in ("Completed", "Failed", "Stopped"):
                    break
        page.screenshot(path=str(DEBUG / "job-list.png"))
        assert seen, f"job {name} never showed in the job list within 240 s"
        assert seen[-1] == "Completed", seen
        assert "Queued" in seen and "In progress" in seen, seen

        row.first.get_by_text(name, exact=True).click()
        page.get_by_text("Job Detail").first.wait_for(timeout=30_000)
        page.get_by_text("Parameter value").first.wait_for(timeout=30_000)
        detail = page.locator("#jp-main-dock-panel").inner_text()
        page.screenshot(path=str(SHOTS / "batch-job-detail.png"))
    finally:
        page.screenshot(path=str(DEBUG / "last.png"), full_page=True)
        page.close()
        if sleepers:  # left running, they would fill alice's QOS for the next tests
            testbed.login_exec("alice", ["scancel", *sleepers])
    assert re.search(r"job \d+: completed on c\d+ \(exit code 0\)", detail), detail
    (job,) = [j for j in lab.jobs() if j["name"] == name]
    executed = json.loads(home_text(testbed, "alice", "cat", "/home/alice/" + next(
        f["file_path"] for f in job["job_files"] if f["file_format"] == "ipynb")))
    assert "square 36" in json.dumps(executed)  # the dialog's parameter took effect
    assert home_text(testbed, "alice", "cat", f"{job_folder(job)}/square.txt") == "36"
    # "Run job with input folder": the notebook's neighbours were copied in beside it
    spec = json.loads(home_text(testbed, "alice", "cat", f"{job_folder(job)}/hpcbridge-job.json"))
    assert "square.ipynb" in spec["inputs"] and "slow-square.ipynb" not in spec["inputs"]
    assert "square.ipynb" in home_text(testbed, "alice", "ls", job_folder(job)).split()


def test_a_sweep_from_the_dialog_runs_as_one_array_and_shows_each_task(
        lab: Lab, hub, testbed, browser) -> None:  # type: ignore[no-untyped-def]
    # the parameter "sweep" names a YAML file of parameter sets in alice's home; first one
    # her QOS cannot queue (MaxSubmitJobsPerUser=8): the dialog shows the sentence (HTTP 400)
    def sweep_file(sets: list[int]) -> None:
        # each run long enough for the list (asking every 10 s) to see it running
        testbed.exec("login", ["tee", "/home/alice/batchtests/browser-sweep.yaml"],
                     user="alice", check=True,
                     input="".join(f"- {{n: {n}, pause: 12}}\n" for n in sets).encode())

    sweep_file(list(range(9)))
    name = f"sweep-{uuid.uuid4().hex[:6]}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        fill_create_job(page, hub, "batchtests/square.ipynb", name,
                        ("sweep", "batchtests/browser-sweep.yaml"))
        page.get_by_role("button", name="Create", exact=True).click()
        refusal = page.get_by_text("a sweep of 9 runs does not fit: your QOS normal lets you "
                                   "queue 8 jobs at once")
        refusal.wait_for(timeout=30_000)
        page.screenshot(path=str(SHOTS / "batch-sweep-refused.png"))
        assert not [j for j in lab.jobs() if j["name"] == name]  # nothing stored

        sweep_file([2, 3])
        page.get_by_role("button", name="Create", exact=True).click()
        row = page.locator("tr", has_text=name)
        seen: list[str] = []
        messages: list[str] = []  # the entry's message: the tasks summed up
        deadline = time.monotonic() + 300  # two papermill runs on a loaded node
        while time.monotonic() < deadline:
            page.get_by_role("button", name="Reload").click()
            page.wait_for_timeout(1000)
            messages += [j.get("status_message", "") for j in lab.jobs() if j["name"] == name]
            if row.count():
                status = row.first.locator("td").nth(4).inner_text().strip()
                if not seen or seen[-1] != status:
                    seen.append(status)
                if status in ("Completed", "Failed", "Stopped"):
                    break
        assert seen and seen[-1] == "Completed", (seen, messages)
        assert any(re.search(r" of 2 completed, .*running on c\d", m) for m in messages), \
            messages
        row.first.get_by_text(name, exact=True).click()
        page.get_by_text("Job Detail").first.wait_for(timeout=30_000)
        page.get_by_text("Task 1 (n=3, pause=12): Notebook").first.wait_for(timeout=30_000)
        detail = page.locator("#jp-main-dock-panel").inner_text()
        page.screenshot(path=str(SHOTS / "batch-sweep-detail.png"))
    finally:
        page.screenshot(path=str(DEBUG / "sweep-last.png"), full_page=True)
        page.close()
    sid = re.search(r"job (\d+): 2 of 2 completed", detail)
    assert sid, detail
    # one submission: one array whose 2 tasks ran
    tasks = home_text(testbed, "alice", "sacct", "-n", "-X", "-P", "-j", sid.group(1),
                      "-o", "JobID,State").split()
    assert sorted(tasks) == [f"{sid.group(1)}_{i}|COMPLETED" for i in range(2)], tasks
    (job,) = [j for j in lab.jobs() if j["name"] == name]
    links = {f["file_format"]: f["file_path"] for f in job["job_files"]}
    for i, n in enumerate((2, 3)):  # each task's executed notebook, with its value
        executed = home_text(testbed, "alice", "cat", "/home/alice/" + links[f"task-{i}-ipynb"])
        assert f"square {n * n}" in executed


def test_run_on_a_schedule_from_the_dialog_becomes_an_entry_of_her_crontab(
        lab: Lab, hub, testbed, browser) -> None:  # type: ignore[no-untyped-def]
    # the dialog's default schedule (weekdays at 00:00) runs no run during the test; the
    # runs themselves: tests/testbed/test_batch_live.py and test_batch_hubcron_live.py
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    def_id = None
    try:
        fill_create_job(page, hub, "batchtests/square.ipynb", name, ("n", "5"))
        page.get_by_text("Run on a schedule", exact=True).click()
        page.get_by_role("button", name="Create", exact=True).click()
        # the dialog gives way to the list of definitions, which shows the new one
        row = page.locator("tr", has_text=name).first
        row.wait_for(timeout=30_000)
        assert "Monday through Friday" in row.inner_text() and "Active" in row.inner_text()
        (found,) = [d for d in lab.call("GET", "/scheduler/job_definitions").json()[
            "job_definitions"] if d["name"] == name]
        def_id = found["job_definition_id"]
        assert (found["schedule"], found["active"], found["parameters"]) == (
            "0 0 * * 1-5", True, {"n": "5"}), found

        def entry() -> str:  # the line of her crontab that starts the runs
            tab = testbed.login_exec("alice", ["scrontab", "-l"]).stdout.decode()
            block = tab.split(f"# hpcbridge job definition {def_id}: begin", 1)[1]
            return "".join(ln for ln in block.split(": end", 1)[0].splitlines()[1:]
                           if ln and not ln.startswith("#"))

        assert entry().startswith("0 0 * * 1-5 /"), entry()
        row.get_by_role("button", name="Pause").click()  # the list's own button
        row.get_by_text("Paused").wait_for(timeout=30_000)
        page.screenshot(path=str(DEBUG / "definition-paused.png"))
        assert entry() == ""  # no runs while paused
    finally:
        page.screenshot(path=str(DEBUG / "schedule-last.png"), full_page=True)
        page.close()
        # also one the dialog made before a step failed: left, it would run every weekday
        for found in lab.call("GET", "/scheduler/job_definitions").json()["job_definitions"]:
            if found["name"] == name:
                lab.call("DELETE", f"/scheduler/job_definitions/{found['job_definition_id']}")
    assert f"{def_id}: begin" not in testbed.login_exec(
        "alice", ["scrontab", "-l"]).stdout.decode()

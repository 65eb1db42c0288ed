"""The spawn form in a real browser (Debian's Chromium driven by Playwright).

Also writes the screenshots used in the docs, so they always show what users see.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import requests
import pytest

from tests.testbed.hubtools import log_in, sbatch_sleepers, squeue

pytestmark = pytest.mark.testbed

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
USER_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "user"
#: npm's axe-core, installed by ./dev beside the venv
AXE = Path(sys.prefix) / "node" / "node_modules" / "axe-core" / "axe.min.js"


def serious_axe_violations(page) -> list[str]:
    """axe-core's serious and critical violations on the page, one line each."""
    assert AXE.is_file(), f"{AXE} is missing: ./dev installs axe-core"
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.filter(v => ['serious', 'critical'].includes(v.impact))
          .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' — ' +
               v.nodes.map(n => n.target.join(' ')).join(', '));
    }""")
    return list(found)


def tab_to(page, selector: str, presses: int = 60) -> None:
    """Press Tab until ``selector`` has the focus (keyboard only)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement === document.querySelector(s)",
                         selector):
            return
    raise AssertionError(f"{selector} never got the focus by Tab")


def test_spawn_through_the_form_lands_in_jupyterlab_on_a_compute_node(hub, testbed, browser):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{hub.url}/hub/login?next=/hub/spawn")
    page.fill("#username_input", "bob")
    page.fill("#password_input", hub.passwords["bob"])
    page.click("#login_submit")
    page.wait_for_selector("#hpcb-partition")

    # the partition table: each partition's limits and what is free now, from one
    # shared sinfo snapshot whose age the form says
    table = page.locator("#hpcb-partition table")
    gpu_row = table.locator("tr", has=page.locator("input[value=gpu]")).inner_text()
    assert "2 GPUs (fake) per node" in gpu_row and "walltime up to 02:00:00" in gpu_row
    assert re.search(r"GPUs fake: [0-2] of 2", gpu_row)
    assert re.search(r"Free now: from the scheduler \d+ s ago", table.inner_text())
    page.check("input[name=partition][value=gpu]")
    assert page.locator("#hpcb-gpus").get_attribute("max") == "2"
    # GPUs by type and count: the real sbatch --test-only accepts gres gpu:fake:1
    page.select_option("#hpcb-gpu_type", "fake")
    page.fill("#hpcb-gpus", "1")
    start = page.locator("#hpcb-start")
    page.wait_for_function("document.getElementById('hpcb-start').textContent"
                           ".includes(' on c3')", timeout=30_000)
    assert start.inner_text().startswith("Estimated start: ")
    assert " on c3" in start.inner_text()  # the GPU node
    assert re.fullmatch(r"This request costs [\d.]+ core-hours?\.",
                        page.locator("#hpcb-cost").inner_text())
    page.check("input[name=partition][value=debug]")
    assert page.locator("#hpcb-gpus").is_disabled() and page.locator("#hpcb-gpu_type").is_disabled()
    options = page.locator("#hpcb-account option").all_inner_texts()
    assert "proj_a" in options and "proj_b" not in options  # bob's associations only
    # the default preset on the debug partition: its hour is brought within the 30 minutes
    # (clicking its card, already chosen, applies its values again)
    page.click("label[for=hpcb-preset-1]")
    assert page.locator("input[name=partition][value=regular]").is_checked()
    assert page.locator("#hpcb-walltime").input_value() == "01:00:00"
    page.check("input[name=partition][value=debug]")
    assert page.locator("#hpcb-walltime").input_value() == "00:30:00"
    assert page.locator("#hpcb-cores").input_value() == "2"
    page.wait_for_function("/costs 1 core-hour[.;]/"
                           ".test(document.getElementById('hpcb-cost').textContent)",
                           timeout=30_000)
    assert "now on c" in start.inner_text() or "in about" in start.inner_text()
    page.screenshot(path=str(USER_SHOTS / "spawn-estimate.png"), full_page=True)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "spawn-form.png"), full_page=True)
    assert serious_axe_violations(page) == []

    # a refused submit keeps what was chosen and says why next to the field
    page.fill("#hpcb-walltime", "00:45:00")
    page.fill("#hpcb-cores", "3")
    page.click("form button[type=submit], form input[type=submit]")
    error = page.locator("#hpcb-walltime-error")
    error.wait_for()
    assert error.inner_text() == ("Walltime 00:45:00 is over partition debug's "
                                  "max_walltime 00:30:00.")
    assert page.locator("input[name=partition][value=debug]").is_checked()
    assert page.locator("input[name=preset][value=small]").is_checked()
    assert page.locator("#hpcb-walltime").input_value() == "00:45:00"
    assert page.locator("#hpcb-cores").input_value() == "3"
    assert page.locator("#hpcb-account").input_value() == ""
    assert "HTTP" not in page.locator("body").inner_text()
    assert not page.locator(".spawn-error-msg").is_visible()  # said once, by the field
    assert not [j for j in squeue(testbed, "bob", "%j") if j[0].startswith("hpcb-nb")]
    page.screenshot(path=str(SHOTS / "spawn-form-refused.png"), full_page=True)
    assert serious_axe_violations(page) == []

    # keyboard only: Tab into the walltime (Chromium selects its text), type, Tab on to
    # the submit button, Enter; a short walltime, so that JupyterLab warns at once
    page.locator("body").focus()
    tab_to(page, "#hpcb-walltime")
    page.keyboard.type("00:05:00")
    tab_to(page, "form button[type=submit], form input[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_url("**/user/bob/lab**", timeout=180_000)
    page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
    # the status bar counts the job's walltime down; under 10 minutes left, a warning
    left = page.locator(".hpcb-walltime")
    left.wait_for(timeout=30_000)
    # of the job's 5 minutes, what the queue and a loaded machine leave by now
    assert re.match(r"Walltime left: 0:0[0-5]:\d\d", left.inner_text())
    warning = page.get_by_text("reaches its walltime in").first
    warning.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)  # let the splash screen fade
    page.screenshot(path=str(SHOTS / "jupyterlab.png"))

    job_id = hub.server("bob")["state"]["job_id"]
    assert re.search(f"batch job {job_id} reaches its walltime in [0-5] minutes?: save your "
                     "work", warning.inner_text())
    (job,) = [j for j in squeue(testbed, "bob", "%i", "%T", "%N", "%P", "%l")
              if j[0] == job_id]
    assert job[1] == "RUNNING" and job[2] in testbed.info().nodes
    assert job[3:] == ["debug", "5:00"]
    hub.stop("bob")
    hub.wait_stopped("bob")

    # "Add New Server" on the home page opens the new server's form
    page.goto(f"{hub.url}/hub/home")
    page.fill(".new-server-name", "second")
    page.click(".new-server-btn")
    page.wait_for_url("**/hub/spawn/bob/second**")
    page.wait_for_selector("#hpcb-partition")
    assert hub.request("DELETE", "/users/bob/servers/second",
                       json={"remove": True}).status_code in (202, 204)
    page.close()
    # every option is checked by the spawner: JupyterHub finds none it does not handle
    log = (hub.runner.dir / "jupyterhub.log").read_text(errors="replace")
    assert "nhandled user_option" not in log


def test_a_request_over_the_budget_is_refused_with_the_numbers_and_keeps_its_values(
        hub, testbed, browser):
    """carol's account proj_b has a budget of one core-hour (less what the session used):
    the form says what a request costs against it, and the hub refuses one over it."""
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    try:
        log_in(page, hub, "carol")
        page.wait_for_selector("#hpcb-partition")
        page.check("input[name=preset][value=small]")  # 2 cores for an hour on regular
        over = r"This request costs 2 core-hours; account proj_b has [\d.]+ left\."
        page.wait_for_function("document.getElementById('hpcb-cost').textContent"
                               ".includes('Over budget')", timeout=30_000)
        assert re.fullmatch(over + " Over budget: the hub will refuse this request.",
                            page.locator("#hpcb-cost").inner_text())
        assert page.locator("#hpcb-start").inner_text().startswith("Estimated start: ")
        page.fill("#hpcb-memory", "3G")
        page.click("form button[type=submit], form input[type=submit]")
        error = page.locator("#hpcb-account-error")
        error.wait_for()
        assert re.fullmatch(over, error.inner_text())
        assert page.locator("input[name=preset][value=small]").is_checked()
        assert page.locator("input[name=partition][value=regular]").is_checked()
        assert page.locator("#hpcb-memory").input_value() == "3G"
        assert page.locator("#hpcb-walltime").input_value() == "01:00:00"
        assert not squeue(testbed, "carol", "%i")  # nothing submitted
        assert hub.server("carol") == {} or not hub.server("carol").get("ready")
        page.screenshot(path=str(USER_SHOTS / "spawn-over-budget.png"), full_page=True)
        # the estimate answers a logged-in user only (the page's cookie), as JSON
        answer = page.request.get(f"{hub.url}/hub/hpcbridge/estimate?preset=debug")
        assert answer.ok and answer.json()["cost"].startswith("This request costs 0.5")
        anonymous = requests.get(f"{hub.url}/hub/hpcbridge/estimate?preset=debug",
                                 allow_redirects=False, timeout=30)
        assert anonymous.status_code in (302, 403) and "cost" not in anonymous.text
    finally:
        page.close()


def test_cancel_on_a_queued_spawn_leaves_no_job_and_returns_to_the_form(hub, testbed, browser):
    if hub.server("alice"):
        hub.stop("alice")
        hub.wait_stopped("alice")
    sleepers = sbatch_sleepers(testbed, "alice", 4)  # QOS normal: 4 jobs per user
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    try:
        log_in(page, hub, "alice")
        page.wait_for_selector("#hpcb-partition")
        page.check("input[name=preset][value=debug]")
        page.click("form button[type=submit], form input[type=submit]")
        page.wait_for_url("**/spawn-pending/alice**")
        page.wait_for_function(
            "document.getElementById('progress-message').textContent.includes('queued')",
            timeout=60_000)
        job_id = hub.server("alice")["state"]["job_id"]
        assert page.locator("#stop-server-btn").inner_text() == "Cancel"
        page.click("#stop-server-btn")
        page.wait_for_url("**/hub/spawn/alice**")
        page.wait_for_selector("#hpcb-partition")
        assert (f"job {job_id} was cancelled while it was queued"
                in page.locator(".alert-warning").inner_text())
        assert job_id not in [j[0] for j in squeue(testbed, "alice", "%i")]
        assert hub.server("alice") == {}
    finally:
        page.close()
        testbed.login_exec("alice", ["scancel", *sleepers])

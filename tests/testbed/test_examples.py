"""The example notebooks of docs/examples run on the testbed, as alice on the login node.

They are copied into alice's home, executed there with nbclient by the testbed's own
Python (``tests/testbed/examples_runner.py``), so their Dask workers are real batch jobs
under alice's QOS; the figures they save are copied back into docs/examples/output/,
which the documentation shows. The notebooks can therefore never rot unnoticed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hpcbridge.profiles.jobcopy import JOB_PROFILE_ENV, job_copy_json
from slurm_testbed.cluster import PYTHON
from slurm_testbed.profiles import load_bundled_profile

pytestmark = pytest.mark.testbed

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
NOTEBOOKS = ("climatology.ipynb", "scaling.ipynb")
USER = "alice"
HOME = f"/home/{USER}"
WORKDIR = f"{HOME}/hpcbridge-examples"
#: where climatology.ipynb writes its Zarr store
DATA = f"{HOME}/scratch/tas_daily.zarr"
#: the brief for the examples: each runs in about 3 minutes on a 2-core machine
MAX_SECONDS = 300


def run_as_alice(testbed, argv: list[str], **kw):  # type: ignore[no-untyped-def]
    proc = testbed.login_exec(USER, argv, **kw)
    assert proc.returncode == 0, (argv, proc.stderr.decode(errors="replace")[-2000:])
    return proc


def outputs_text(notebook: dict) -> str:
    """Every stream and plain-text output of an executed notebook, in order."""
    parts = []
    for cell in notebook["cells"]:
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                parts.append("".join(out["text"]))
            elif "text/plain" in out.get("data", {}):
                parts.append("".join(out["data"]["text/plain"]))
    return "\n".join(parts)


@pytest.fixture
def workdir(testbed):  # type: ignore[no-untyped-def]
    testbed.login_exec(USER, ["rm", "-rf", WORKDIR])
    run_as_alice(testbed, ["mkdir", "-p", WORKDIR])
    for name in NOTEBOOKS:
        run_as_alice(testbed, ["tee", f"{WORKDIR}/{name}"],
                     input=(EXAMPLES / name).read_bytes())
    yield WORKDIR
    testbed.login_exec(USER, ["rm", "-rf", WORKDIR, DATA])


def test_example_notebooks_run_as_alice_on_the_login_node(testbed, workdir) -> None:  # type: ignore[no-untyped-def]
    # hpcbridge.dask.cluster() finds the site profile as in a server the hub started: its
    # job copy in the environment (a login shell of a center's gets HPCBRIDGE_SITE_PROFILE)
    copy = job_copy_json(load_bundled_profile("testbed", testbed.profile_env()))
    proc = testbed.login_exec(
        USER, [PYTHON, "-m", "tests.testbed.examples_runner",
               *(f"{workdir}/{name}" for name in NOTEBOOKS)],
        timeout=len(NOTEBOOKS) * MAX_SECONDS + 120, env={JOB_PROFILE_ENV: copy})
    reports = [json.loads(line) for line in proc.stdout.decode().splitlines()
               if line.startswith("{")]
    assert [r["notebook"] for r in reports] == list(NOTEBOOKS), proc.stderr.decode()[-3000:]
    for report in reports:
        print(f"{report['notebook']}: {report['seconds']} s")
        assert report["error"] is None, f"{report['notebook']}:\n{report['error']}"
        assert report["seconds"] < MAX_SECONDS, report
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]

    executed = {name: json.loads(run_as_alice(testbed, ["cat", f"{workdir}/{name}"]).stdout)
                for name in NOTEBOOKS}
    climatology = outputs_text(executed["climatology.ipynb"])
    trend = re.search(r"trend of the annual means: (-?[0-9.]+)", climatology)
    assert trend and 0.15 < float(trend[1]) < 0.35, climatology  # made with 0.25
    scaling = outputs_text(executed["scaling.ipynb"])
    assert "not 16:" in scaling and "QOS normal allows 4 jobs per user" in scaling, scaling
    assert "same result as on the laptop" in scaling, scaling
    for text in (climatology, scaling):
        assert "worker jobs still in the queue: []" in text, text

    listing = run_as_alice(testbed, ["ls", f"{workdir}/output"]).stdout.decode().split()
    figures = sorted(name for name in listing if name.endswith(".png"))
    assert figures == ["climatology-map.png", "climatology-timeseries.png",
                       "scaling-times.png"], listing
    (EXAMPLES / "output").mkdir(exist_ok=True)
    for name in figures:
        png = run_as_alice(testbed, ["cat", f"{workdir}/output/{name}"]).stdout
        assert png.startswith(b"\x89PNG"), name
        (EXAMPLES / "output" / name).write_bytes(png)

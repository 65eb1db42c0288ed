"""The package as a center installs it: a wheel and an sdist built from this checkout, the
wheel installed into a clean virtual environment with only its declared dependencies (at
the versions of requirements/dev.txt), and the commands and entry point a hub uses.
The testbed (slurm_testbed) is a distribution of its own: none of it is in that wheel."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
#: distribution name -> the top-level modules it provides, where they differ (pydantic's
#: own documentation has users import pydantic_core's schema types)
PROVIDES = {"pyyaml": {"yaml"}, "dask-jobqueue": {"dask_jobqueue"},
            "pydantic": {"pydantic", "pydantic_core"},
            # its exceptions are part of the authenticator's behaviour we handle
            "jupyterhub-ldapauthenticator": {"ldapauthenticator", "ldap3"}}
#: extras for optional integrations: their modules import them only when configured
OPTIONAL_EXTRAS = ("ldap", "postgres", "batch")
#: the testbed's package: its own distribution (slurm_testbed/pyproject.toml)
TESTBED = "slurm_testbed"


def run(argv: list[str], cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd, env=env)
    output = proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, f"{' '.join(argv[:4])} ...: {output}"
    return proc


def imported_by(package: Path) -> set[str]:
    """Top-level modules that the code under ``package`` imports."""
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_runtime_dependencies_are_exactly_what_hpcbridge_imports() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    imports = imported_by(ROOT / "hpcbridge") - set(sys.stdlib_module_names) - {"hpcbridge"}
    assert TESTBED not in imports, "hpcbridge imports the testbed"
    provided: set[str] = set()
    unused = []
    for text in project["dependencies"]:
        name = canonicalize_name(Requirement(text).name)
        modules = PROVIDES.get(name, {name.replace("-", "_")})
        provided |= modules
        if not modules & imports:
            unused.append(name)
    assert not unused, f"declared but never imported by hpcbridge: {unused}"
    for extra in OPTIONAL_EXTRAS:
        for text in project["optional-dependencies"][extra]:
            name = canonicalize_name(Requirement(text).name)
            provided |= PROVIDES.get(name, {name.replace("-", "_")})
    undeclared = sorted(imports - provided)
    assert not undeclared, f"imported by hpcbridge but not declared: {undeclared}"


def test_the_testbed_declares_what_it_imports_and_the_lock_holds_it() -> None:
    project = tomllib.loads((ROOT / TESTBED / "pyproject.toml").read_text())["project"]
    declared = {canonicalize_name(Requirement(t).name) for t in project["dependencies"]}
    imports = imported_by(ROOT / TESTBED) - set(sys.stdlib_module_names) - {TESTBED}
    assert {n.replace("-", "_") for n in declared} == imports
    # ./dev installs the testbed with --no-deps: hpcbridge's runtime dependencies and its
    # testbed extra, both in requirements/dev.txt, must cover it
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = {canonicalize_name(Requirement(t).name)
              for t in ours["dependencies"] + ours["optional-dependencies"]["testbed"]}
    assert declared - {"hpcbridge"} <= locked, declared - locked


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(dist), str(ROOT)])
    return dist


def test_wheel_and_sdist_build(built: Path) -> None:
    names = sorted(p.name for p in built.iterdir())
    assert any(n.endswith(".whl") for n in names) and any(n.endswith(".tar.gz") for n in names)


def test_the_wheel_carries_no_testbed(built: Path) -> None:
    with zipfile.ZipFile(next(built.glob("*.whl"))) as wheel:
        files = wheel.namelist()
    assert any(f.startswith("hpcbridge/spawner/") for f in files)
    assert {"hpcbridge/spawner/templates/home.html",  # configure()'s page templates
            "hpcbridge/spawner/templates/spawn_pending.html"} <= set(files)
    testbed = [f for f in files if "testbed" in f.split("/")[0] or f.endswith("testbed.yaml")]
    assert not testbed, testbed


def test_the_testbed_wheel_has_its_profiles_and_commands(tmp_path: Path) -> None:
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path),
         str(ROOT / TESTBED)])
    with zipfile.ZipFile(next(tmp_path.glob("*.whl"))) as wheel:
        files = wheel.namelist()
        entry_points = next(wheel.read(f).decode() for f in files
                            if f.endswith(".dist-info/entry_points.txt"))
    assert f"{TESTBED}/site_profiles/testbed.yaml" in files and f"{TESTBED}/cli.py" in files
    assert not [f for f in files if f.startswith("hpcbridge/")]
    assert "[hpcbridge.cli]" in entry_points and f"{TESTBED}.cli:register" in entry_points


def test_the_wheel_works_from_a_clean_venv(built: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    # the lock's versions, without its hashes (pip takes none in a constraints file)
    constraints = tmp_path / "constraints.txt"
    pins = re.findall(r"^([A-Za-z0-9][^\s=]*==[^\s;\\]+(?:\s*;[^\\\n]+)?)",
                      (ROOT / "requirements" / "dev.txt").read_text(), re.MULTILINE)
    constraints.write_text("\n".join(pins) + "\n")
    wheel = next(built.glob("*.whl"))
    run([str(py), "-m", "pip", "install", "-q", "-c", str(constraints), str(wheel)])

    shown = run([str(py), "-m", "pip", "show", "hpcbridge"]).stdout
    requires = re.search(r"^Requires: (.*)$", shown, re.MULTILINE)
    assert requires is not None
    listed = {canonicalize_name(n.strip()) for n in requires.group(1).split(",") if n.strip()}
    assert "batchspawner" not in listed and "wrapspawner" not in listed, listed

    away = tmp_path / "elsewhere"  # not the checkout, so nothing is imported from it
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    hpcbridge = str(venv / "bin" / "hpcbridge")
    assert "profile" in run([hpcbridge, "--help"], cwd=away, env=env).stdout
    absent = run([str(py), "-c", "import importlib.util\n"
                  f"print(importlib.util.find_spec({TESTBED!r}) is None)"], cwd=away, env=env)
    assert absent.stdout.strip() == "True"
    # the testbed's commands say where they come from rather than failing obscurely
    for argv in (["testbed", "up"], ["up"]):
        proc = subprocess.run([hpcbridge, *argv], capture_output=True, text=True, cwd=away,
                              env=env, check=False)
        assert proc.returncode != 0 and "install" in proc.stderr, proc.stderr
        assert TESTBED in proc.stderr and "./dev" in proc.stderr, proc.stderr
    run([hpcbridge, "profile", "validate", str(ROOT / "site_profiles" / "example-slurm-gpu.yaml")],
        cwd=away, env=env)
    spawner = run([str(py), "-c",
                   "from importlib.metadata import entry_points\n"
                   "cls = entry_points(group='jupyterhub.spawners')['hpcbridge'].load()\n"
                   "import hpcbridge; print(cls.__module__, hpcbridge.__file__)"],
                  cwd=away, env=env).stdout
    module, location = spawner.split()
    assert module.startswith("hpcbridge.spawner") and str(venv) in location

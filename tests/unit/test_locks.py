"""The lock files agree with what they lock (``./dev lock`` writes them).

requirements/dev.txt pins .venv (the package with its test, docs, bench, postgres, ldap, lock
extras); containers/slurm/requirements-pyX.Y.txt pin the compute nodes' Python of each
Slurm generation from requirements.in.
A range edited in pyproject.toml or requirements.in that the lock no longer satisfies, or a
new dependency missing from the lock, fails here with the command that fixes it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from slurm_testbed.generations import GENERATIONS
from slurm_testbed.images import node_lock

ROOT = Path(__file__).resolve().parents[2]
DEV_LOCK = ROOT / "requirements" / "dev.txt"
NODE_INPUT = ROOT / "containers" / "slurm" / "requirements.in"
DEV_EXTRAS = ("test", "docs", "bench", "postgres", "ldap", "lock")
FIX = "run ./dev lock (see docs/dependencies.md)"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


NODE_LOCKS = sorted({node_lock(gen) for gen in GENERATIONS.values()})


def read_lock(path: Path) -> dict[str, Version]:
    """Package -> pinned version, for this interpreter (markers evaluated)."""
    pins: dict[str, Version] = {}
    for line in path.read_text().splitlines():
        m = PIN.match(line)
        if m is None:
            continue
        name, version, marker = m.groups()
        if marker is None or Marker(marker).evaluate():
            pins[canonicalize_name(name)] = Version(version)
    return pins


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted, found, seen = list(DEV_EXTRAS), list(project["dependencies"]), set()
    while wanted:  # extras may name others: hpcbridge[testbed]
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in extras[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == canonicalize_name(project["name"]):
                wanted.extend(req.extras)
            else:
                found.append(text)
    return [Requirement(t) for t in found]


def unsatisfied(requirements: list[Requirement], pins: dict[str, Version]) -> list[str]:
    problems = []
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate():
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req} is not in the lock")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req} but the lock has {pinned}")
    return problems


def test_the_dev_lock_satisfies_pyproject() -> None:
    problems = unsatisfied(project_requirements(), read_lock(DEV_LOCK))
    assert not problems, f"{DEV_LOCK.relative_to(ROOT)}: " + "; ".join(problems) + f": {FIX}"


def test_every_generation_has_a_node_lock_and_no_other_is_left() -> None:
    present = sorted(NODE_INPUT.parent.glob("requirements-py*.txt"))
    assert present == NODE_LOCKS, f"node locks {present}, generations need {NODE_LOCKS}: {FIX}"


@pytest.mark.parametrize("lock", NODE_LOCKS, ids=lambda p: p.stem)
def test_a_node_lock_satisfies_its_input_without_markers(lock: Path) -> None:
    lines = [line.split("#")[0].strip() for line in NODE_INPUT.read_text().splitlines()]
    requirements = [Requirement(line) for line in lines if line]
    problems = unsatisfied(requirements, read_lock(lock))
    assert not problems, f"{lock.relative_to(ROOT)}: " + "; ".join(problems) + f": {FIX}"
    # pip on the host would read markers for the host's Python, not the node's
    assert " ; " not in lock.read_text(), f"{lock.name} has environment markers: {FIX}"


@pytest.mark.parametrize("lock", [DEV_LOCK, *NODE_LOCKS], ids=lambda p: p.stem)
def test_every_pin_carries_hashes(lock: Path) -> None:
    text = lock.read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    bare = [e.split()[0] for e in entries if "==" in e and "--hash=sha256:" not in e]
    assert not bare, f"{lock.name}: pinned without a hash: {bare}: {FIX}"
    assert "--index-url" not in text and "--find-links" not in text  # no machine's index


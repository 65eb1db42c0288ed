"""Testbed images: built once, reused until their inputs change.

Each tag is a content hash of the image's build inputs (its Containerfile folder and the
tag of the image it starts from), so ``testbed up`` rebuilds only what changed.

Each Slurm generation (generations.py) has its own set: with no container registry, the
Debian base is a ``debootstrap`` of the generation's suite (bookworm, trixie) imported into
the engine; where a registry exists (``HPCBRIDGE_BASE_IMAGE=debian:bookworm``,
``HPCBRIDGE_BASE_IMAGE_TRIXIE=debian:trixie``) the same Containerfiles start from the
official image. Python wheels for the nodes' Python version are fetched by pip on the host
(which knows the site's index and proxy) so no build step needs network beyond the Debian
mirror.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from slurm_testbed.errors import TestbedError

from .engine import REPO, Engine
from .generations import Generation

CONTAINERS = REPO / "containers"
Progress = Callable[[str], None]
#: the mirror URI of a one-line ("deb [opts] URI") or deb822 ("URIs: URI") apt source
DEBIAN_SOURCE_URI = r"(?:^deb\s+(?:\[[^\]]*\]\s+)?|^URIs:\s*)(\S+/debian)/?\s"


def _hash_tree(*parts: str | Path) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            for f in sorted(p for p in part.rglob("*") if p.is_file()):
                h.update(f.relative_to(part).as_posix().encode())
                h.update(f.read_bytes())
        else:
            h.update(part.encode())
    return h.hexdigest()[:12]


def image_name(engine: Engine, name: str, tag: str) -> str:
    prefix = "localhost/" if engine.kind == "podman" else ""
    return f"{prefix}hpcbridge-testbed/{name}:{tag}"


def image_exists(engine: Engine, ref: str) -> bool:
    return engine.run("image", "inspect", ref, check=False).returncode == 0


def debian_mirror() -> str:
    """The Debian mirror configured in this machine's apt sources."""
    if os.environ.get("HPCBRIDGE_DEBIAN_MIRROR"):
        return os.environ["HPCBRIDGE_DEBIAN_MIRROR"]
    files = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for m in re.finditer(DEBIAN_SOURCE_URI, text, re.MULTILINE):
            return m.group(1)
    raise TestbedError(
        "no Debian mirror found in the apt sources; set HPCBRIDGE_DEBIAN_MIRROR "
        "(e.g. the http URL of a Debian mirror) or HPCBRIDGE_BASE_IMAGE=debian:bookworm "
        "(HPCBRIDGE_BASE_IMAGE_TRIXIE=debian:trixie for Slurm 24.11)"
    )


def _base_image_variable(gen: Generation) -> str:
    # bookworm's keeps its first name: HPCBRIDGE_BASE_IMAGE
    return "HPCBRIDGE_BASE_IMAGE" + ("" if gen.suite == "bookworm" else "_" + gen.suite.upper())


def suite_ref(engine: Engine, gen: Generation) -> str:
    """The image every image of a generation starts from (its name; it may not exist yet)."""
    if os.environ.get(_base_image_variable(gen)):
        return os.environ[_base_image_variable(gen)]
    return image_name(engine, gen.suite, _hash_tree(gen.suite, debian_mirror(), "minbase-v1"))


def ensure_suite(engine: Engine, gen: Generation, cache: Path, progress: Progress) -> str:
    """The image every image of a generation starts from, from debootstrap if missing."""
    ref = suite_ref(engine, gen)
    if os.environ.get(_base_image_variable(gen)) or image_exists(engine, ref):
        return ref
    mirror = debian_mirror()
    if not shutil.which("debootstrap"):
        raise TestbedError(
            "no base image: install debootstrap (apt-get install debootstrap) or set "
            f"{_base_image_variable(gen)}=debian:{gen.suite} where a registry is reachable"
        )
    progress(f"debootstrap {gen.suite} from the configured Debian mirror (about a minute)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        rootfs = Path(tmp) / "rootfs"
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", gen.suite, str(rootfs), mirror],
            capture_output=True, check=False,
        )
        if proc.returncode != 0:
            raise TestbedError("debootstrap failed:\n" + proc.stderr.decode()[-3000:])
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        engine.run("import", str(archive), ref)
    progress(f"imported {ref} in {time.monotonic() - started:.0f} s")
    return ref


def fetch_wheels(requirements: Path, dest: Path, python: str, progress: Progress) -> None:
    """Download manylinux wheels for the nodes' Python (the suite's own: 3.11 on bookworm,
    3.13 on trixie). Every platform tag listed needs a glibc older than either suite's.
    ``requirements`` is that Python's lock (``./dev lock``): exact versions, hash-checked,
    no markers (pip would read them for the host's Python)."""
    if dest.exists() and any(dest.iterdir()):
        return
    progress(f"downloading Python {python} wheels for the compute nodes from the lock "
             f"{requirements.name}")
    abi = "cp" + python.replace(".", "")
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    argv = [
        sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
        "--python-version", python, "--implementation", "cp", "--abi", abi,
        "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
        "--platform", "manylinux_2_17_x86_64", "--platform", "any",
        "--require-hashes", "--no-deps", "-d", str(tmp), "-r", str(requirements),
    ]
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        raise TestbedError("pip download of node wheels failed:\n" + proc.stderr.decode()[-3000:])
    tmp.rename(dest)


def _build(engine: Engine, ref: str, context: Path, base: str, progress: Progress) -> None:
    progress(f"building {ref}")
    started = time.monotonic()
    argv = [
        engine.cli, "build", "--network=host", "-f", str(context / "Containerfile"),
        "--build-arg", f"BASE={base}", "-t", ref, str(context),
    ]
    proc = subprocess.Popen(argv, env=engine.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    tail: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail = [*tail, line][-40:]
        if re.match(r"^(STEP \d+|Step \d+|#\d+ \[)", line):
            progress("  " + line[:120])
    if proc.wait() != 0:
        raise TestbedError(f"building {ref} failed:\n" + "\n".join(tail))
    progress(f"built {ref} in {time.monotonic() - started:.0f} s")


def node_lock(gen: Generation) -> Path:
    """The lock file of a generation's node Python: containers/slurm/requirements-pyX.Y.txt."""
    return CONTAINERS / "slurm" / f"requirements-py{gen.python}.txt"


def image_refs(engine: Engine, gen: Generation, suite: str | None = None) -> dict[str, str]:
    """Image name -> reference (content-hash tag) for the checkout's Containerfiles on a
    generation: ``suite``, ``base``, ``slurm``, ``db`` and ``ldap``. Builds nothing."""
    suite = suite or suite_ref(engine, gen)
    base = image_name(engine, "base", _hash_tree(suite, CONTAINERS / "base"))
    slurm = image_name(engine, "slurm", _hash_tree(base, CONTAINERS / "slurm"))
    db = image_name(engine, "db", _hash_tree(slurm, CONTAINERS / "db"))
    directory = image_name(engine, "ldap", _hash_tree(base, CONTAINERS / "ldap"))
    return {"suite": suite, "base": base, "slurm": slurm, "db": db, "ldap": directory}


def ensure_images(engine: Engine, gen: Generation, cache: Path,
                  progress: Progress) -> dict[str, str]:
    """Build (or reuse) a generation's base, slurm, db and ldap images; role -> reference."""
    cache.mkdir(parents=True, exist_ok=True)
    refs = image_refs(engine, gen, ensure_suite(engine, gen, cache, progress))
    suite, base, slurm, db = refs["suite"], refs["base"], refs["slurm"], refs["db"]

    if not image_exists(engine, base):
        _build(engine, base, CONTAINERS / "base", suite, progress)

    slurm_dir = CONTAINERS / "slurm"
    if not image_exists(engine, slurm):
        lock = node_lock(gen)
        # keyed by the lock's text and the Python: a change fetches wheels again
        wheels = cache / "wheels" / _hash_tree(lock.read_text(), gen.python)
        fetch_wheels(lock, wheels, gen.python, progress)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            ctx = Path(tmp) / "ctx"
            shutil.copytree(slurm_dir, ctx)
            shutil.copy(lock, ctx / "requirements.txt")  # what the Containerfile installs
            shutil.copytree(wheels, ctx / "wheels")
            _build(engine, slurm, ctx, base, progress)

    if not image_exists(engine, db):
        _build(engine, db, CONTAINERS / "db", slurm, progress)
    if not image_exists(engine, refs["ldap"]):
        _build(engine, refs["ldap"], CONTAINERS / "ldap", base, progress)
    return {"slurm": slurm, "db": db, "ldap": refs["ldap"]}

"""Walltimes, memory sizes and string grammars of site profiles."""

from __future__ import annotations

import pytest

from hpcbridge.profiles.types import Memory, Walltime


@pytest.mark.parametrize(
    ("text", "seconds", "shown"),
    [
        ("00:30:00", 1800, "00:30:00"),
        ("4:00:00", 14400, "04:00:00"),
        ("48:00:00", 172800, "48:00:00"),
        ("1-00:00:00", 86400, "24:00:00"),
        ("2-12", 216000, "60:00:00"),
        ("1-02:30", 95400, "26:30:00"),
        ("90", 5400, "01:30:00"),
        ("30:15", 1815, "00:30:15"),
    ],
)
def test_walltime_parses_slurm_formats(text: str, seconds: int, shown: str) -> None:
    value = Walltime.parse(text)
    assert value == seconds
    assert str(value) == shown


@pytest.mark.parametrize(
    "text", ["", "1h", "00:60:00", "00:00:60", "1-24:00:00", "00:00:00", "0", "1:2:3:4", " - "]
)
def test_walltime_refuses_bad_values(text: str) -> None:
    with pytest.raises(ValueError, match="is not a walltime"):
        Walltime.parse(text)


@pytest.mark.parametrize(
    ("text", "mib", "slurm", "pbs"),
    [
        ("4G", 4096, "4G", "4gb"),
        ("16GB", 16384, "16G", "16gb"),
        ("16GiB", 16384, "16G", "16gb"),
        ("512M", 512, "512M", "512mb"),
        ("1536M", 1536, "1536M", "1536mb"),
        ("1T", 1024 * 1024, "1T", "1tb"),
        ("2048K", 2, "2M", "2mb"),
        ("4gb", 4096, "4G", "4gb"),
    ],
)
def test_memory_parses_binary_units(text: str, mib: int, slurm: str, pbs: str) -> None:
    value = Memory.parse(text)
    assert value == mib * 1024**2
    assert str(value) == slurm
    assert value.pbs() == pbs


@pytest.mark.parametrize("text", ["16", "4 X", "1.5G", "100K", "G", "-1G", "0M"])
def test_memory_refuses_bad_values(text: str) -> None:
    with pytest.raises(ValueError, match="is not a memory size"):
        Memory.parse(text)

"""Scheduler adapters by name, their options from the profile, their capabilities."""

from __future__ import annotations

import pytest

from hpcbridge.profiles import render_script
from slurm_testbed.profiles import load_bundled_profile
from hpcbridge.profiles.loader import load_profile_text
from hpcbridge.profiles.request import JobRequest
from hpcbridge.errors import ProfileError
from hpcbridge.schedulers import PbsDialect, SlurmDialect, registry
from hpcbridge.schedulers.base import SchedulerDialect

PROFILE = """\
site: s
clusters:
  c:
    scheduler: {scheduler}
{extra}    partitions:
      debug: {{max_walltime: "00:30:00", cores_per_node: 8, memory_per_node: 16G}}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ProfileError) as info:
        load_profile_text(text, "p.yaml", {})
    return [str(p) for p in info.value.problems]


def test_builtin_names_and_did_you_mean() -> None:
    assert registry.names()[:2] == ["slurm", "pbs"]
    with pytest.raises(registry.UnknownScheduler, match="did you mean 'slurm'"):
        registry.dialect_class("slrum")


def test_every_builtin_adapter_implements_the_protocol() -> None:
    for name in ("slurm", "pbs"):
        assert isinstance(registry.dialect_for(name), SchedulerDialect)


def test_unknown_scheduler_is_a_profile_error_with_position() -> None:
    [problem] = problems(PROFILE.format(scheduler="slrum", extra=""))
    assert problem.startswith("p.yaml:4:16: clusters.c.scheduler: no such scheduler 'slrum'")
    assert "did you mean 'slurm'" in problem


def test_options_are_checked_against_the_adapter() -> None:
    extra = "    scheduler_options: {histroy: true}\n"
    [problem] = problems(PROFILE.format(scheduler="pbs", extra=extra))
    assert problem.startswith("p.yaml:5:") and "no option 'histroy'" in problem
    assert "did you mean 'history'" in problem
    extra = "    scheduler_options: {history: 'yes'}\n"
    [problem] = problems(PROFILE.format(scheduler="pbs", extra=extra))
    assert "must be a bool" in problem
    extra = "    scheduler_options: {flavor: sge}\n"
    [problem] = problems(PROFILE.format(scheduler="pbs", extra=extra))
    assert "no PBS flavor 'sge'" in problem


def test_profile_options_reach_the_dialect() -> None:
    extra = "    scheduler_options: {history: true}\n    pbs_flavor: torque\n"
    profile = load_profile_text(PROFILE.format(scheduler="pbs", extra=extra), "p.yaml", {})
    dialect = registry.dialect_of(profile.clusters["c"])
    assert isinstance(dialect, PbsDialect)
    assert dialect.history and dialect.flavor == "torque" and dialect.capabilities.history
    assert dialect.history_command(["1"]) is not None
    slurm = load_profile_text(PROFILE.format(
        scheduler="slurm", extra="    scheduler_options: {history: false}\n"), "p.yaml", {})
    assert registry.dialect_of(slurm.clusters["c"]).history_command(["1"]) is None


def test_a_site_adapter_registered_by_name_renders_scripts() -> None:
    class SiteSlurm(SlurmDialect):
        name = "siteslurm"

        def directives(self, req):  # type: ignore[no-untyped-def]
            return [*super().directives(req), "#SBATCH --comment=site"]

    registry.register("siteslurm", SiteSlurm)
    try:
        profile = load_profile_text(PROFILE.format(scheduler="siteslurm", extra=""),
                                    "p.yaml", {})
        script = render_script(profile, JobRequest(user="alice", job_name="j",
                                                   command=("python",)))
        assert "#SBATCH --comment=site" in script and "#SBATCH --partition=debug" in script
    finally:
        registry._classes.pop("siteslurm", None)


def test_rendered_scripts_are_the_adapters_directives() -> None:
    profile = load_bundled_profile("testbed", {})
    script = render_script(profile, JobRequest(user="alice", job_name="j", command=("python",)))
    assert "#SBATCH --no-requeue" in script
    assert not SlurmDialect().capabilities.unknown

"""SchedulerClient: dialect + transport, with a scripted transport standing in for hosts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from hpcbridge.client import SchedulerClient
from hpcbridge.errors import (
    HostKeyError,
    JobNotFound,
    SchedulerUnavailable,
    SubmitRefused,
    Unreachable,
)
from hpcbridge.jobs import JobState
from hpcbridge.schedulers import PbsDialect, SlurmDialect
from hpcbridge.transport.base import FileOpsMixin, Result

SLURM = Path(__file__).parent.parent / "fixtures" / "slurm"


class ScriptedLoginNode(FileOpsMixin):
    """Answers each command by its program name; records every call."""

    def __init__(self, answers: dict[str, Result | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[tuple[str, ...], str | None, bytes | None]] = []

    async def run(self, argv: Sequence[str], *, user: str | None = None,
                  stdin: bytes | None = None, timeout: float | None = None) -> Result:
        self.calls.append((tuple(argv), user, stdin))
        answer = self.answers.get(program(argv), Result(0, "", ""))
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        pass

    def programs(self) -> list[str]:
        return [program(argv) for argv, _, _ in self.calls]


def program(argv: Sequence[str]) -> str:
    """The program run, looking through an ``env VAR=value ...`` prefix."""
    words = list(argv)
    if words and words[0] == "env":
        words = [w for w in words[1:] if "=" not in w] or words
    return words[0]


def ok(out: str) -> Result:
    return Result(0, out, "")


def fail(err: str, rc: int = 1) -> Result:
    return Result(rc, "", err)


async def test_slurm_submit_sends_script_on_stdin_as_the_user() -> None:
    node = ScriptedLoginNode({"sbatch": ok("4321\n")})
    client = SchedulerClient(SlurmDialect(), node)
    assert await client.submit("alice", "#!/bin/bash\nsleep 1\n") == "4321"
    assert node.calls == [(("env", "SLURM_UMASK=0077", "sbatch", "--parsable"), "alice",
                           b"#!/bin/bash\nsleep 1\n")]


async def test_pbs_submit_writes_a_private_file_and_removes_it() -> None:
    node = ScriptedLoginNode({"mktemp": ok("/tmp/hpcbridge-job.abc\n"), "qsub": ok("77.pbs\n")})
    client = SchedulerClient(PbsDialect(), node)
    assert await client.submit("bob", "#PBS -l walltime=00:10:00\n") == "77.pbs"
    assert node.programs() == ["mktemp", "dd", "qsub", "rm"]
    dd = node.calls[1]
    assert dd[0] == ("dd", "of=/tmp/hpcbridge-job.abc", "status=none")
    assert dd[2] == b"#PBS -l walltime=00:10:00\n"
    assert node.calls[2][0] == ("qsub", "/tmp/hpcbridge-job.abc")
    assert all(user == "bob" for _, user, _ in node.calls)


async def test_pbs_refused_submit_still_removes_the_file() -> None:
    refusal = "qsub: Job violates queue and/or server resource limits"
    node = ScriptedLoginNode({"mktemp": ok("/tmp/f\n"), "qsub": fail(refusal)})
    with pytest.raises(SubmitRefused):
        await SchedulerClient(PbsDialect(), node).submit("bob", "x")
    assert node.programs()[-1] == "rm"


async def test_submit_refused_carries_slurms_words() -> None:
    node = ScriptedLoginNode({"sbatch": fail((SLURM / "sbatch_qos_refused.err").read_text())})
    with pytest.raises(SubmitRefused) as info:
        await SchedulerClient(SlurmDialect(), node).submit("alice", "x")
    assert "Job violates accounting/QOS policy" in info.value.user_message


async def test_status_asks_history_only_for_ids_that_left_the_queue() -> None:
    node = ScriptedLoginNode({
        "squeue": ok((SLURM / "squeue_mixed.txt").read_text()),
        "sacct": ok((SLURM / "sacct_final.txt").read_text()),
    })
    client = SchedulerClient(SlurmDialect(), node)
    infos = await client.status(["101", "117", "9999"], as_user="hpcbridge")
    assert node.programs() == ["squeue", "sacct"]
    assert "--jobs=117,9999" in node.calls[1][0]
    assert infos["101"].state is JobState.RUNNING
    assert infos["117"].state is JobState.CANCELLED
    assert infos["9999"].extra["absent"] == "true"
    assert {user for _, user, _ in node.calls} == {"hpcbridge"}


async def test_steady_state_costs_one_query() -> None:
    node = ScriptedLoginNode({"squeue": ok((SLURM / "squeue_mixed.txt").read_text())})
    await SchedulerClient(SlurmDialect(), node).status(["101", "102", "104", "200"])
    assert node.programs() == ["squeue"]


async def test_invalid_job_id_from_squeue_goes_to_history() -> None:
    node = ScriptedLoginNode({"squeue": fail("slurm_load_jobs error: Invalid job id specified"),
                              "sacct": ok((SLURM / "sacct_final.txt").read_text())})
    infos = await SchedulerClient(SlurmDialect(), node).status(["108"])
    assert infos["108"].state is JobState.COMPLETED


@pytest.mark.parametrize("answer", [
    fail("slurm_load_jobs error: Unable to contact slurm controller (connect failure)"),
    fail("slurm_load_jobs error: Socket timed out on send/recv operation"),
    Unreachable("squeue on login as hpcbridge timed out"),
])
async def test_outage_raises_unavailable_never_gone(answer: Result | Exception) -> None:
    node = ScriptedLoginNode({"squeue": answer})
    with pytest.raises(SchedulerUnavailable):
        await SchedulerClient(SlurmDialect(), node).status(["101"])
    assert node.programs() == ["squeue"]  # no history asked, nothing declared finished


async def test_history_outage_gives_unknown_for_jobs_that_left_the_queue() -> None:
    node = ScriptedLoginNode({"squeue": ok((SLURM / "squeue_mixed.txt").read_text()),
                              "sacct": fail((SLURM / "sacct_dbd_down.err").read_text())})
    infos = await SchedulerClient(SlurmDialect(), node).status(["101", "117"])
    assert infos["101"].state is JobState.RUNNING
    assert infos["117"].state is JobState.UNKNOWN


async def test_host_key_errors_pass_through() -> None:
    node = ScriptedLoginNode({"squeue": HostKeyError("host key of login:22 is not pinned")})
    with pytest.raises(HostKeyError):
        await SchedulerClient(SlurmDialect(), node).status(["1"])


async def test_cancel() -> None:
    node = ScriptedLoginNode({"scancel": fail((SLURM / "scancel_done.err").read_text())})
    client = SchedulerClient(SlurmDialect(), node)
    await client.cancel("alice", ["108", "108"])  # already finished: fine
    assert node.calls == [(("scancel", "--", "108"), "alice", None)]
    with pytest.raises(JobNotFound):
        await client.cancel("alice", ["108; rm -rf ~"])


async def test_malformed_ids_in_status_are_absent_without_a_query() -> None:
    node = ScriptedLoginNode({})
    infos = await SchedulerClient(SlurmDialect(), node).status(["$(id)"])
    assert infos["$(id)"].state.is_terminal and node.calls == []


async def test_read_only_queries() -> None:
    node = ScriptedLoginNode({
        "scontrol": ok((SLURM / "scontrol_partitions.txt").read_text()),
        "sinfo": ok((SLURM / "sinfo_shapes.txt").read_text()),
        "sacctmgr": ok((SLURM / "sacctmgr_assoc_alice.txt").read_text()),
        "sshare": ok((SLURM / "sshare_proj_b.txt").read_text()),
    })
    client = SchedulerClient(SlurmDialect(), node)
    assert [p.name for p in await client.partitions()] == ["debug", "gpu", "long"]
    assert len(await client.associations("alice")) == 2
    assert node.calls[-1][1] == "alice"
    budget = await client.budget("proj_b")
    assert budget is not None and budget.remaining() == 498
    pbs = SchedulerClient(PbsDialect(), ScriptedLoginNode({}))
    assert await pbs.associations("alice") == [] and await pbs.budget("x") is None
    assert await pbs.qos() == []


async def test_files_and_names_go_through_the_client_with_outages_mapped() -> None:
    node = ScriptedLoginNode({"mktemp": ok("/home/alice/.hpcbridge/env.0123456789\n"),
                              "getent": ok("10.0.0.5  c1\n")})
    client = SchedulerClient(SlurmDialect(), node)
    path = await client.stage_private_file("alice", "/home/alice/.hpcbridge", b"secret")
    assert path == "/home/alice/.hpcbridge/env.0123456789"
    # the content only ever travels on stdin
    assert all(b"secret" not in " ".join(argv).encode() for argv, _, _ in node.calls)
    assert node.calls[-1] == (("dd", f"of={path}", "status=none"), "alice", b"secret")
    assert await client.resolve_host("c1", as_user="hpcbridge") == "10.0.0.5"
    down = SchedulerClient(SlurmDialect(), ScriptedLoginNode({"rm": Unreachable("gone")}))
    with pytest.raises(SchedulerUnavailable):
        await down.remove_file("alice", path)


async def test_a_full_home_is_the_users_side_refusing_not_an_outage() -> None:
    from hpcbridge.errors import TransportError

    node = ScriptedLoginNode({"mktemp": ok("/home/alice/.hpcbridge/env.0123456789\n"),
                              "dd": fail("dd: error writing: No space left on device")})
    client = SchedulerClient(SlurmDialect(), node)
    with pytest.raises(TransportError, match="No space left on device"):
        await client.stage_private_file("alice", "/home/alice/.hpcbridge", b"x")
    assert node.programs()[-1] == "rm"  # the half-written file is removed


async def test_a_long_answer_is_parsed_off_the_event_loop_the_same_way(monkeypatch) -> None:
    import threading

    from hpcbridge import client as client_module

    queue = (SLURM / "squeue_mixed.txt").read_text()
    threads: list[str] = []
    parse = SlurmDialect.parse_status

    def recording(self, stdout, job_ids):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return parse(self, stdout, job_ids)

    monkeypatch.setattr(SlurmDialect, "parse_status", recording)
    ids = ["101", "102", "104", "200"]
    inline = await SchedulerClient(SlurmDialect(), ScriptedLoginNode(
        {"squeue": ok(queue)})).status(ids)
    monkeypatch.setattr(client_module, "PARSE_IN_THREAD", 1)
    threaded = await SchedulerClient(SlurmDialect(), ScriptedLoginNode(
        {"squeue": ok(queue)})).status(ids)
    assert threaded == inline and inline["101"].state is JobState.RUNNING
    assert threads[0] == threading.main_thread().name
    assert threads[1] != threading.main_thread().name


def test_ids_are_cut_where_one_command_word_would_grow_too_long() -> None:
    from hpcbridge.client import MAX_IDS_CHARS, id_chunks

    ids = [str(41_000_000 + n) for n in range(30_000)]  # 9 characters with the comma
    chunks = id_chunks(ids)
    assert [j for c in chunks for j in c] == ids
    assert all(len(",".join(c)) <= MAX_IDS_CHARS for c in chunks)
    assert len(chunks) == 3 and id_chunks([]) == [] and id_chunks(["1"]) == [["1"]]


async def test_thirty_thousand_tracked_jobs_cost_three_queries_each_under_the_limit() -> None:
    node = ScriptedLoginNode({"squeue": ok("")})
    ids = [str(41_000_000 + n) for n in range(30_000)]
    await SchedulerClient(SlurmDialect(), node).status(ids, as_user="hpcbridge")
    squeues = [argv for argv, _, _ in node.calls if program(argv) == "squeue"]
    assert len(squeues) == 3
    assert all(len(word) < 128 * 1024 for argv in squeues for word in argv)

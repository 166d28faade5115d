"""What a stage's call can cost, with real processes and threads: a process stage's timeout
kills only its own process, its memory cap fails the paper's stage as `memory_cap`, the memory
governor pauses and sheds stage calls as it does extractions, and a thread past its timeout
keeps its slot until it returns (rpa.stages.procs, rpa.stages.execute)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, sample_pdfs
from test_faults import run_log, wait_until
from test_stages import IDS, KNOBS, _rows, _setup

from rpa import errors
from rpa.config import Settings
from rpa.gates import Gate
from rpa.notices import Notices
from rpa.run.memory import MemoryGovernor, MemoryReading
from rpa.run.tally import Tally
from rpa.stages.execute import make_caller
from rpa.stages.paper import Paper
from rpa.stages.phase import StagePhase
from rpa.stages.spec import StageSpec
from rpa.testing.mirror import Mirror

GIB = 2**30

#: stages that coordinate through files in the run's folder (their working folder)
COORDINATED = """
import json, os, time
from pathlib import Path

import rpa

FIRST, SECOND = {first!r}, {second!r}


def _wait_for(check, limit=60.0):
    end = time.monotonic() + limit
    while not check() and time.monotonic() < end:
        time.sleep(0.01)


def _gone(pid):
    try:
        state = Path(f"/proc/{{pid}}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def outlive(paper: rpa.Paper) -> dict:
    # FIRST sleeps past the stage's timeout; SECOND (started with it) takes a second; the
    # next paper starts a second after FIRST and waits until FIRST's process is gone
    if paper.id == FIRST:
        Path("first.pid").write_text(str(os.getpid()))
        time.sleep(600)
    if paper.id == SECOND:
        time.sleep(1.0)
        return {{"outlived": False}}
    pid_file = Path("first.pid")
    if pid_file.exists() and not _gone(int(pid_file.read_text())):
        _wait_for(lambda: _gone(int(pid_file.read_text())))
        return {{"outlived": True, "pid": os.getpid()}}
    return {{"outlived": False}}


def hog(paper: rpa.Paper) -> dict:
    block = bytearray(2 * 1024**3)  # past --extract-max-mb
    return {{"size": len(block)}}


def hang(paper: rpa.Paper) -> dict:
    # FIRST never returns (its thread runs on); the others take a second each
    start = time.time()
    if paper.id == FIRST:
        time.sleep(600)
    time.sleep(1.0)
    Path("calls").mkdir(exist_ok=True)
    Path("calls", paper.id.replace(":", "_")).write_text(json.dumps([start, time.time()]))
    return {{"ok": True}}
"""


def _ready(tmp_path: Path, mirror: Mirror) -> tuple[Cli, list[str]]:
    """A queue whose papers are all done, and the coordinated stages beside it: a stage run
    on it claims the papers in the queue's order (IDS)."""
    cli, ids = _setup(tmp_path, mirror)
    (tmp_path / "coordinated.py").write_text(COORDINATED.format(first=IDS[0], second=IDS[1]))
    done = cli.run("run", str(ids), *cli.knobs(**KNOBS))
    assert done.returncode == 0, done.stderr
    return cli, cli.knobs(**{**KNOBS, "max_attempts": 1})


def test_a_process_stage_past_its_timeout_costs_only_its_own_call(tmp_path: Path) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror:
        cli, knobs = _ready(tmp_path, mirror)
        stage = ["--stage", "mix=coordinated:outlive", "--stage-kind", "mix=process",
                 "--stage-concurrency", "mix=2", "--stage-timeout", "mix=3"]  # fmt: skip
        result = cli.run("resume", *knobs, *stage, timeout=120)
        assert result.returncode == 0, result.stderr + result.stdout
    rows = _rows(cli, "mix")
    assert rows.pop(IDS[0])[:3] == ("failed", "1", 1)
    assert {(s, a) for s, _, a, _ in rows.values()} == {("done", 0)}
    # the call in flight when FIRST's process was killed went on, in its own process
    third = json.loads(cli.query("SELECT result_json FROM stage_results WHERE job_id = ?",
                                 IDS[2])[0][0])  # fmt: skip
    assert third["outlived"] is True and third["pid"] != int((tmp_path / "first.pid").read_text())
    # not one call given back or retried: only FIRST's attempt failed
    outcomes = cli.query("SELECT job_id, outcome, error_kind FROM attempts WHERE stage = 'mix'")
    assert sorted(o for o in outcomes if o[1] != "ok") == [(IDS[0], "failed", "timeout")]
    assert len(outcomes) == len(IDS)


def test_a_process_stage_past_the_memory_cap_fails_that_stage_as_memory_cap(
    tmp_path: Path,
) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()[:2]}) as mirror:
        cli, _ = _setup(tmp_path, mirror)
        (tmp_path / "coordinated.py").write_text(COORDINATED.format(first="", second=""))
        ids = tmp_path / "two.txt"
        ids.write_text("".join(f"ext:{p.stem}\n" for p in sample_pdfs()[:2]))
        stage = ["--stage", "hog=coordinated:hog", "--stage-kind", "hog=process"]
        result = cli.run("run", str(ids), *cli.knobs(**{**KNOBS, "extract_max_mb": 600}), *stage)
        assert result.returncode == 0, result.stderr + result.stdout  # the run did not fail
        assert cli.count("stage = 'done'") == 2  # nor did the papers
        got = cli.query("SELECT state, error_kind, attempts, error FROM stage_results")
        assert {r[:3] for r in got} == {("failed", "memory_cap", 1)}
        assert all("--extract-max-mb 600" in r[3] for r in got)
        assert "hog/memory_cap" in " ".join(result.stdout.split())


async def test_the_memory_governor_pauses_and_sheds_a_process_stage(tmp_path: Path) -> None:
    """The governor's decisions over a real stage phase with a real process (readings given
    to it, as in test_memory: a real hog for each step would take minutes)."""
    (tmp_path / "governed.py").write_text(
        "import time\n\ndef slow(paper):\n    time.sleep(600)\n    return {}\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        spec = StageSpec(name="slow", call="governed:slow", kind="process", concurrency=3)
        phase = StagePhase((spec,), Settings(), "run-x", None, None, Tally(), Notices())  # type: ignore[arg-type]
        lane = phase.lanes[0]
        lane.caller = make_caller(spec, 0, 0)
        said: list[str] = []
        no_pool: Any = _NoPool()
        governor = MemoryGovernor(
            pause=0.8, resume=0.7, kill=0.95, prefetch=Gate("prefetch", 8),
            extract=Gate("extract", 2), pool=no_pool, notices=Notices(on_new=said.append),
        )  # fmt: skip
        governor.also(phase)

        def step(f: float, largest: tuple[int, int] | None = None) -> None:
            governor._on_reading(MemoryReading(int(f * 100 * GIB), 100 * GIB, "cgroup"), largest)

        step(0.85)  # over the pause line: no new stage call (its gate lets one in at a time)
        assert lane.gate.limit == 1 and lane.room() == 1
        assert "no new extraction, download or stage call starts" in said[-1]
        paper = Paper("ext:x", None, None, None)
        task = asyncio.create_task(lane.caller.call(paper, lambda s: None, lambda: None))
        wait_start = time.monotonic()
        while not phase.pids() and time.monotonic() - wait_start < 30:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # its process starts, in a thread (no event to await)
        (pid,) = phase.pids()
        step(0.97, largest=(60 * 2**20, pid))  # over the kill line: the stage's process goes
        assert governor.shed == 1 and "killed the largest extraction or stage process" in said[-1]
        with pytest.raises(errors.MemoryPressure):
            await task
        step(0.6)  # under resume: its gate opens again
        assert lane.gate.limit == 3 and lane.room() == 3
        lane.caller.close()
    finally:
        sys.path.remove(str(tmp_path))


class _NoPool:
    """The extraction pool's part for the governor, with no extraction process (this test is
    of the stages' part)."""

    def pids(self) -> list[int]:
        return []

    def shed(self, pid: int) -> bool:
        return False

    def memory_pressure(self, on: bool) -> None:
        pass


def test_a_thread_stage_past_its_timeout_keeps_its_slot_and_does_not_hold_the_run(
    tmp_path: Path,
) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror:
        cli, knobs = _ready(tmp_path, mirror)
        stage = ["--stage", "hang=coordinated:hang", "--stage-kind", "hang=thread",
                 "--stage-concurrency", "hang=2", "--stage-timeout", "hang=1.8"]  # fmt: skip
        started = time.monotonic()
        proc = cli.popen("resume", *knobs, *stage)
        try:
            wait_until(lambda: "ran past its 1.8s timeout" in run_log(cli), 60, "the notice", proc)
            assert proc.wait(timeout=90) == 0, run_log(cli)
        finally:
            if proc.poll() is None:
                proc.kill()
        # the run ended though FIRST's thread still sleeps (a daemon thread: no wait at exit)
        assert time.monotonic() - started < 120
        log = " ".join(run_log(cli).split())
        assert "Python cannot stop a thread: it runs on and keeps one of the stage's 2 slots" in log
    rows = _rows(cli, "hang")
    assert rows.pop(IDS[0])[:3] == ("failed", "1", 1)
    # the others: no timeout (none waited behind the given-up thread with its clock running)
    assert {(s, a) for s, _, a, _ in rows.values()} == {("done", 0)}
    # ... and one at a time: the given-up call kept one of the two slots all along
    spans = sorted(json.loads(f.read_text()) for f in (tmp_path / "calls").iterdir())
    assert len(spans) == len(IDS) - 1
    for before, after in itertools.pairwise(spans):
        assert before[1] <= after[0], spans
    assert not os.path.exists(tmp_path / "first.pid")

"""A bug in a background task is reported by name, exception and place, never as an
anonymous ExceptionGroup (issue 18)."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from conftest import Cli, injected, sample_pdfs, write_ids

from rpa.errors import RunCrashed
from rpa.extract.pool import ExtractPool
from rpa.gates import Gate
from rpa.notices import Notices
from rpa.run.memory import MemoryGovernor, MemoryReading, read_memory
from rpa.run.tasks import describe_crash, named
from rpa.testing.mirror import Fault, Mirror


async def _broken() -> None:
    table: dict[str, int] = {}
    table["missing"]  # a bug: a KeyError in rpa's own code


def test_a_failing_task_in_a_task_group_is_named_with_its_exception_and_place() -> None:
    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(named("heartbeat", _broken()))
            tg.create_task(asyncio.sleep(10))

    with pytest.raises(ExceptionGroup) as caught:
        asyncio.run(main())
    said = describe_crash(caught.value)
    assert said.startswith("the heartbeat task failed: KeyError: 'missing' (")
    bug = inspect.getsourcelines(_broken)[1] + 2
    assert f"test_tasks.py:{bug})" in said  # the line of the bug, not of the task wrapper
    assert "ExceptionGroup" not in said and "TaskGroup" not in said


def test_conditions_pass_through_as_they_are_and_groups_say_each_leaf_once() -> None:
    async def stopped() -> None:
        raise RunCrashed("the queue database stayed away past --db-wait")

    with pytest.raises(RunCrashed):
        asyncio.run(named("feeder", stopped()))
    group = ExceptionGroup("x", [RunCrashed("a"), RunCrashed("a"), ValueError("b")])
    assert describe_crash(group) == "a; ValueError: b"  # raised nowhere: no place to say


# ---- a real run: the real CLI, a real mirror, a bug played in one of its background tasks ----

#: Bugs played by code injected at start-up (a sitecustomize: conftest.injected): a real bug
#: cannot be produced on demand, so each test plays one, raised from inside the task's own
#: call path. The feeder's: host health's `claimable`, which the feeder asks before each claim,
#: looks a host up in an empty table from its fifth call on. The heartbeat's: its database
#: call fails as a bug would once a paper is done (before: said at every beat, for ever,
#: while the run's leases lapsed). The lag probe's (a task of the
#: run's outer group): its whole-run histogram divides by zero at its first sample.
_BUGS = {
    "feeder": (
        "import rpa.hosts.health as health\n"
        "calls = [0]\n"
        "def claimable(self):\n"
        "    calls[0] += 1\n"
        "    if calls[0] >= 5:\n"
        "        return {}[self.primary]\n"
        "    return ('queued', 'downloaded', 'extracted')\n"
        "health.HostHealth.claimable = claimable\n",
        "the feeder task failed: KeyError: '127.0.0.1' (rpa/run/feeder.py:",
    ),
    "heartbeat": (  # in the database thread: rpa.queue.aio raises a bug as it is
        "import rpa.queue.runs as runs\n"
        "beat = runs.heartbeat\n"
        "def heartbeat(store, run_id, *args, **kwargs):\n"
        "    if store.sql.one(\"SELECT count(*) AS n FROM jobs WHERE stage = 'done'\")['n']:\n"
        "        raise LookupError('no such lease column')\n"
        "    return beat(store, run_id, *args, **kwargs)\n"
        "runs.heartbeat = heartbeat\n",
        "the heartbeat task failed: LookupError: no such lease column (",
    ),
    "lag-probe": (
        "import rpa.metrics as metrics\n"
        "def add(self, lag):\n"
        "    return lag / 0\n"
        "metrics.LagHistogram.add = add\n",
        "the lag-probe task failed: ZeroDivisionError: float division by zero (rpa/metrics.py:",
    ),
}


@pytest.mark.parametrize("task", sorted(_BUGS))
def test_a_bug_in_a_background_task_ends_a_real_run_by_name_and_resume_finishes(
    tmp_path: Path, task: str
) -> None:
    code, said_as = _BUGS[task]
    names = [f"p{i:02d}" for i in range(12)]
    pdfs = sample_pdfs()
    files = {n: pdfs[i % len(pdfs)] for i, n in enumerate(names)}
    # each download takes a moment, so the bug comes while papers are in flight or queued
    with Mirror(files, faults={n: Fault.slow_body(0.4) for n in names}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in names])
        knobs = cli.knobs(progress=False, workers=2, extract_workers=1, heartbeat_seconds=0.5)
        broken = cli.run("run", str(ids), *knobs, timeout=60, **injected(tmp_path, "bug", code))
        said = broken.stdout + broken.stderr
        assert broken.returncode == 1, said  # `crashed`: rpa.run.snapshot's exit_code
        # which task, which exception, where (a line of rpa's; the summary wraps at its width)
        assert said_as in " ".join(said.split()), said
        assert "ExceptionGroup" not in said and "TaskGroup" not in said, said
        assert "Traceback" not in said, said
        assert "crashed: fix the cause above" in said, said
        left = cli.count("stage != 'done'")
        assert left > 0, said  # it ended mid-run: the resume below has work to do
        resumed = cli.run("resume", *knobs, "--workers", "8")
    again = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, again
    assert cli.count("stage = 'done'") == len(names), again
    assert cli.count("stage = 'failed'") == 0 and "Traceback" not in again, again


async def test_a_bug_in_the_memory_sampler_is_said_once_by_name_and_sampling_goes_on() -> None:
    """The sampler's reader fails three times as a bug would (given to the governor: a real
    bug cannot be produced on demand), then reads the real machine. Before, the first such
    exception ended the sampling thread, with a traceback on stderr, and memory was governed
    no more for the rest of the run."""
    calls = 0
    loop = asyncio.get_running_loop()
    fifth = asyncio.Event()  # set after the fourth sample's decision (callbacks run in order)

    def reader() -> MemoryReading:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise TypeError("unsupported operand type(s) for -: 'NoneType' and 'int'")
        if calls == 5:
            loop.call_soon_threadsafe(fifth.set)
        return read_memory()

    said: list[str] = []
    async with ExtractPool(1) as pool:
        governor = MemoryGovernor(
            pause=0.999, resume=0.99, kill=0.9999, prefetch=Gate("prefetch", 2),
            extract=Gate("extract", 1), pool=pool, notices=Notices(on_new=said.append),
            reader=reader, interval=0.01,
        )  # fmt: skip
        governor.start(loop)
        try:
            async with asyncio.timeout(10):
                await fifth.wait()
        finally:
            governor.stop()
    assert governor.reading is not None  # sampling went on after the bugs
    assert len(said) == 1, said  # once, however many samples failed
    assert said[0].startswith(
        "the memory sampler failed: TypeError: unsupported operand type(s) for -: 'NoneType' "
        "and 'int' (rpa/run/memory.py:"
    ), said
    assert "memory is not governed while its samples fail" in said[0]

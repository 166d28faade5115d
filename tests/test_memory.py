"""The memory governor: readings of the real machine and cgroup, its decisions, and a real
memory hog pushing a real run over `--memory-pause`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Cli, child_cgroup, clean_env, sample_pdfs, write_ids
from test_faults import wait_until
from test_pool import write_bomb

from rpa.extract.pool import ExtractPool
from rpa.gates import Gate
from rpa.notices import Notices
from rpa.run.memory import MemoryGovernor, MemoryReading, read_memory
from rpa.testing.mirror import Mirror

GIB = 2**30


def test_the_reading_is_of_the_limit_that_binds() -> None:
    r = read_memory()
    assert r.source in ("cgroup", "machine") and 0 < r.used < r.limit
    meminfo = Path("/proc/meminfo").read_text()
    total = int(meminfo.split("MemTotal:")[1].split()[0]) * 1024
    assert r.limit <= total  # a cgroup's limit counts only when it is the tighter one


async def test_the_governor_pauses_sheds_narrows_and_resumes(tmp_path: Path) -> None:
    """Its decisions, on a sequence of readings given to it (an injected reader: a real hog
    for each step would make this test minutes long; the end-to-end test below uses one)."""
    readings = iter([0.5, 0.85, 0.97, 0.9, 0.6, 0.6])
    prefetch, extract = Gate("prefetch", 8), Gate("extract", 3)
    said: list[str] = []
    async with ExtractPool(1) as pool:
        governor = MemoryGovernor(
            pause=0.8, resume=0.7, kill=0.95, prefetch=prefetch, extract=extract, pool=pool,
            notices=Notices(on_new=said.append), calm=0.0,
        )  # fmt: skip

        def step(largest: tuple[int, int] | None = None) -> None:
            f = next(readings)
            governor._on_reading(MemoryReading(int(f * 100 * GIB), 100 * GIB, "cgroup"), largest)

        step()
        assert governor.state == "ok" and extract.limit == 3
        step()  # 85%: paused; both gates let one in at a time (never none)
        assert governor.state == "paused" and (prefetch.limit, extract.limit) == (1, 1)
        assert "over --memory-pause 80%" in said[-1] and "85.00 GiB of 100.00 GiB" in said[-1]
        task = asyncio.create_task(pool.extract(str(sample_pdfs()[0]), str(tmp_path / "a.txt")))
        await asyncio.sleep(0)
        for _ in range(200):
            if pool.statistics().busy:
                break
            await asyncio.sleep(0.01)
        step(largest=(60 * 2**20, pool.pids()[0]))  # 97%: the largest process is killed
        assert governor.state == "shedding" and governor.shed == 1
        assert "over --memory-kill 95%" in said[-1]
        with pytest.raises(Exception, match="killed for memory"):
            await task
        step()  # 90%: still high: no change
        step()  # 60%: resumes; the extract gate stays narrowed by one until calm
        assert governor.state == "ok" and "work resumes" in said[-1]
        await asyncio.sleep(0)  # the prefetch gate reopens in a slow start (8 at a time)
        assert prefetch.limit == 8 and extract.limit in (2, 3)
        snap = governor.snapshot()
        assert (snap.pauses, snap.shed, snap.state, snap.source) == (1, 1, "ok", "cgroup")
        assert snap.paused_seconds > 0


def _hog(megabytes: int) -> subprocess.Popen[bytes]:
    """A real process that allocates and touches `megabytes` MB, then waits to be killed."""
    code = (
        "import sys, time\n"
        f"block = bytearray({megabytes} * 1024 * 1024)\n"
        "for i in range(0, len(block), 4096):\n"
        "    block[i] = 1\n"
        "print('ready', flush=True)\n"
        "time.sleep(3600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


@pytest.fixture
def hog() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.serial  # the machine's memory in use is what it measures: no other test beside it
@pytest.mark.timeout(180)
def test_a_real_memory_hog_pauses_extraction_and_the_run_resumes_after_it(
    tmp_path: Path, hog: list[subprocess.Popen[bytes]]
) -> None:
    before = read_memory()
    hog_mb = 4096
    if before.limit - before.used < 2.5 * hog_mb * 2**20:
        pytest.skip("needs 10 GiB of memory free")
    # the thresholds above today's use (with room for the run's own and other programs'
    # growth): the hog crosses the pause line, and its end takes the use back under resume
    pause = (before.used + hog_mb * 2**20 / 2) / before.limit
    resume = (before.used + hog_mb * 2**20 / 4) / before.limit
    files = {f"{p.stem}-{i}": p for p in sample_pdfs() for i in range(20)}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = cli.knobs(
            workers=8, extract_workers=2, progress=False, memory_pause=f"{pause:.4f}",
            memory_resume=f"{resume:.4f}", memory_kill="0.999", heartbeat_seconds=0.5,
        )  # fmt: skip
        log = tmp_path / "run.log"
        # The hog first, then the run: the run starts paused, and however fast this machine
        # is, it cannot finish its papers one at a time before the hog is gone.
        hog.append(_hog(hog_mb))
        proc = cli.popen("run", str(ids), *knobs)
        try:
            wait_until(lambda: "over --memory-pause" in log.read_text(), 30, "the pause", proc)
            paused_at = time.time()
            # paused is not stopped: one paper at a time still goes (no deadlock)
            wait_until(lambda: cli.count("stage = 'done'") >= 2, 60, "work while paused", proc)
            time.sleep(3.0)  # the hog lives a while (a duration under test, not an ordering)
            left_at_pause = cli.count("stage != 'done'")
            hog[0].send_signal(signal.SIGKILL)
            hog[0].wait()
            wait_until(lambda: "work resumes" in log.read_text(), 30, "the resume", proc)
            resumed_at = time.time()
            assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert left_at_pause > 0, "the run ended before the hog: this proved nothing"
    assert cli.count("stage = 'done'") == len(files) and cli.count("stage = 'failed'") == 0
    # while paused, never two extractions at once (one may go: no deadlock)
    spans = cli.query(
        "SELECT started_at + gate_wait, started_at + gate_wait + duration FROM attempts "
        "WHERE stage = 'extract' AND started_at + gate_wait > ? AND started_at + gate_wait < ?",
        paused_at + 0.5, resumed_at - 0.5,
    )  # fmt: skip
    assert spans, "no extraction in the paused window: nothing was shown"
    for a in spans:
        overlapping = [b for b in spans if b is not a and b[0] < a[1] and a[0] < b[1]]
        assert not overlapping, spans
    assert "memory: 1 pauses" in text


def _run_in(cgroup: Path, cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, started inside `cgroup` (it and every process it starts)."""
    command = " ".join(f"'{a}'" for a in cli.args(*args))
    return subprocess.run(
        ["sh", "-c", f"echo $$ > {cgroup}/cgroup.procs && exec {command}"],
        cwd=cli.workdir, env=clean_env(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def _peak(cli: Cli, name: str, ids: Path, workers: int) -> int:
    """The most memory (bytes, page cache included) a run of `ids` takes with `workers`
    extraction processes and no limit."""
    with child_cgroup("memory", name) as group:
        knobs = cli.knobs(progress=False, extract_workers=workers)
        assert _run_in(group, cli, "run", str(ids), *knobs).returncode == 0
        return int((group / "memory.max_usage_in_bytes").read_text())


@pytest.mark.timeout(300)
def test_in_a_small_cgroup_the_governor_sheds_and_retries_before_the_kernel_kills(
    tmp_path: Path,
) -> None:
    """A cgroup that holds one extraction of a decompression bomb at a time, not two: without
    the governor the kernel's OOM killer would pick a victim (rpa, the largest process, at
    first). With it, the largest extraction is killed at --memory-kill and its paper retried,
    and the run ends with every paper done.

    The limit is measured, not guessed: a run with one extraction process, then one with two,
    each in a cgroup with no limit; the kill line goes halfway between the two peaks. Should the
    kernel still act (a parse growing faster than one 50 ms sample), it must have taken an
    extraction process (their oom_score_adj is 1000), whose paper is retried as a crash: rpa
    itself lives, and every kill is accounted for."""
    bomb = tmp_path / "bomb.pdf"  # one page whose content inflates to 8 MiB: ~100 MB to parse
    write_bomb(bomb, 8)
    files = {f"bomb-{i}": bomb for i in range(3)}
    kill = 0.9
    with Mirror(files) as mirror:
        peaks = []
        for workers in (1, 2):
            probe = Cli(tmp_path / f"probe-{workers}", mirror.url_template)
            probe.workdir.mkdir()
            ids = write_ids(probe.workdir / "ids.txt", [f"ext:bomb-{i}" for i in range(workers)])
            peaks.append(_peak(probe, f"probe{workers}", ids, workers))
        one, two = peaks
        limit = int((one + two) / 2 / kill)
        assert limit < two, f"one extraction {one}, two {two}: no room between them"
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = ["--memory-kill", f"{kill}", "--memory-pause", "0.8", "--memory-resume", "0.7"]
        knobs += ["--retry-base", "0.3", "--retry-max", "1", "--poison-after", "3"]
        with child_cgroup("memory", "small") as group:
            (group / "memory.limit_in_bytes").write_text(str(limit))
            result = _run_in(
                group, cli, "run", str(ids), *cli.knobs(progress=False, extract_workers=2),
                *knobs,
            )  # fmt: skip
            oom = (group / "memory.oom_control").read_text()
    said = result.stdout + result.stderr
    assert result.returncode == 0, said[-3000:]  # rpa itself was never the victim
    assert cli.count("stage = 'done'") == len(files)
    assert "(cgroup, " in said and "over --memory-kill 90%: killed the largest" in said
    shed = cli.query("SELECT count(*) FROM attempts WHERE error_kind = 'memory_pressure'")
    assert shed[0][0] >= 1  # the governor acted, and its papers were retried
    kernel_kills = int(oom.split("oom_kill ")[1].split()[0])
    crashed = cli.query("SELECT count(*) FROM attempts WHERE error_kind = 'worker_crashed'")
    assert kernel_kills == crashed[0][0], (oom, said[-3000:])  # each one explained

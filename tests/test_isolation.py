"""Memory, CPU and vanished PDFs are not the paper's fault (issue 18; issue 19's pdfium bomb).

An extraction process killed from outside (the OOM killer, a signal) or starved of CPU says
nothing about its paper: the paper is retried alone (no other extraction in the pool, a fresh
process, no memory pressure), uncounted, and only a failure alone is charged. A shed is never
an attempt. A PDF deleted under --out before its parse is downloaded again. With real
extraction processes, real PDFs, the real CLI against a real loopback server, and a real
memory hog in a real memory cgroup.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Cli, child_cgroup, sample_pdfs, wait_for, write_ids
from test_crash import descendants, has_open
from test_faults import run_log
from test_pool import write_bomb

from rpa import errors
from rpa.config import Settings
from rpa.extract.pool import ExtractPool
from rpa.layout import Layout
from rpa.queue.model import Job
from rpa.run import policy
from rpa.testing.mirror import Mirror

SAMPLES = {p.stem: p for p in sample_pdfs()}
SLOW = SAMPLES["texlive-revtex-apssamp"]  # the slowest sample (~1 s): its parse can be caught
QUICK = [SAMPLES["s2orc-n18-3011"], SAMPLES["cermine-hindawi-test2"]]
SETTINGS = Settings(poison_after=2, max_attempts=5, retry_base=1.0, retry_max=2.0)


def job(**fields: object) -> Job:
    return Job(**{"id": "2301.00001", "token": 1, "stage": "downloaded", "attempts": 0,
                  "crashes": 0, **fields})  # type: ignore[arg-type]  # fmt: skip


def judge(exc: errors.JobError, of: Job) -> policy.Verdict:
    return policy.judge(exc, of, SETTINGS, stopping=False, now=1000.0)


# ---------------------------------------------------------------------------- the policy


def test_the_policy_charges_a_death_or_a_timeout_only_when_the_paper_was_alone() -> None:
    """One policy decides (rpa.run.policy); the queue's `error_kind` says who runs alone."""
    shared_crash = judge(errors.WorkerCrashed("died"), job())
    assert (shared_crash.action, shared_crash.counted, shared_crash.crashed) == (
        "retry", False, False,
    )  # fmt: skip
    assert shared_crash.said == "2301.00001: extraction process died; retrying it alone"
    assert shared_crash.next_at > 1000.0  # not at once: a backoff, as any retry
    assert policy.runs_alone(job(error_kind="worker_crashed"))
    assert policy.runs_alone(job(error_kind="extract_timeout"))
    assert not policy.runs_alone(job()) and not policy.runs_alone(job(error_kind="connection"))

    alone = errors.WorkerCrashed("died")
    alone.alone = True
    first = judge(alone, job(error_kind="worker_crashed"))
    assert (first.action, first.counted, first.crashed) == ("retry", True, True)
    poison = judge(alone, job(error_kind="worker_crashed", crashes=1, attempts=1))
    assert (poison.action, poison.error.kind) == ("fail", "poison")
    assert "killed 2 extraction processes while alone" in poison.error.message

    shared_timeout = judge(errors.ExtractTimeout("slow"), job())
    assert (shared_timeout.action, shared_timeout.counted) == ("retry", False)
    assert "ran past --extract-timeout; retrying it alone" in str(shared_timeout.said)
    timeout = errors.ExtractTimeout("slow")
    timeout.alone = True
    final = judge(timeout, job(error_kind="extract_timeout"))
    assert (final.action, final.error.kind, final.counted) == ("fail", "extract_timeout", True)

    shed = judge(errors.MemoryPressure("shed"), job(attempts=4))  # even on its last attempt
    assert (shed.action, shed.counted, shed.crashed) == ("retry", False, False)


# ---------------------------------------------------------------------------- the pool


async def test_a_paper_alone_waits_for_the_others_and_gets_a_fresh_process(
    tmp_path: Path,
) -> None:
    """While a paper runs alone, no other extraction runs (one asked for after it waits for
    it), it has a process of its own that goes after it, and the pool's own processes stay."""
    async with ExtractPool(2, timeout=60.0) as pool:
        own = set(pool.pids())
        shared = [
            asyncio.create_task(pool.extract(str(SLOW), str(tmp_path / f"s{i}.txt")))
            for i in range(2)
        ]
        await wait_for_async(lambda: pool.statistics().busy == 2)
        alone = asyncio.create_task(
            pool.extract(str(SLOW), str(tmp_path / "alone.txt"), alone=True)
        )
        await wait_for_async(lambda: pool._solo.waiting == 1)
        later = asyncio.create_task(pool.extract(str(QUICK[0]), str(tmp_path / "later.txt")))
        seen: set[tuple[int, int, bool]] = set()  # (processes, busy, later finished)
        while not alone.done():
            seen.add((len(pool.pids()), pool.statistics().busy, later.done()))
            await asyncio.sleep(0.002)
        results = await asyncio.gather(*shared, alone, later)
        assert all(r["ok"] for r in results)
        assert (3, 1, False) in seen  # the fresh process, running alone, `later` held back
        assert not any(n == 3 and busy > 1 for n, busy, _ in seen)
        assert set(pool.pids()) == own  # its process went; the pool's own ones stayed


async def test_only_a_failure_alone_and_without_memory_pressure_says_alone(
    tmp_path: Path,
) -> None:
    """A PDF that is a FIFO nobody writes to: its extraction process blocks in open() for
    good, so every extraction of it runs past its timeout whatever the machine's speed (it
    assumed the slowest sample parses longer than 0.3 s: on a fast machine it does not)."""
    stuck = tmp_path / "stuck.pdf"
    os.mkfifo(stuck)
    async with ExtractPool(2, timeout=60.0) as pool:
        with pytest.raises(errors.ExtractTimeout) as shared:
            await pool.extract(str(stuck), str(tmp_path / "a.txt"), timeout=0.05)
        assert shared.value.alone is False
        with pytest.raises(errors.ExtractTimeout) as alone:
            await pool.extract(str(stuck), str(tmp_path / "a.txt"), timeout=0.05, alone=True)
        assert alone.value.alone is True
        pool.memory_pressure(True)  # before the run alone: its turn starts afresh
        pool.memory_pressure(False)

        def flip() -> None:  # its turn has come: the memory governor speaks meanwhile
            pool.memory_pressure(True)
            pool.memory_pressure(False)

        with pytest.raises(errors.ExtractTimeout) as pressed:
            await pool.extract(
                str(stuck), str(tmp_path / "a.txt"), timeout=0.05, alone=True, on_turn=flip
            )
        assert pressed.value.alone is False  # memory ran short meanwhile: maybe not the paper
        assert (await pool.extract(str(QUICK[0]), str(tmp_path / "b.txt")))["ok"] is True


async def test_a_pdfium_decompression_bomb_is_a_memory_cap_not_a_crash(tmp_path: Path) -> None:
    """Issue 19: PDFium aborts when the cap refuses an allocation (pypdf gets a MemoryError);
    that was a WorkerCrashed, and twice `poison`. Now `memory_cap`, as with pypdf."""
    pytest.importorskip("pypdfium2")
    bomb = tmp_path / "bomb.pdf"
    write_bomb(bomb, 40)
    async with ExtractPool(1, max_mb=150, extractor="pdfium") as pool:
        with pytest.raises(errors.MemoryCapExceeded, match="PDFium aborted"):
            await pool.extract(str(bomb), str(tmp_path / "bomb.txt"))
        assert pool.statistics().crashed == 0
        result = await pool.extract(str(QUICK[0]), str(tmp_path / "a.txt"))
        assert result["ok"] is True  # its process was replaced


async def wait_for_async(condition: object, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.002)


# ---------------------------------------------------------------------------- the real CLI


@pytest.mark.timeout(150)
def test_killed_or_starved_once_ends_done_killed_or_stalled_alone_is_charged(
    tmp_path: Path,
) -> None:
    """The test plays the machine: it kills (as the OOM killer would) or stops (an extreme of
    CPU starvation: the process gets no CPU at all) the extraction process that has a paper's
    PDF open. Once: the paper is retried alone, uncounted, and ends done. Every time: the
    death or the timeout repeats alone, and is charged (poison after --poison-after deaths
    alone; extract_timeout)."""
    plan = {  # paper -> (signal, how many of its parses get it)
        "crash-once": (signal.SIGKILL, 1),
        "crash-always": (signal.SIGKILL, 99),
        "stall-once": (signal.SIGSTOP, 1),
        "stall-always": (signal.SIGSTOP, 99),
    }
    files = {**{name: SLOW for name in plan}, **{p.stem: p for p in QUICK}}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = cli.knobs(
            workers=6, extract_workers=2, extract_timeout=8, poison_after=2, max_attempts=5,
            retry_base=0.05, retry_max=0.5, progress=False,
        )  # fmt: skip
        layout = Layout(cli.out)
        pdfs = {name: layout.pdf_path(f"ext:{name}") for name in plan}
        hits = dict.fromkeys(plan, 0)
        acted: set[int] = set()
        proc = cli.popen("run", str(ids), *knobs)
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                for pid in descendants(proc.pid) - acted:
                    for name, (sig, times) in plan.items():
                        if hits[name] < times and has_open(pid, pdfs[name]):
                            os.kill(pid, sig)
                            acted.add(pid)
                            hits[name] += 1
                time.sleep(0.005)
            code = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = run_log(cli)
    assert code == 1, log[-3000:]  # the two papers that fail alone
    state = {
        r[0]: r[1:] for r in cli.query("SELECT id, stage, error_kind, attempts, crashes FROM jobs")
    }
    assert state["ext:crash-once"] == ("done", None, 0, 0), log[-3000:]
    assert state["ext:stall-once"] == ("done", None, 0, 0), log[-3000:]
    for quick in QUICK:
        assert state[f"ext:{quick.stem}"][0] == "done"
    # shared death (uncounted) + two deaths alone (charged): poison
    assert state["ext:crash-always"] == ("failed", "poison", 2, 2), log[-3000:]
    assert hits["crash-always"] == 3
    # shared timeout (uncounted) + a timeout alone: final
    assert state["ext:stall-always"] == ("failed", "extract_timeout", 1, 0), log[-3000:]
    assert hits["stall-always"] == 2
    assert "ext:crash-once: extraction process died; retrying it alone" in log
    assert "ext:stall-once: extraction process ran past --extract-timeout; retrying it" in log
    assert "Traceback" not in log


@pytest.mark.timeout(150)
def test_papers_shed_for_another_programs_memory_are_not_charged(tmp_path: Path) -> None:
    """A real memory hog in rpa's own memory cgroup (so other programs on this machine do not
    move the figures) pushes memory over --memory-kill: the governor kills the extraction
    process of the paper in flight, again and again, until the hog goes. No attempt is charged
    to a shed paper (before: one per shed, and five sheds failed a good paper)."""
    files = {f"p{i}": SLOW for i in range(4)}
    with Mirror(files) as mirror, child_cgroup("memory", "shed") as group:
        (group / "memory.limit_in_bytes").write_text(str(3 * 2**30))
        hog = subprocess.Popen(
            ["sh", "-c", f"echo $$ > {group}/cgroup.procs && exec {sys.executable} -c "
             "'import time; b = bytearray(2 << 30); b[::4096] = b\"x\" * len(b[::4096]); "
             "print(1, flush=True); time.sleep(600)'"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert hog.stdout is not None and hog.stdout.readline().strip() == b"1"
            cli = Cli(tmp_path, mirror.url_template)
            ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
            knobs = cli.knobs(
                workers=4, extract_workers=1, memory_pause=0.5, memory_resume=0.4,
                memory_kill=0.6, max_attempts=2, retry_base=0.05, retry_max=0.3,
                progress=False,
            )  # fmt: skip
            command = " ".join(f"'{a}'" for a in cli.args("run", str(ids), *knobs))
            with (tmp_path / "run.log").open("ab") as out:
                proc = subprocess.Popen(
                    ["sh", "-c", f"echo $$ > {group}/cgroup.procs && exec {command}"],
                    cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
            try:
                # more sheds than --max-attempts allows attempts: each would have counted
                wait_for(lambda: run_log(cli).count("killed the largest") >= 3, 90, "3 sheds")
                hog.kill()
                assert proc.wait(timeout=90) == 0, run_log(cli)[-3000:]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        finally:
            hog.kill()
            hog.wait()
            if hog.stdout is not None:
                hog.stdout.close()
    assert cli.count("stage = 'done'") == len(files)
    assert cli.query("SELECT max(attempts) FROM jobs")[0][0] == 0
    shed = cli.query("SELECT count(*) FROM attempts WHERE error_kind = 'memory_pressure'")
    assert shed[0][0] >= 3


def _waiting_downloads(out: Path) -> list[Path]:
    """Whole downloads waiting for their extraction: a private name (one temporary prefix;
    a download still being written has two: its own, then the private name's)."""
    folder = out / "pdf"
    return [p for p in folder.rglob("*.pdf") if p.name.count(".rpa-tmp.") == 1]


@pytest.mark.timeout(120)
def test_pdfs_deleted_under_out_mid_run_are_downloaded_again(tmp_path: Path) -> None:
    """The user deletes --out's PDFs while papers wait, downloaded, for their extraction
    (their downloads, under private names until their extraction process checks them): they
    are downloaded again and end done (before: failed for good as `permanent`)."""
    files = {f"p{i}": SLOW for i in range(8)}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = cli.knobs(workers=8, extract_workers=1, prefetch=6, progress=False)
        proc = cli.popen("run", str(ids), *knobs)
        try:
            wait_for(lambda: len(_waiting_downloads(cli.out)) >= 3, 60, "papers downloaded")
            deleted = [p for p in cli.out.rglob("*.pdf") if p.is_file()]
            for pdf in deleted:
                pdf.unlink(missing_ok=True)
            assert proc.wait(timeout=90) == 0, run_log(cli)[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        fetched = {name: mirror.requests(name) for name in files}
    assert cli.count("stage = 'done'") == len(files) and cli.count("stage = 'failed'") == 0
    assert sum(n == 2 for n in fetched.values()) >= 2, fetched
    assert "stored PDF missing or changed, downloading again" in run_log(cli)
    assert cli.query("SELECT max(attempts) FROM jobs")[0][0] == 0

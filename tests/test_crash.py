"""Crash safety, interruption and cooperation, with the real CLI in real processes.

- kill -9 at random moments (seeded), then resume until done: every ID done exactly once, no
  duplicate results, no partial file taken for a whole one, no checkpointed PDF fetched again;
- SIGINT/SIGTERM: stop claiming, finish in-flight work within --grace, release leases, exit
  130; a second SIGINT stops at once;
- two `rpa run` processes on one database never work on the same job;
- the disk guard stops claiming when free space is low and says so; leftover temporary files
  are removed at start;
- a PDF that kills its extraction process twice alone is quarantined (kind poison).

Three bugs this harness found are pinned by tests: two processes creating one database at once,
`.rpa-*.tmp` text files not cleaned at start, and extraction processes outliving a kill -9 of
rpa.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Cli, sample_pdfs, wait_for, write_ids
from test_faults import interrupt, run_log, wait_until

import rpa.queue.sqlite
from rpa.extract.pdf import extract_pdf
from rpa.files import temp_name
from rpa.layout import Layout
from rpa.queue.sqlite import SCHEMA_VERSION, SqliteSql, connect
from rpa.testing.mirror import Fault, Mirror

#: the three quickest real papers to extract (0.3-0.5 s each), so a trial is a few seconds
CRASH_PDFS = [
    p
    for p in sample_pdfs()
    if p.stem in {"texlive-elsarticle-elstest-5p", "s2orc-n18-3011", "cermine-hindawi-test2"}
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference_texts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each crash-test paper's text as one uninterrupted extraction writes it."""
    folder = tmp_path_factory.mktemp("reference")
    texts = {}
    for pdf in CRASH_PDFS:
        out = folder / f"{pdf.stem}.txt"
        assert extract_pdf(str(pdf), str(out))["ok"] is True
        texts[pdf.stem] = out.read_text()
    return texts


# ---------------------------------------------------------------------------- kill -9


@dataclass
class Tally:
    """What the kill -9 harness found, over all trials."""

    trials: int = 0
    kills: int = 0
    ids: int = 0
    lost: int = 0
    duplicated: int = 0
    refetched: int = 0
    refetched_uncheckpointed: int = 0
    kill_points: list[str] = field(default_factory=list)
    #: trials whose first run ended before its kill moment: void, not counted, replaced
    void: int = 0

    def line(self) -> str:
        return (
            f"{self.trials} trials, {self.kills} kill -9, {self.ids} IDs: lost {self.lost}, "
            f"duplicated {self.duplicated}, checkpointed PDFs refetched {self.refetched} "
            f"(downloads cut by a kill and fetched again: {self.refetched_uncheckpointed}); "
            f"void trials (the run ended before its kill): {self.void}; "
            f"killed while: {', '.join(self.kill_points)}"
        )


def kill_point(cli: Cli) -> str:
    """Where the killed run was, from what it left in the database."""
    if not cli.db.exists() or cli.count("1") == 0:
        return "starting"
    stages = dict(cli.query("SELECT stage, count(*) FROM jobs GROUP BY stage"))
    return "/".join(f"{stages.get(s, 0)}" for s in ("queued", "downloaded", "extracted", "done"))


def checkpointed_ids(cli: Cli) -> list[str]:
    """Jobs past the queued stage (none while the database is still being created)."""
    try:
        return [r[0] for r in cli.query("SELECT id FROM jobs WHERE stage != 'queued'")]
    except sqlite3.OperationalError:  # killed before its schema was committed
        return []


def crash_trial(
    rng: random.Random,
    workdir: Path,
    copies: int,
    references: dict[str, str],
    tally: Tally,
    horizon: float,
) -> float | None:
    """One trial: run, kill -9 at a random moment (once or twice), resume to the end, check.

    The kill moments are drawn from 0.2 s to `horizon`. If the first run ends before its kill
    moment, the trial is void (nothing checked, nothing counted) and this returns how long
    that whole run took, so the caller can draw the next trial's moments inside it.
    """
    files = {f"{p.stem}-{i}": p for i in range(copies) for p in CRASH_PDFS}
    names = list(files)
    # a few downloads are slow, so some kills land mid-download
    faults = {name: Fault.slow_body(0.4) for name in rng.sample(names, 2)}
    with Mirror(files, faults=faults) as mirror:
        cli = Cli(workdir, mirror.url_template)
        ids = write_ids(workdir / "ids.txt", [f"ext:{n}" for n in names])
        knobs = cli.knobs(workers=8, extract_workers=1, progress=False, heartbeat_seconds=0.5)
        checkpointed: dict[str, int] = {}  # id -> requests when it was first seen checkpointed
        for attempt in range(1 + (rng.random() < 0.4)):
            queued = cli.db.exists() and cli.count("1") == len(names)
            started = time.monotonic()
            proc = cli.popen(*(("resume",) if queued else ("run", str(ids))), *knobs)
            delay = rng.uniform(0.2, horizon)
            try:
                proc.wait(timeout=delay)
                if attempt == 0:
                    tally.void += 1
                    return time.monotonic() - started
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                tally.kills += 1
                tally.kill_points.append(f"{delay:.1f}s {kill_point(cli)}")
            for job in checkpointed_ids(cli):
                name = job.removeprefix("ext:")
                checkpointed.setdefault(name, mirror.requests(name))
        queued = cli.db.exists() and cli.count("1") == len(names)
        final = cli.run(
            *(("resume",) if queued else ("run", str(ids))),
            *cli.knobs(workers=8, extract_workers=2, progress=False),
        )
        assert final.returncode == 0, final.stdout + final.stderr + run_log(cli)

        tally.trials += 1
        tally.ids += len(names)
        done = {r[0] for r in cli.query("SELECT id FROM jobs WHERE stage = 'done'")}
        tally.lost += len(names) - len(done)
        results = [r[0] for r in cli.query("SELECT id FROM results")]
        # a job completed twice would count twice in the runs' tallies (results has a key)
        completions = cli.query("SELECT coalesce(sum(done), 0) FROM runs")[0][0]
        tally.duplicated += (len(results) - len(set(results))) + (completions - len(names))
        tally.refetched += sum(mirror.requests(n) - k for n, k in checkpointed.items())
        tally.refetched_uncheckpointed += sum(mirror.requests(n) - 1 for n in names)
        assert sorted(results) == sorted(f"ext:{n}" for n in names)
        assert cli.count("lease_owner IS NOT NULL") == 0  # no lease left behind

        # every file is whole: PDFs are the served bytes, texts the full extraction, JSON parses
        for job, outcome_json, sha, size in cli.query(
            "SELECT id, outcome_json, sha256, bytes FROM results"
        ):
            source = files[job.removeprefix("ext:")]
            record = json.loads(outcome_json)
            assert (sha, size) == (sha256(source), source.stat().st_size), job
            assert sha256(Path(record["pdf"]["path"])) == sha, job
            text = Path(record["text_path"]).read_text()
            assert text == references[source.stem], job
            assert text.count("[PAGE ") == record["page_count"], job
            outcome_path = cli.query("SELECT outcome_path FROM jobs WHERE id = ?", job)[0][0]
            assert json.loads(Path(outcome_path).read_text()) == record, job
        leftovers = list(cli.out.rglob(".rpa-tmp.*"))
        assert not leftovers, leftovers
    return None


def run_trials(
    tmp_path: Path, references: dict[str, str], *, seed: int, trials: int, copies: int
) -> Tally:
    """`trials` independent trials, each with its own mirror, database and processes, and
    its own seeded generator for the kill moments (so any one trial can be replayed).

    Kill moments start out drawn from 0.2-3 s. A fast machine finishes a whole run sooner:
    a run that ends before its kill voids its trial, and later moments are drawn within the
    time that run took, so every counted trial has its kill whatever the machine's speed.
    """
    master = random.Random(seed)
    tally = Tally()
    horizon = 3.0
    n = 0
    while tally.trials < trials:
        assert tally.void <= trials, f"runs keep ending before their kill: {tally.line()}"
        workdir = tmp_path / f"trial-{n:02d}"
        workdir.mkdir()
        n += 1
        rng = random.Random(master.randrange(2**32))
        took = crash_trial(rng, workdir, copies, references, tally, horizon)
        if took is not None:
            horizon = max(0.3, min(horizon, took))
    return tally


@pytest.mark.timeout(300)
def test_kill_9_at_random_moments_loses_and_repeats_nothing(
    tmp_path: Path, reference_texts: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    tally = run_trials(tmp_path, reference_texts, seed=20240604, trials=10, copies=2)
    with capsys.disabled():
        print(f"\nkill -9 harness: {tally.line()}")
    assert tally.trials == 10 and tally.kills >= 10
    assert (tally.lost, tally.duplicated, tally.refetched) == (0, 0, 0)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_9_many_more_trials(
    tmp_path: Path, reference_texts: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    tally = run_trials(tmp_path, reference_texts, seed=7, trials=40, copies=3)
    with capsys.disabled():
        print(f"\nkill -9 harness (slow): {tally.line()}")
    assert tally.trials == 40 and tally.kills >= 40
    assert (tally.lost, tally.duplicated, tally.refetched) == (0, 0, 0)


# ---------------------------------------------------------------------------- processes


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (the forkserver and the extraction processes)."""
    parent_of: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        parent_of[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parent_of.items() if parent in frontier}
        found |= frontier
    return found


def has_open(pid: int, path: Path) -> bool:
    try:
        return any(
            os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:  # the process or the descriptor went away
        return False


def signal_pending(pid: int, sig: int) -> bool:
    """Is `sig` still pending for `pid` (not yet delivered to its handler)?"""
    mask = 1 << (sig - 1)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & mask:
            return True
    return False


def stages(cli: Cli) -> dict[str, str]:
    return {r[0]: r[1] for r in cli.query("SELECT id, stage FROM jobs")}


# ---------------------------------------------------------------------------- signals


def test_sigint_finishes_in_flight_work_releases_leases_and_resume_continues(
    tmp_path: Path,
) -> None:
    files = {f"{p.stem}-{i}": p for i in range(2) for p in CRASH_PDFS}
    # every download takes about a second, so three are in flight when the signal comes
    faults = {name: Fault.slow_body(1.0) for name in files}
    with Mirror(files, faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = cli.knobs(
            workers=3, download_concurrency=3, extract_workers=1, grace=30, progress=False
        )
        proc = cli.popen("run", str(ids), *knobs)
        try:
            wait_until(lambda: mirror.total_requests >= 3, 60, "three downloads", proc)
            in_flight = {f"ext:{n}" for n in files if mirror.requests(n)}
        finally:
            code = interrupt(proc, signal.SIGINT)
        assert code == 130, run_log(cli)
        assert "rpa resume" in run_log(cli)
        # "stopping" said when the signal came; once the summary is out, nothing of it (the
        # summary's notices repeated it after the run had stopped)
        log = run_log(cli)
        head = re.search(r"^run \S+ interrupted: ", log, re.MULTILINE)
        assert head is not None, log
        assert "stopping: finishing in-flight work" in log[: head.start()], log
        assert "stopping" not in log[head.start() :], log
        # what was in flight finished within the grace; nothing new was claimed or asked for
        state = stages(cli)
        assert len(in_flight) == 3
        assert {j for j, s in state.items() if s == "done"} == in_flight
        assert {j for j, s in state.items() if s == "queued"} == set(state) - in_flight
        assert mirror.total_requests == 3
        status = cli.status()
        assert status["stuck"]["count"] == 0 and status["totals"]["in_progress"] == 0
        assert status["runs"][0]["status"] == "interrupted"

        resumed = cli.run("resume", *knobs)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert cli.count("stage = 'done'") == len(files)
        assert all(mirror.requests(n) == 1 for n in files)


def test_a_ctrl_c_whose_grace_finishes_every_paper_says_nothing_is_left(tmp_path: Path) -> None:
    """Ctrl-C while the queue's last papers are in flight: the grace finishes them, and the
    run says nothing is left, not "resume continues" (it said so with 0 remaining)."""
    files = {p.stem: p for p in CRASH_PDFS[:3]}
    faults = {name: Fault.slow_body(1.0) for name in files}
    with Mirror(files, faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = cli.knobs(workers=3, download_concurrency=3, grace=30, progress=False)
        proc = cli.popen("run", str(ids), *knobs)
        try:
            wait_until(lambda: mirror.total_requests >= 3, 60, "three downloads", proc)
        finally:
            code = interrupt(proc, signal.SIGINT)
    log = run_log(cli)
    assert code == 130, log
    assert cli.count("stage = 'done'") == 3, log
    assert "interrupted after the queue's last paper: nothing is left to resume" in log
    assert "continues where this stopped" not in log


def test_ctrl_c_while_the_ids_are_queued_says_the_rest_are_not(tmp_path: Path) -> None:
    """Ctrl-C while a long list is being queued: it exited 130 without a word, and `rpa
    resume` then did the part that was queued, the rest of the list forgotten. Now it says
    so, and how to queue the rest; the batches committed stay."""
    cli = Cli(tmp_path, "http://127.0.0.1:9/{id}")
    total = 1_000_000
    ids = tmp_path / "big.txt"
    ids.write_text("".join(f"{2301 + i // 99_999}.{i % 99_999 + 1:05d}\n" for i in range(total)))
    proc = cli.popen("run", str(ids), *cli.knobs(progress=False))
    try:
        wait_until(lambda: cli.db.exists() and _queued(cli) > 0, 60, "a first batch", proc)
    finally:
        code = interrupt(proc, signal.SIGINT)
    log = run_log(cli)
    assert code == 130, log
    said = f"interrupted while queuing {ids}: the IDs queued so far (if any) stay"
    assert said in " ".join(log.split()), log
    assert f"rpa run {ids} --db" in log and "Traceback" not in log
    assert 0 < _queued(cli) < total


def _queued(cli: Cli) -> int:
    try:
        return cli.count("1 = 1")
    except sqlite3.OperationalError:  # no table yet
        return 0


def test_sigterm_is_a_graceful_stop_too(tmp_path: Path) -> None:
    files = {p.stem: p for p in CRASH_PDFS}
    faults = {name: Fault.slow_body(1.0) for name in files}
    with Mirror(files, faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = cli.knobs(workers=1, extract_workers=1, grace=30, progress=False)
        proc = cli.popen("run", str(ids), *knobs)
        try:
            wait_until(lambda: mirror.total_requests >= 1, 60, "a download", proc)
        finally:
            code = interrupt(proc, signal.SIGTERM)
        assert code == 130, run_log(cli)
        assert cli.count("stage = 'done'") == 1 and cli.count("lease_owner IS NOT NULL") == 0
        assert cli.run("resume", *knobs).returncode == 0
        assert cli.count("stage = 'done'") == len(files) == mirror.total_requests


def test_sigint_with_every_paper_waiting_stops_without_waiting_out_the_grace(
    tmp_path: Path,
) -> None:
    """Papers that only wait (here for the host's rate limit: one request a minute) have no
    work under way: a Ctrl-C gives them back at once, not after --grace (60 s here)."""
    files = {f"{p.stem}-{i}": p for i in range(3) for p in CRASH_PDFS}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = cli.knobs(workers=4, extract_workers=1, grace=60, progress=False,
                          rate_limits="127.0.0.1=1/60s")  # fmt: skip
        proc = cli.popen("run", str(ids), *knobs)
        try:
            wait_until(lambda: cli.count("stage = 'done'") == 1, 60, "the first paper", proc)
            wait_until(lambda: cli.count("lease_owner IS NOT NULL") >= 2, 60, "waiters", proc)
            started = time.monotonic()
        finally:
            code = interrupt(proc, signal.SIGINT)
        took = time.monotonic() - started
        assert code == 130, run_log(cli)
        assert took < 30, f"{took:.1f}s: the stop waited for the grace"
        assert mirror.total_requests == 1
        assert cli.count("lease_owner IS NOT NULL") == 0 and cli.count("attempts > 0") == 0


def test_a_second_sigint_stops_at_once(tmp_path: Path) -> None:
    files = {p.stem: p for p in CRASH_PDFS}
    # downloads that stall for 30 s: a graceful stop would wait for them
    faults = {name: Fault.slow_body(30.0) for name in files}
    with Mirror(files, faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = cli.knobs(workers=2, extract_workers=1, grace=60, read_timeout=60, progress=False)
        proc = cli.popen("run", str(ids), *knobs)
        try:
            wait_until(lambda: mirror.total_requests >= 2, 60, "two stalled downloads", proc)
            os.kill(proc.pid, signal.SIGINT)
            # delivered (so the second one cannot merge with it in the kernel)
            wait_until(lambda: not signal_pending(proc.pid, signal.SIGINT), 10, "delivery")
            asked = time.monotonic()
        finally:
            code = interrupt(proc, signal.SIGINT)
        took = time.monotonic() - asked
        assert code == 130, run_log(cli)
        assert took < 10.0, took  # not the 60 s grace, not the 30 s stall
        # the cut downloads went back to the queue: no lease held, nothing half-checkpointed
        assert cli.count("lease_owner IS NOT NULL") == 0
        assert set(stages(cli).values()) == {"queued"}
        assert not list(cli.out.rglob(".rpa-tmp.*"))

        for name in files:
            mirror.set_fault(name, None)
        resumed = cli.run("resume", *knobs)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert cli.count("stage = 'done'") == len(files)


# ---------------------------------------------------------------------------- cooperation


def test_two_runs_on_one_database_never_work_on_the_same_job(tmp_path: Path) -> None:
    files = {f"{p.stem}-{i}": p for i in range(4) for p in CRASH_PDFS}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = cli.knobs(workers=2, extract_workers=1, progress=False, heartbeat_seconds=0.5)
        connect(cli.db).close()  # an existing queue (creating one at once: the test below)
        first = cli.popen("run", str(ids), *knobs)
        second = cli.popen("run", str(ids), *knobs)
        codes = (first.wait(timeout=120), second.wait(timeout=120))
        log = run_log(cli)
        # neither failed anything: jobs the other live run is finishing are not a failure
        assert codes == (0, 0), (codes, log)
        assert cli.count("stage = 'done'") == len(files), log
        # each job was fetched, extracted and completed once, by one of the two runs
        assert all(mirror.requests(n) == 1 for n in files)
        extracts = cli.query(
            "SELECT job_id, count(*) FROM attempts WHERE stage = 'extract' GROUP BY job_id"
        )
        assert sorted(extracts) == sorted((f"ext:{n}", 1) for n in files)
        results = cli.query("SELECT run_id, count(*) FROM results GROUP BY run_id")
        assert sum(n for _, n in results) == len(files)
        assert cli.query("SELECT sum(done) FROM runs")[0][0] == len(files)
        assert len(results) == 2, results  # both really worked, side by side


def test_two_processes_can_create_the_same_database_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `rpa run` started together on a new database: both read schema version 0 before
    either migrates. Deterministic here: each opener waits for the other before migrating."""
    both_read = threading.Barrier(2, timeout=10)
    real_transaction = SqliteSql.transaction
    first_call = threading.local()

    @contextlib.contextmanager
    def transaction_after_both_read(self: SqliteSql) -> Iterator[None]:
        if not getattr(first_call, "done", False):
            first_call.done = True
            both_read.wait()
        with real_transaction(self):
            yield

    monkeypatch.setattr(rpa.queue.sqlite.SqliteSql, "transaction", transaction_after_both_read)
    path = tmp_path / "rpa.db"
    with ThreadPoolExecutor(2) as pool:
        opened = list(pool.map(lambda _: connect(path), range(2)))
    for conn in opened:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()


# ---------------------------------------------------------------------------- disk guard


def beat_for(cli: Cli, seconds: float) -> bool:
    """Has the run been alive (heartbeating) for `seconds`?"""
    try:
        rows = cli.query("SELECT heartbeat_at - started_at FROM runs")
    except sqlite3.OperationalError:  # not created yet
        return False
    return bool(rows) and rows[0][0] >= seconds


def free_mb(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 1e6


def test_low_disk_stops_claiming_says_so_and_resume_continues(tmp_path: Path) -> None:
    files = {p.stem: p for p in CRASH_PDFS}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        # temporary files an interrupted run left behind
        leftovers = [
            cli.out / "pdf" / "ext" / ".tmp-cut-short.pdf-0123abcd",
            cli.out / "pdf" / ".tmp-stray-deadbeef",
            cli.out / "outcome" / "ext" / ".tmp-cut-short.json",
        ]
        for path in leftovers:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"%PDF-1.4 half a file")
        knobs = cli.knobs(workers=4, extract_workers=1, progress=False, heartbeat_seconds=0.2)
        proc = cli.popen("run", str(ids), *knobs, "--min-free-mb", str(free_mb(tmp_path) * 10))
        try:
            wait_until(lambda: beat_for(cli, 1.0), 60, "a second of the run", proc)
            # a second of running, several heartbeats: nothing was claimed or fetched
            assert cli.count("lease_owner IS NOT NULL OR stage != 'queued'") == 0
            assert mirror.total_requests == 0
            assert not any(path.exists() for path in leftovers)  # cleaned at start
        finally:
            code = interrupt(proc, signal.SIGINT)
        assert code == 130
        assert "free space under" in run_log(cli) and "claiming paused" in run_log(cli)

        resumed = cli.run("resume", *knobs, "--min-free-mb", "1")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert cli.count("stage = 'done'") == len(files) == mirror.total_requests


def test_low_disk_pauses_claiming_and_the_run_goes_on_when_space_returns(tmp_path: Path) -> None:
    """A real full-ish disk: a filler file takes the space, deleting it gives it back."""
    filler, filler_mb, margin_mb = tmp_path / "filler", 256, 64
    if free_mb(tmp_path) < 4 * filler_mb:
        pytest.skip(f"needs {4 * filler_mb} MB free under {tmp_path}")
    files = {p.stem: p for p in CRASH_PDFS}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        floor = free_mb(tmp_path) - margin_mb  # below what is free now, above it with the filler
        with filler.open("wb") as out:
            chunk = b"\0" * (1 << 20)
            for _ in range(filler_mb):
                out.write(chunk)  # written, not fallocated: every file system counts it
            out.flush()
            os.fsync(out.fileno())
        assert free_mb(tmp_path) < floor
        knobs = cli.knobs(workers=4, extract_workers=1, progress=False, heartbeat_seconds=0.2)
        proc = cli.popen("run", str(ids), *knobs, "--min-free-mb", f"{floor:.0f}")
        try:
            wait_until(lambda: beat_for(cli, 1.0), 60, "a second of the run", proc)
            assert mirror.total_requests == 0 and cli.count("stage != 'queued'") == 0
            filler.unlink()  # the space comes back
            assert proc.wait(timeout=90) == 0, run_log(cli)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert "claiming paused" in run_log(cli)
        assert cli.count("stage = 'done'") == len(files) == mirror.total_requests


def test_start_up_removes_only_the_temporary_files_of_runs_that_are_not_live(
    tmp_path: Path,
) -> None:
    """Temporary files carry their run's id: a run starting next to a live one removes the
    leftovers of dead runs (of every kind), never a file the live run is writing."""
    layout = Layout(tmp_path / "out")
    layout.prepare(set())
    whole = layout.text_path("ext:kept")
    dead, live = "20260101T000000-dead00", "20260101T000000-live00"
    leftovers = [
        layout.pdf_path("ext:cut").parent / temp_name("ext_cut.pdf", dead),  # a download
        layout.outcome_path("ext:cut").parent / temp_name("ext_cut.json", dead),  # a record
        whole.parent / f".rpa-tmp.{dead}.x1y2z3.ext_kept.txt",  # extract's mkstemp name
        layout.pdf_path("ext:old").parent / ".tmp-ext_old.pdf-0123abcd",  # an older rpa's
        whole.parent / ".rpa-x1y2z3.tmp",  # an older rpa's text file
    ]
    writing = [
        layout.pdf_path("ext:busy").parent / temp_name("ext_busy.pdf", live),
        whole.parent / f".rpa-tmp.{live}.a1b2c3.ext_busy.txt",
    ]
    for path in [whole, *leftovers, *writing]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("[PAGE 1]\nhalf")
    # another run is live: its files stay, and the old-style names (whose run is unknown) too
    assert layout.prepare({live}) == 3
    assert whole.exists() and all(path.exists() for path in writing)
    assert [path for path in leftovers if path.exists()] == leftovers[3:]
    # no live run: every leftover goes
    assert layout.prepare(set()) == 4
    assert whole.exists() and not any(p.exists() for p in [*leftovers, *writing])


# ---------------------------------------------------------------------------- poison


def test_a_pdf_that_kills_its_process_twice_is_quarantined(tmp_path: Path) -> None:
    """Its first death (among others: maybe the machine's) is retried alone, uncounted; the
    two deaths alone that follow are charged: poison (rpa.run.policy)."""
    victim = max(sample_pdfs(), key=lambda p: p.stat().st_size)  # the slowest to extract
    files = {"victim": victim, **{p.stem: p for p in CRASH_PDFS}}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = cli.knobs(
            workers=4,
            extract_workers=1,
            poison_after=2,
            max_attempts=5,
            retry_base=0.05,
            retry_max=0.5,
            progress=False,
        )
        proc = cli.popen("run", str(ids), *knobs)
        victim_pdf = Layout(cli.out).pdf_path("ext:victim")
        killed: list[int] = []

        def parsing_victim() -> int | None:
            """The extraction process that has the victim's PDF open, if one has."""
            for pid in descendants(proc.pid) - set(killed):
                if has_open(pid, victim_pdf):
                    return pid
            return None

        try:
            for _ in range(3):
                wait_until(lambda: parsing_victim() is not None, 60, "the victim's parse", proc)
                pid = parsing_victim()
                assert pid is not None
                os.kill(pid, signal.SIGKILL)  # as a segfault or the OOM killer would
                killed.append(pid)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                interrupt(proc)
        assert code == 1, run_log(cli)  # one paper failed
        stage, kind, message, attempts, crashes = cli.query(
            "SELECT stage, error_kind, error_message, attempts, crashes FROM jobs "
            "WHERE id = 'ext:victim'"
        )[0]
        assert (stage, kind, attempts, crashes) == ("failed", "poison", 2, 2)
        assert "killed 2 extraction processes while alone" in message
        # the pool replaced the killed processes and the other papers went through
        assert cli.count("stage = 'done'") == len(files) - 1
        assert mirror.requests("victim") == 1  # the checkpointed PDF was reused, not refetched
        crashed = cli.query(
            "SELECT count(*) FROM attempts WHERE job_id = 'ext:victim' AND stage = 'extract' "
            "AND error_kind = 'worker_crashed'"
        )
        assert crashed[0][0] == 3


@pytest.mark.corpus
def test_extraction_processes_die_with_a_killed_run(tmp_path: Path, corpus: Path) -> None:
    slow = corpus / "hostile" / "samplefiles__GeoTopo-117p.pdf"  # 5 s or more in pypdf
    with Mirror({"slow": slow}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:slow"])
        proc = cli.popen("run", str(ids), *cli.knobs(workers=1, extract_workers=1))
        pdf = Layout(cli.out).pdf_path("ext:slow")
        try:
            wait_until(
                lambda: any(has_open(pid, pdf) for pid in descendants(proc.pid)),
                60,
                "the parse",
                proc,
            )
            parsing = {pid for pid in descendants(proc.pid) if has_open(pid, pdf)}
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

        def alive(pid: int) -> bool:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return False
            return state != "Z"

        try:
            wait_until(lambda: not any(alive(pid) for pid in parsing), 3, "the orphan to end")
        finally:
            for pid in parsing:  # do not leave one burning a core after the test
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def test_a_killed_run_not_yet_reaped_is_dead_not_live(tmp_path: Path) -> None:
    """kill -9 of a run whose parent has not reaped it leaves a zombie, which kill(pid, 0)
    still finds. Before, `rpa resume` took it for a live run, exited 0 and left its jobs
    stranded ("in progress in another live run"). Liveness now goes by the heartbeat alone
    (rpa.queue.runs): the resume waits for the killed run's jobs, then does them."""
    files = {f"p{i:02d}": p for i, p in enumerate(sample_pdfs() * 4)}
    with Mirror(files, faults={n: Fault.slow_body(0.3) for n in files}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = cli.knobs(progress=False, workers=2, download_concurrency=1)
        proc = cli.popen("run", str(ids), *knobs)
        wait_for(lambda: cli.count("stage = 'done'") >= 2, 60, "2 papers done")
        os.kill(proc.pid, signal.SIGKILL)  # not reaped: a zombie while resume starts
        wait_for(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(")")[1].split()[0]
                 == "Z", 10, "the killed run a zombie")  # fmt: skip
        resumed = cli.run("resume", "--db", str(cli.db), "--no-progress", timeout=120)
        proc.wait()
    said = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, said
    assert "in another live run" not in said
    assert cli.count("stage = 'done'") == len(files)

"""Liveness by the database's clock and a run token (issue 18): real CLI processes on one queue,
real signals, a real loopback mirror, real SQLite files and a real PostgreSQL server. Each case
of issue 18's matrix runs on both backends.

- a fleet process SIGSTOPped past its lease, from a server whose bytes change at every request
  (arXiv's unversioned URL when a new version appears): the others finish its jobs; resumed,
  it writes nothing over their records (PDFs and outcome files match the queue), says it was
  declared dead and exits 75;
- a lone run SIGSTOPped past its lease, and a 25 s database stall (another session holding a
  lock) on both backends: no self-reclaim, no paper downloaded twice, exit 0;
- one process's clock 150 s ahead, in a fleet: nothing done twice;
- a fleet process on "another host" killed with kill -9: `rpa resume` waits for its jobs, then
  does them, and does not exit 0 with work stranded;
- `rpa status` from a host whose clock is 150 s ahead calls a live run live.

Short leases and heartbeats (dead after 3 x 0.5 s + 5 s) keep each test within a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Cli, injected, sample_pdfs, wait_for, write_ids

from rpa.layout import Layout
from rpa.queue.model import dead_after
from rpa.testing.mirror import Fault, Mirror

#: a heartbeat every 0.5 s: a run is dead 6.5 s after its last beat (rpa.queue.model)
FAST = {"heartbeat_seconds": 0.5, "progress": False, "workers": 4, "extract_workers": 1}
#: the matrix's cases run on each backend
BACKENDS = pytest.mark.parametrize("backend", ["sqlite", "postgres"])


def _queue(backend: str, request: pytest.FixtureRequest) -> str | None:
    """Where the test's queue is: None (a SQLite file in the work folder), or the URL of a
    fresh database on the session's PostgreSQL server."""
    if backend == "postgres":
        url: str = request.getfixturevalue("postgres_db")()
        return url
    return None


def _papers(n: int) -> dict[str, Path]:
    return {f"p{i:02d}": p for i, p in zip(range(n), sample_pdfs() * (n // 6 + 1), strict=False)}


@contextlib.contextmanager
def _mirror(n: int, delay: float, *, changing: bool = False) -> Iterator[tuple[Mirror, list[str]]]:
    files = _papers(n)
    faults = {k: Fault.slow_body(delay) for k in files}
    with Mirror(files, faults=faults, changing=changing) as mirror:
        yield mirror, [f"ext:{k}" for k in files]


def _log(cli: Cli) -> str:
    path = cli.workdir / "run.log"
    return path.read_text(errors="replace") if path.exists() else ""


#: a sitecustomize that sets the process's time.time 150 s ahead
_AHEAD = "import time\n_t = time.time\ntime.time = lambda: _t() + 150\n"


def _in_a_transaction(db: Path | str) -> bool:
    """Does a process of rpa hold a transaction on the queue now? SQLite: the write lock is
    taken. PostgreSQL: a connection of rpa (application_name) to the queue's database has a
    transaction open (`xact_start`: running a statement, or idle in a transaction)."""
    if isinstance(db, Path):
        probe = sqlite3.connect(db, timeout=0.2, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    import psycopg

    with psycopg.connect(db, autocommit=True) as pg:
        row = pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'rpa' AND pid != pg_backend_pid() "
            "AND xact_start IS NOT NULL"
        ).fetchone()
    return row is not None and row[0] > 0


def _stop_outside_a_transaction(proc: subprocess.Popen[bytes], db: Path | str) -> None:
    """SIGSTOP `proc` at a moment it holds no transaction on the queue, the only rpa process
    on it (one stopped inside a transaction would hold the queue's locks, which is another
    test's matter)."""
    for _ in range(200):
        os.kill(proc.pid, signal.SIGSTOP)
        if not _in_a_transaction(db):
            return
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the run never left its transactions")


def _leased(cli: Cli) -> set[str]:
    return {r[0] for r in cli.query("SELECT id FROM jobs WHERE lease_owner IS NOT NULL")}


def _stop_while_downloading(proc: subprocess.Popen[bytes], cli: Cli, mirror: Mirror) -> set[str]:
    """SIGSTOP the queue's only run outside a transaction while it holds the lease of a job
    whose PDF it has asked the mirror for (a claim's leases come before its requests, and a
    slow body's download takes its 0.6 s): the jobs it holds."""
    wait_for(lambda: cli.count("lease_owner IS NOT NULL") >= 3, 60, "leases taken")
    for _ in range(20):
        wait_for(lambda: any(mirror.requests(j[4:]) for j in _leased(cli)), 60, "a download")
        _stop_outside_a_transaction(proc, cli.db)
        held = _leased(cli)
        if any(mirror.requests(j[4:]) for j in held):
            return held
        os.kill(proc.pid, signal.SIGCONT)  # it finished that download meanwhile: again
    raise AssertionError("the run was never stopped while downloading")


def _silent_for(cli: Cli) -> float:
    """Seconds since the last heartbeat of the queue's only run (SQLite's clock is ours, and
    the PostgreSQL server's runs on this machine)."""
    (beat,) = cli.query("SELECT heartbeat_at FROM runs")[0]
    return time.time() - float(beat)


def _agree(cli: Cli) -> dict[str, str]:
    """Every done job's outcome file and PDF agree with the queue's record (results.run_id,
    sha256), and every PDF under a final name is a done job's. Returns job id -> the run
    that completed it."""
    layout = Layout(cli.out)
    rows = cli.query("SELECT id, run_id, sha256 FROM results")
    assert len(rows) == cli.count("stage = 'done'")
    for job_id, run_id, sha256 in rows:
        record = json.loads(layout.outcome_path(job_id).read_text())
        assert record["run_id"] == run_id, job_id
        pdf = Path(record["pdf"]["path"])
        assert pdf == layout.pdf_path(job_id)
        assert hashlib.sha256(pdf.read_bytes()).hexdigest() == sha256 == record["pdf"]["sha256"]
    assert set((cli.out / "pdf").rglob("*.pdf")) == {layout.pdf_path(r[0]) for r in rows}
    return {job_id: run_id for job_id, run_id, _ in rows}


def _downloads(cli: Cli) -> dict[str, int]:
    """Successful download attempts per job (the attempts table)."""
    rows = cli.query(
        "SELECT job_id, count(*) FROM attempts WHERE stage = 'download' AND outcome = 'ok' "
        "GROUP BY job_id"
    )
    return {job_id: n for job_id, n in rows}


@BACKENDS
def test_a_fleet_process_paused_past_its_lease_is_declared_dead_and_writes_nothing(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """The server's bytes change at every request: a stale download can never match the
    record of the run that completed the job, so a PDF it put under the final name would
    show. Its leases are long (30 s): the other run takes its jobs because it is dead (6.5 s
    silent), long before they would expire (a first claim's worker that went by the lease
    alone would think its lease still held, and replace the other run's PDF)."""
    db = _queue(backend, request)
    with _mirror(16, 0.6, changing=True) as (mirror, ids):
        cli = Cli(tmp_path, mirror.url_template, db)
        knobs = cli.knobs(lease_seconds=30, **FAST)
        stale = cli.popen("run", str(write_ids(tmp_path / "ids.txt", ids)), *knobs)
        try:
            held = _stop_while_downloading(stale, cli, mirror)
            # paused past the point where any run finds it dead (a resume that ends sooner
            # takes its expired leases and finishes without having to)
            wait_for(lambda: _silent_for(cli) > dead_after(0.5), 60, "the stale run silent")
            other = cli.run("resume", *knobs, timeout=90)
            assert other.returncode == 0, other.stdout + other.stderr
            assert cli.count("stage = 'done'") == len(ids)
            before = _agree(cli)
        finally:
            os.kill(stale.pid, signal.SIGCONT)
        assert stale.wait(60) == 75, _log(cli)
    said = _log(cli)
    assert "declared dead" in said and "Traceback" not in said, said
    # the stale run was downloading jobs the other run did again, with other bytes
    assert any(mirror.requests(j[4:]) >= 2 for j in held), mirror.stats()
    # nothing of the other run's was replaced; the jobs it held were done by the other run
    assert _agree(cli) == before
    statuses = {r["id"]: r["status"] for r in cli.status()["runs"]}
    assert sorted(statuses.values()) == ["crashed", "finished"], statuses
    (stale_id,) = [r for r, s in statuses.items() if s == "crashed"]
    assert held and not any(before[j] == stale_id for j in held)


def test_a_worker_whose_lease_another_run_took_stops_and_says_so_once(tmp_path: Path) -> None:
    """Paused past its lease (2 s) but not past its death (6.5 s): the other run frees and takes
    the expired leases; the paused run, resumed, is alive, cancels just those workers (said
    once each), writes nothing over the other's records and finishes."""
    with _mirror(16, 0.6) as (mirror, ids):
        cli = Cli(tmp_path, mirror.url_template)
        knobs = cli.knobs(lease_seconds=2, **FAST)
        slow = cli.popen("run", str(write_ids(tmp_path / "ids.txt", ids)), *knobs)
        wait_for(lambda: cli.count("lease_owner IS NOT NULL") >= 3, 60, "leases taken")
        other = cli.popen("resume", *knobs)
        wait_for(lambda: len({r[0] for r in cli.query("SELECT lease_owner FROM jobs "
                 "WHERE lease_owner IS NOT NULL")}) == 2, 60, "both runs working")  # fmt: skip
        try:
            _stop_outside_a_transaction(slow, cli.db)
            held = {r[0] for r in cli.query("SELECT id FROM jobs WHERE lease_owner IS NOT NULL")}
            time.sleep(4)
        finally:
            os.kill(slow.pid, signal.SIGCONT)
        assert slow.wait(60) == 0 and other.wait(60) == 0, _log(cli)
    said = _log(cli)
    # the notices as they came (the summary repeats the last ones)
    lost = [line for line in said.splitlines() if line.startswith("rpa: lease lost")]
    assert lost, said
    for job_id in held:
        assert sum(job_id + " " in line or line.endswith(job_id) for line in lost) <= 1, lost
    assert "declared dead" not in said and "Traceback" not in said, said
    assert cli.count("stage = 'done'") == len(ids)
    _agree(cli)


@BACKENDS
def test_a_lone_run_paused_past_its_lease_redoes_nothing(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db = _queue(backend, request)
    with _mirror(12, 0.4) as (mirror, ids):
        cli = Cli(tmp_path, mirror.url_template, db)
        proc = cli.popen("run", str(write_ids(tmp_path / "ids.txt", ids)),
                         *cli.knobs(lease_seconds=2, **FAST))  # fmt: skip
        try:
            wait_for(lambda: cli.count("stage = 'done'") >= 2, 60, "2 papers done")
            _stop_outside_a_transaction(proc, cli.db)
            time.sleep(9)  # the pause itself: past its lease (2 s) and its death (6.5 s)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(60) == 0, _log(cli)
    assert cli.count("stage = 'done'") == len(ids)
    assert {k: mirror.requests(k) for k in (i[4:] for i in ids)} == {i[4:]: 1 for i in ids}
    assert set(_downloads(cli).values()) == {1}
    assert "reclaimed" not in _log(cli)
    _agree(cli)


def _hold_lock(cli: Cli, seconds: float, holding: threading.Event) -> None:
    """Another session holds the queue's write lock for `seconds`."""
    if isinstance(cli.db, Path):
        conn = sqlite3.connect(cli.db, timeout=30, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        holding.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()
        return
    import psycopg

    with psycopg.connect(cli.db) as pg:
        pg.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        holding.set()
        time.sleep(seconds)
        pg.rollback()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_25s_database_stall_makes_no_run_reclaim_its_own_work(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Under SQLite's 30 s busy timeout; on PostgreSQL `LOCK TABLE jobs` held 25 s."""
    db = _queue(backend, request)
    with _mirror(16, 0.3) as (mirror, ids):
        cli = Cli(tmp_path, mirror.url_template, db)
        proc = cli.popen("run", str(write_ids(tmp_path / "ids.txt", ids)),
                         *cli.knobs(lease_seconds=3, **FAST))  # fmt: skip
        wait_for(lambda: cli.count("stage = 'done'") >= 2, 60, "2 papers done")
        holding = threading.Event()
        locker = threading.Thread(target=_hold_lock, args=(cli, 25, holding))
        locker.start()
        holding.wait(30)
        locker.join()
        assert proc.wait(60) == 0, _log(cli)
    said = _log(cli)
    assert cli.count("stage = 'done'") == len(ids), said
    assert set(_downloads(cli).values()) == {1}, said
    assert all(mirror.requests(i[4:]) == 1 for i in ids), mirror.stats()
    assert "reclaimed" not in said and "Traceback" not in said, said
    _agree(cli)


def _fleet(
    tmp_path: Path,
    db: str | None,
    mirror: Mirror,
    ids: list[str],
    second_env: dict[str, str],
    **knobs: object,
) -> tuple[Cli, subprocess.Popen[bytes], Callable[[], subprocess.Popen[bytes]]]:
    cli = Cli(tmp_path, mirror.url_template, db)
    flags = cli.knobs(**{**FAST, **knobs})
    first = cli.popen("run", str(write_ids(tmp_path / "ids.txt", ids)), *flags)
    wait_for(lambda: cli.count("lease_owner IS NOT NULL") >= 2, 60, "the first run's leases")
    return cli, first, lambda: cli.popen("resume", *flags, **second_env)


@BACKENDS
def test_a_process_whose_clock_is_150s_ahead_does_nothing_twice(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """The skew is injected into one process (its time.time), because a real clock change
    needs root on the whole machine; liveness must not read that clock."""
    db = _queue(backend, request)
    ahead = injected(tmp_path, "ahead", _AHEAD)
    with _mirror(24, 0.3) as (mirror, ids):
        cli, first, start_second = _fleet(tmp_path, db, mirror, ids, ahead, lease_seconds=3)
        second = start_second()
        assert second.wait(90) == 0, _log(cli)
        assert first.wait(60) == 0, _log(cli)
    said = _log(cli)
    assert cli.count("stage = 'done'") == len(ids), said
    assert all(mirror.requests(i[4:]) == 1 for i in ids), mirror.stats()
    assert set(_downloads(cli).values()) == {1}
    assert "reclaimed" not in said and "lease lost" not in said, said
    runs = {r[0]: r[1] for r in cli.query("SELECT id, done FROM runs")}
    assert len(runs) == 2 and all(runs.values()), runs  # both worked
    _agree(cli)


@BACKENDS
def test_resume_after_a_kill_9_waits_for_the_dead_runs_jobs_and_does_them(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """The killed run is on "another host": its hostname is injected (a second machine cannot
    be had in a test), so no same-host process check can see it gone; only its heartbeat."""
    db = _queue(backend, request)
    elsewhere = injected(
        tmp_path, "elsewhere", "import socket\nsocket.gethostname = lambda: 'elsewhere'\n"
    )
    with _mirror(12, 0.5) as (mirror, ids):
        cli = Cli(tmp_path, mirror.url_template, db)
        flags = cli.knobs(lease_seconds=60, **FAST)  # its leases outlive the test
        # more workers than papers: it holds every job left when it is killed
        wide = [*flags, "--workers", "16"]
        killed = cli.popen("run", str(write_ids(tmp_path / "ids.txt", ids)), *wide, **elsewhere)
        wait_for(lambda: cli.count("stage = 'done'") >= 2, 60, "2 papers done")
        wait_for(lambda: cli.count("lease_owner IS NOT NULL") >= 2, 60, "leases held")
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        resumed = cli.run("resume", *flags, timeout=90)
    said = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, said
    assert "waiting for" in said and "in another live run" not in said, said
    assert cli.count("stage = 'done'") == len(ids), said
    _agree(cli)


def test_a_final_pdf_is_never_replaced_and_a_committed_record_reaches_its_name(
    tmp_path: Path,
) -> None:
    """The file mechanisms alone (rpa.run.publish), on a real queue file: a second holder's
    download never replaces the PDF at its final name (it learns the size and sha256 of the
    one there); a record whose `complete` committed but whose run died before the rename is
    renamed into place at the next start, and one whose `complete` never committed is not."""
    from concurrent.futures import ThreadPoolExecutor

    from rpa.queue import jobs, open_store, runs
    from rpa.queue.aio import AsyncQueue
    from rpa.queue.model import RunInfo
    from rpa.run.publish import prepare_out, private_name, publish_pdf, stage_record

    one, two = sample_pdfs()[:2]
    final = tmp_path / "final.pdf"
    first, second = private_name(final, "run-a"), private_name(final, "run-b")
    first.write_bytes(one.read_bytes())
    second.write_bytes(two.read_bytes())
    assert publish_pdf(first, final) is None
    kept = publish_pdf(second, final)
    assert kept == (len(one.read_bytes()), hashlib.sha256(one.read_bytes()).hexdigest())
    assert final.read_bytes() == one.read_bytes()
    assert not first.exists() and not second.exists()

    db, layout = tmp_path / "rpa.db", Layout(tmp_path / "out")
    store = open_store(db)
    store.enqueue(["ext:a", "ext:b"], 0.0)
    runs.register_run(store, RunInfo("dead-run", "run", 0.0, 5.0, "{}"))
    a, b = jobs.claim(store, "dead-run", 2, 60, 0.0)
    records = {j.id: {"id": j.id, "run_id": "dead-run", "pdf": {}} for j in (a, b)}
    staged = {j: stage_record(layout.outcome_path(j), r, "dead-run") for j, r in records.items()}
    assert jobs.complete(store, "dead-run", a.lease, records[a.id], "x", 1.0)  # b's never did
    store.close()

    async def start() -> None:
        queue = AsyncQueue(db)
        await queue.open()
        with ThreadPoolExecutor(1) as io:
            assert await prepare_out(queue, layout, set(), io) == 1
        await queue.close()

    asyncio.run(start())
    assert json.loads(layout.outcome_path(a.id).read_text()) == records[a.id]
    assert not layout.outcome_path(b.id).exists()
    assert not any(p.exists() for p in staged.values())


def test_a_changing_mirror_serves_each_request_other_bytes_of_the_same_valid_pdf() -> None:
    """The upstream of the fleet test: two requests, two sha256s, each a real PDF that reads
    as the file does (the comment line after %%EOF is all that differs)."""
    import io

    import httpx
    import pypdf

    source = sample_pdfs()[0]
    with Mirror({"a": source}, changing=True) as mirror:
        bodies = [httpx.get(mirror.url_template.format(id="a")).content for _ in range(2)]
    assert len({hashlib.sha256(b).hexdigest() for b in bodies}) == 2
    assert all(b.startswith(source.read_bytes()) for b in bodies)
    pages = len(pypdf.PdfReader(source).pages)
    assert [len(pypdf.PdfReader(io.BytesIO(b)).pages) for b in bodies] == [pages, pages]


def test_a_first_claim_whose_lease_may_have_lapsed_keeps_the_pdf_at_its_final_name(
    tmp_path: Path,
) -> None:
    """The extraction process's publish, on real files: a job's first claim replaces a file
    at the final name (foreign: another queue's) only while the run vouches that its leases
    surely hold; once they may have lapsed (the process paused past them, or the run found
    dead: another run may have published there), the file there is kept and recorded. The
    vouch is read at the publish, not when the task was made (a paper that waited for its
    turn while the heartbeats went on still holds its lease). The end-to-end case is the
    SIGSTOP fleet test above, whose stale download reaches this point only sometimes."""
    from rpa.extract.paper import work_paper
    from rpa.extract.pdf import extract_pdf
    from rpa.extract.protocol import PaperTask
    from rpa.queue.clock import Vouch, lease_clock, vouched_until
    from rpa.queue.model import Job
    from rpa.run.publish import private_name

    there, downloaded = (p.read_bytes() for p in sample_pdfs()[:2])
    kept = {}
    vouch = Vouch()
    for case, sure_until in (("sure", 60.0), ("lapsed", -1.0), ("revoked", None)):
        final = tmp_path / case / "pdf" / "x.pdf"
        final.parent.mkdir(parents=True)
        final.write_bytes(there)
        private = private_name(final, "r1")
        private.write_bytes(downloaded)
        task = PaperTask(
            job=Job("ext:x", 1, "queued", 0, 0), run_id="r1", extractor="pypdf",
            pdf=str(private), check="download", text_path=str(tmp_path / case / "x.txt"),
            outcome_path=str(tmp_path / case / "x.json"), publish_to=str(final), first=True,
            vouch=vouch.path,
        )  # fmt: skip
        # the heartbeat moves the vouch on after the task was made (or the run is found dead)
        vouch.until(0.0 if sure_until is None else lease_clock() + sure_until)
        result = work_paper(task, extract_pdf)
        assert result["ok"], result
        assert not private.exists()
        kept[case] = (final.read_bytes(), result["pdf_sha256"])
    assert kept["sure"] == (downloaded, hashlib.sha256(downloaded).hexdigest())
    assert kept["lapsed"] == kept["revoked"] == (there, hashlib.sha256(there).hexdigest())
    vouch.close()  # the run is gone: nothing is vouched for
    assert vouched_until(vouch.path) == 0.0


@BACKENDS
def test_rpa_status_on_a_host_whose_clock_is_150s_ahead_calls_a_live_run_live(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """`rpa status` judges runs by the database's clock: read from a process whose time.time
    is 150 s ahead (injected), a run beating every 0.5 s is running, its jobs not stuck."""
    db = _queue(backend, request)
    ahead = injected(tmp_path, "ahead", _AHEAD)
    with _mirror(8, 5.0) as (mirror, ids):
        cli = Cli(tmp_path, mirror.url_template, db)
        run = cli.popen("run", str(write_ids(tmp_path / "ids.txt", ids)), *cli.knobs(**FAST))
        try:
            wait_for(lambda: cli.count("lease_owner IS NOT NULL") >= 1, 60, "a lease held")
            result = cli.run(
                "status", "--json", "--db", str(cli.db), PYTHONPATH=ahead["PYTHONPATH"]
            )
            assert result.returncode == 0, result.stderr
            status = json.loads(result.stdout)
            assert [r["status"] for r in status["runs"]] == ["running"], status["runs"]
            assert status["stuck"]["count"] == 0, status["stuck"]
        finally:
            run.send_signal(signal.SIGINT)
            run.wait(60)

"""The queue database goes away mid-run, and the run waits for it (issue 18).

Real CLI in a subprocess, a real loopback mirror serving real PDFs (slowed so that the outage
lands mid-run), a real PostgreSQL server of this module's own (stopped, restarted, its
backends terminated, its connection slots taken) and real SQLite files locked by a real
second writer. What must hold in each case: every paper done exactly once (one results row,
one download, one successful extraction), none failed, exit 0, no traceback, and the wait
said in the output."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Cli, sample_pdfs, wait_for, write_ids

from rpa.classify import classify
from rpa.config import Settings
from rpa.errors import DatabaseError, DatabaseStayedAway, DatabaseUnavailable
from rpa.notices import Notices
from rpa.queue import QueueStore, open_store
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import Job
from rpa.queue.outage import database_outage
from rpa.run.policy import judge
from rpa.testing.mirror import Fault, Mirror
from rpa.testing.pgserver import PostgresServer

#: this module's server: few connection slots, so that a test can take every one
MAX_CONNECTIONS = 16
#: the heartbeat of the runs here: short, so an outage lasts many beats (a run never declares
#: itself dead for a stall: rpa.run.heartbeat), and a resume finds a run that died fast
HEARTBEAT = 2
SAID_DOWN = "the queue database is unavailable since"
SAID_BACK = "the queue database is back after"


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PostgresServer]:
    """A server only these tests use: they stop it, fill it, terminate its backends. Its
    commits are synchronous (the shared test server's are not): an immediate stop is a crash,
    and a real server loses no committed transaction in one."""
    settings = {"max_connections": str(MAX_CONNECTIONS), "synchronous_commit": "on"}
    with PostgresServer(settings=settings) as server:
        yield server


def _admin(server: PostgresServer, dbname: str = "rpa") -> psycopg.Connection[Any]:
    return psycopg.connect(server.url_for(dbname), autocommit=True)


def _fresh_db(server: PostgresServer, owner: str | None = None) -> str:
    """A new database on `server` (owned by `owner`, a login role made for it); its URL."""
    name = f"q_{uuid.uuid4().hex[:8]}"
    if owner is None:
        return server.create_database(name)
    with _admin(server) as conn:
        conn.execute(f"CREATE ROLE {owner} LOGIN")
        conn.execute(f"CREATE DATABASE {name} OWNER {owner}")
    return server.url_for(name).replace(f"//{server.user}@", f"//{owner}@")


class Papers:
    """`n` papers on a slowed mirror, and a run of them through the real CLI."""

    def __init__(self, tmp_path: Path, db: str | None, n: int = 16, slow: float = 0.3) -> None:
        pdfs = sample_pdfs()
        self.names = [f"p{i:02d}" for i in range(n)]
        files = {name: pdfs[i % len(pdfs)] for i, name in enumerate(self.names)}
        self.mirror = Mirror(files, faults={n: Fault.slow_body(slow) for n in self.names})
        self.mirror.start()
        self.cli = Cli(tmp_path, self.mirror.url_template, db)
        self.ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in self.names])
        self.log = tmp_path / "run.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Papers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.mirror.close()

    def start(self, **knobs: Any) -> None:
        knobs = {"progress": False, "workers": 4, "download_concurrency": 2,
                 "heartbeat_seconds": HEARTBEAT, **knobs}  # fmt: skip
        self.proc = self.cli.popen("run", str(self.ids), *self.cli.knobs(**knobs))

    def finish(self) -> None:
        """The run ends by itself, exit 0, having said the wait and its end, every paper
        done once."""
        assert self.proc is not None
        assert self.proc.wait(timeout=90) == 0, self.said()[-3000:]
        said = self.said()
        assert SAID_DOWN in said and SAID_BACK in said and "crashed" not in said, said[-3000:]
        self.check_all_done_once()

    def said(self) -> str:
        return self.log.read_text(errors="replace")

    def check_all_done_once(self, query: Any = None) -> None:
        """Every paper done exactly once: one results row, one download, one extraction."""
        query = query or self.cli.query
        n = len(self.names)
        said = self.said()
        assert "Traceback" not in said, said[-3000:]
        assert query("SELECT count(*) FROM jobs WHERE stage = 'done'")[0][0] == n, said[-3000:]
        assert query("SELECT count(*) FROM jobs WHERE stage = 'failed'")[0][0] == 0
        assert query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM results")[0] == (n, n)
        twice = query(
            "SELECT job_id FROM attempts WHERE stage = 'extract' AND outcome = 'ok' "
            "GROUP BY job_id HAVING count(*) > 1"
        )
        assert twice == [], f"extracted twice: {twice}"
        assert query("SELECT max(attempts) FROM jobs")[0][0] == 0  # nobody charged
        fetched = {name: self.mirror.requests(name) for name in self.names}
        assert set(fetched.values()) == {1}, fetched


def _done(server: PostgresServer, url: str) -> int:
    """Done jobs, read as the server's superuser (the run's own role may be locked out)."""
    dbname = url.rsplit("/", 1)[1]
    try:
        with _admin(server, dbname) as conn:
            row = conn.execute("SELECT count(*) FROM jobs WHERE stage = 'done'").fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return 0


@pytest.mark.timeout(120)
def test_a_postgres_restart_mid_run_is_waited_for(tmp_path: Path, own_pg: PostgresServer) -> None:
    """`pg_ctl stop -m immediate` a few papers in, started again 10 s later; the progress
    lines show what the run waits for. Before: the run ended at once, `crashed`
    ("ExceptionGroup: unhandled errors in a TaskGroup")."""
    url = _fresh_db(own_pg)
    with Papers(tmp_path, url) as papers:
        papers.start(progress=True)  # not a terminal: a progress line every 5 s
        wait_for(lambda: _done(own_pg, url) >= 3, 60, "3 papers done")
        own_pg.halt("immediate")
        wait_for(lambda: SAID_DOWN in papers.said(), 30, "the wait said")
        shown = "waiting for the queue database, unavailable since"
        wait_for(lambda: shown in papers.said(), 30, "the wait shown in the progress line")
        time.sleep(5)  # the outage lasts 10 s or more
        own_pg.restart()
        papers.finish()


def _take_every_slot(server: PostgresServer) -> list[psycopg.Connection[Any]]:
    """Connections on every slot of `server`, the superuser's reserved ones too."""
    held: list[psycopg.Connection[Any]] = []
    while True:
        try:
            held.append(_admin(server))
        except psycopg.OperationalError as exc:
            assert "too many" in str(exc) or "reserved" in str(exc), exc
            return held
        assert len(held) <= MAX_CONNECTIONS


@pytest.mark.timeout(120)
def test_no_free_slot_at_start_and_terminated_connections_mid_run_are_waited_for(
    tmp_path: Path, own_pg: PostgresServer
) -> None:
    """max_connections exhausted when the run starts (the test holds every slot for 4 s): the
    run waits, saying so. Then, mid-run, every rpa connection ended by `pg_terminate_backend`
    and no slot for it for 5 s (its role's limit set to 0: no race for the freed slots; the
    same "too many connections"). Before: exit 2 at start ("too many clients already"); mid-run
    the run crashed and papers failed as `internal`. A port where nothing listens still fails
    at once, in one line (a typo must not wait 30 minutes)."""
    role = f"r_{uuid.uuid4().hex[:8]}"
    url = _fresh_db(own_pg, owner=role)
    with Papers(tmp_path, url) as papers:
        held = _take_every_slot(own_pg)
        try:
            papers.start()
            wait_for(lambda: "the queue database is busy" in papers.said(), 30, "the wait said")
            time.sleep(4)
        finally:
            for conn in held:
                conn.close()
        wait_for(lambda: _done(own_pg, url) >= 3, 60, "3 papers done")
        with _admin(own_pg) as admin:
            admin.execute(f"ALTER ROLE {role} CONNECTION LIMIT 0")
            gone = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE usename = %s AND application_name = 'rpa'",
                (role,),
            ).fetchone()
            assert gone is not None and gone[0] >= 1
            wait_for(lambda: "too many connections" in papers.said(), 30, "the limit said")
            time.sleep(5)
            admin.execute(f"ALTER ROLE {role} CONNECTION LIMIT -1")
        papers.finish()
        with Mirror({}) as closed:
            nowhere = f"postgresql://postgres@127.0.0.1:{closed.port}/rpa"
        start = time.monotonic()
        typo = papers.cli.run("run", str(papers.ids), "--db", nowhere, "--no-progress")
        assert typo.returncode == 2 and "cannot connect to" in typo.stderr, typo.stderr
        assert "Traceback" not in typo.stderr and time.monotonic() - start < 20


def _client_backends(admin: psycopg.Connection[Any]) -> int:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.timeout(150)
def test_every_slot_but_one_taken_is_a_slower_run_not_an_outage_said_again_and_again(
    tmp_path: Path, own_pg: PostgresServer
) -> None:
    """Every connection slot the run's role may use is taken but one, from before the start
    until half the papers are done: the run's first connection has the one slot, and a second
    one's connect, when two calls overlap, is refused ("remaining connection slots are
    reserved") while the first goes on. That is the queue reachable, not an outage: at most
    one outage is said, and its end once (before: each refused connect said "unavailable
    since", the next call of the connected thread "back after 0 s", 62 times each in 30 s),
    and the calls wait for the connection there is instead of failing their connects and
    backing off (rpa.queue.pool: before, the 40 papers took 90 s)."""
    role = f"r_{uuid.uuid4().hex[:8]}"
    url = _fresh_db(own_pg, owner=role)
    with Papers(tmp_path, url, n=40, slow=0.2) as papers:
        held = [_admin(own_pg)]
        try:
            # a role that is no superuser has max_connections - 3 (the reserved) slots
            while _client_backends(held[0]) < MAX_CONNECTIONS - 3 - 1:
                held.append(_admin(own_pg))
            papers.start()
            wait_for(lambda: _done(own_pg, url) >= 20, 90, "half the papers done")
        finally:
            for conn in held:
                conn.close()
        assert papers.proc is not None
        assert papers.proc.wait(timeout=90) == 0, papers.said()[-3000:]
        said = papers.said()
        # (whether a second connection was tried, and refused, depends on whether two of the
        # run's calls overlapped while the slots were held: the half of the papers done then,
        # on the one slot there was, is what this tests)
        assert said.count(SAID_DOWN) <= 1 and said.count(SAID_BACK) <= 1, said[-3000:]
        papers.check_all_done_once()


@pytest.mark.timeout(120)
def test_a_table_lock_held_20s_by_another_session_is_waited_for(
    tmp_path: Path, own_pg: PostgresServer
) -> None:
    """Another session holds `LOCK TABLE jobs` (ACCESS EXCLUSIVE) for 20 s mid-run; rpa's
    lock_timeout (--db-lock-timeout 2) hits again and again, and each is waited out."""
    url = _fresh_db(own_pg)
    with Papers(tmp_path, url) as papers, _admin(own_pg, url.rsplit("/", 1)[1]) as locker:
        papers.start(db_lock_timeout=2)
        wait_for(lambda: _done(own_pg, url) >= 3, 60, "3 papers done")
        with locker.transaction():
            locker.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
            wait_for(lambda: "lock timeout" in papers.said(), 30, "the wait said")
            time.sleep(20 - 2)
        papers.finish()


@pytest.mark.timeout(120)
def test_sqlite_locked_past_its_busy_timeout_is_waited_for(tmp_path: Path) -> None:
    """Another writer holds SQLite's write lock (`BEGIN IMMEDIATE`) for 8 s, past rpa's busy
    timeout (--db-lock-timeout 1). Before: "database is locked" crashed the feeder."""
    with Papers(tmp_path, None) as papers:
        papers.start(db_lock_timeout=1)
        wait_for(lambda: papers.cli.count("stage = 'done'") >= 3, 60, "3 papers done")
        writer = sqlite3.connect(papers.cli.db, isolation_level=None, timeout=30)
        try:
            writer.execute("BEGIN IMMEDIATE")
            wait_for(lambda: "database is locked" in papers.said(), 30, "the wait said")
            time.sleep(8)
            writer.execute("ROLLBACK")
        finally:
            writer.close()
        papers.finish()


@pytest.mark.timeout(150)
def test_a_database_away_past_db_wait_interrupts_and_resume_finishes(
    tmp_path: Path, own_pg: PostgresServer
) -> None:
    """The server stays down past --db-wait 5: the run stops `interrupted` (exit 130), says
    why and that `rpa resume` continues, charges nobody; once the server is back, `rpa
    resume` finishes every paper, each done once."""
    url = _fresh_db(own_pg)
    with Papers(tmp_path, url) as papers:
        papers.start(db_wait=5)
        assert papers.proc is not None
        wait_for(lambda: _done(own_pg, url) >= 3, 60, "3 papers done")
        own_pg.halt("immediate")
        try:
            assert papers.proc.wait(timeout=60) == 130, papers.said()[-3000:]
        finally:
            own_pg.restart()
        said = papers.said()
        assert "Traceback" not in said and "crashed" not in said, said[-3000:]
        assert "stayed unavailable" in said and "--db-wait 5" in said
        assert "interrupted: `rpa resume" in said
        # the summary's queue line is the last totals read, moved on by what the run did
        # (it printed the start's "0 done" when the end could not be read)
        done_then = _done(own_pg, url)
        assert (
            f"queue: {done_then} done, 0 failed, {len(papers.names) - done_then} remaining" in said
        )
        resumed = papers.cli.run("resume", *papers.cli.knobs(progress=False), timeout=90)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "Traceback" not in resumed.stderr
        n = len(papers.names)
        query = papers.cli.query
        assert query("SELECT count(*) FROM jobs WHERE stage = 'done'")[0][0] == n
        assert query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM results")[0] == (n, n)
        assert query("SELECT count(*) FROM jobs WHERE stage = 'failed'")[0][0] == 0
        assert query("SELECT max(attempts) FROM jobs")[0][0] == 0  # nobody charged
        runs = query("SELECT status FROM runs ORDER BY started_at")
        assert runs[-1][0] == "finished"


def test_only_an_unavailable_database_is_waited_for_and_only_up_to_db_wait(
    tmp_path: Path,
) -> None:
    """AsyncQueue on a real SQLite file that another connection holds the write lock of:
    the call waits, says so, and after `wait` raises DatabaseStayedAway; an error that is
    not the database being unavailable (bad SQL: also sqlite3's OperationalError) is raised
    at once, as before; once the lock is gone the call gets through and the end is said."""
    db = tmp_path / "q.db"
    open_store(db).close()
    notices = Notices()

    async def scenario() -> None:
        queue = AsyncQueue(db, wait=1.0, lock_timeout=0.1, notices=notices)
        await queue.open(create=False)
        try:
            with pytest.raises(sqlite3.OperationalError, match="syntax error"):
                await queue.run(lambda store: store.sql.execute("SELEC 1"))
            assert not queue.outage.down
            writer = sqlite3.connect(db, isolation_level=None)
            writer.execute("BEGIN IMMEDIATE")
            start = time.monotonic()
            with pytest.raises(DatabaseStayedAway, match="stayed unavailable"):
                await queue.run(QueueStore.enqueue, ["2301.00001"], 0.0)
            assert time.monotonic() - start >= 1.0
            writer.execute("ROLLBACK")
            writer.close()
            assert await queue.run(QueueStore.enqueue, ["2301.00001"], 0.0) == 1
            assert not queue.outage.down
        finally:
            await queue.close()

    asyncio.run(scenario())
    said = notices.recent(10)
    assert any(SAID_DOWN in n and "database is locked" in n for n in said), said
    assert any(SAID_BACK in n for n in said), said


def test_a_database_condition_under_a_paper_never_charges_it() -> None:
    """What escapes to one paper's failure from the database (a connect that failed, a lost
    connection, a busy SQLite) is `QueueUnavailable`, given back uncounted; before, a
    DatabaseError from a thread's connect was `internal`, a permanent failure. A constraint
    refusing a change is still a bug of rpa's (`internal`). No mock: real exceptions."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id integer PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as refused:
        conn.execute("INSERT INTO t VALUES (1)")
    busy = DatabaseUnavailable("cannot connect: too many clients", reason="busy", reachable=True)
    job = Job("2301.00001", 1, "queued", attempts=4, crashes=0)
    for exc in (busy, DatabaseError("cannot use the queue"), sqlite3.OperationalError("locked")):
        error = classify(exc, "the download stage")
        assert error.kind == "database", exc
        verdict = judge(error, job, Settings(), stopping=False, now=0.0)
        assert verdict.action == "give_back", exc  # even on the paper's last attempt
    assert classify(refused.value).kind == "internal"
    assert database_outage(refused.value) is None
    assert database_outage(sqlite3.OperationalError("database is locked")) is not None

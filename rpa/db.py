"""The queue database: schema, migrations, and the one thread that talks to SQLite.

No SQLite call runs on the event-loop thread. `DbThread` owns a single connection in a single
dedicated thread; the loop sends it plain functions `fn(conn, *args)` and awaits the result.
One thread means one writer per process, so there is no lock contention inside a run; across
processes (a second `rpa run`, `rpa status`) SQLite's WAL mode and `busy_timeout` arbitrate.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from rpa.errors import DatabaseError
from rpa.gates import Gate

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["SCHEMA_VERSION", "DbThread", "connect", "transaction"]

P = ParamSpec("P")
T = TypeVar("T")

# Stages a job moves through; a job is claimable in any stage but the two final ones.
ACTIVE_STAGES = ("queued", "downloaded", "extracted")
FINAL_STAGES = ("done", "failed")


def _migration_1(db: Database) -> None:
    db.table("jobs").create(
        {
            "id": str,  # queue key: "2301.00001v2", "hep-th/9901001", "ext:slug"
            "seq": int,  # enqueue order: claims are FIFO
            "stage": str,  # queued | downloaded | extracted | done | failed
            "attempts": int,  # failed attempts so far (survives resume)
            "crashes": int,  # extraction processes this PDF killed (poison counting)
            "lease_owner": str,  # "<run_id>" while leased, NULL otherwise
            "lease_token": int,  # fence: bumped at every claim
            "lease_expires": float,
            "next_attempt_at": float,  # not claimable before this (retry backoff)
            "error_kind": str,
            "error_message": str,
            "pdf_path": str,
            "pdf_bytes": int,
            "pdf_sha256": str,
            "final_url": str,
            "http_status": int,
            "download_seconds": float,
            "text_path": str,
            "extract_json": str,  # the extraction worker's result, kept for the outcome stage
            "extract_seconds": float,
            "outcome_path": str,
            "created_at": float,
            "updated_at": float,
            "done_at": float,
        },
        pk="id",
        not_null={"seq", "stage", "attempts", "crashes", "lease_token", "next_attempt_at"},
        defaults={"attempts": 0, "crashes": 0, "lease_token": 0, "next_attempt_at": 0.0},
    )
    # Claim scans only claimable rows in FIFO order.
    db.execute(
        "CREATE INDEX jobs_claimable ON jobs(seq) "
        "WHERE lease_owner IS NULL AND stage IN ('queued', 'downloaded', 'extracted')"
    )
    db.execute("CREATE INDEX jobs_leased ON jobs(lease_owner) WHERE lease_owner IS NOT NULL")
    db.execute("CREATE INDEX jobs_stage ON jobs(stage, error_kind)")
    db.table("runs").create(
        {
            "id": str,
            "command": str,
            "pid": int,
            "host": str,
            "started_at": float,
            "heartbeat_at": float,
            "ended_at": float,
            "status": str,  # running | finished | interrupted | crashed
            "done": int,
            "failed": int,
            "settings_json": str,
        },
        pk="id",
        defaults={"done": 0, "failed": 0},
    )
    db.table("results").create(
        {
            "id": str,
            "run_id": str,
            "title": str,
            "pages": int,
            "words": int,
            "references": int,
            "arxiv_stamp": str,
            "sha256": str,
            "bytes": int,
            "outcome_json": str,
            "created_at": float,
        },
        pk="id",
    )
    db.table("attempts").create(
        {
            "job_id": str,
            "run_id": str,
            "stage": str,  # download | extract | outcome
            "started_at": float,
            "gate_wait": float,  # seconds queued before the stage's gate
            "duration": float,
            "outcome": str,  # ok | retry | failed | lost
            "error_kind": str,
        },
    )
    db.execute("CREATE INDEX attempts_time ON attempts(started_at)")
    db.table("hosts").create(
        {
            "host": str,
            "cooldown_until": float,  # Retry-After from 429/503: nobody asks before this
            "breaker_open": int,  # 1 after a 403 / denial page
            "reason": str,
            "updated_at": float,
        },
        pk="host",
    )


def _migration_2(db: Database) -> None:
    # The end-of-run summary reads a run's attempts; status counts retry-scheduled jobs.
    db.execute("CREATE INDEX attempts_run ON attempts(run_id, stage)")
    db.execute(
        "CREATE INDEX jobs_retry ON jobs(next_attempt_at) "
        "WHERE lease_owner IS NULL AND stage IN ('queued', 'downloaded', 'extracted')"
    )


def _migration_3(db: Database) -> None:
    # Enqueueing a million IDs spent most of its time maintaining indexes that every new row
    # entered. Now a new row enters only the primary key and `jobs_claimable`; what status
    # needs comes from partial indexes that hold only the rows they are about, and from
    # per-stage counts kept by triggers in the same transaction as the change (so they are
    # exact, never a cache).
    db.execute("DROP INDEX jobs_stage")
    db.execute("DROP INDEX jobs_retry")
    # Only jobs that were ever given a retry time (new jobs have next_attempt_at = 0).
    db.execute(
        "CREATE INDEX jobs_retry ON jobs(next_attempt_at) WHERE next_attempt_at > 0 "
        "AND lease_owner IS NULL AND stage IN ('queued', 'downloaded', 'extracted')"
    )
    db.execute("CREATE INDEX jobs_failed ON jobs(error_kind) WHERE stage = 'failed'")
    db.execute("CREATE INDEX jobs_done ON jobs(done_at) WHERE stage = 'done'")
    # One row per stage, made here: the triggers only update (an upsert per new row cost
    # a third more enqueue time), and no code writes a stage outside these five.
    db.execute(
        "CREATE TABLE stage_counts (stage TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute(
        "INSERT INTO stage_counts (stage, n) SELECT s.column1, (SELECT count(*) FROM jobs "
        "WHERE jobs.stage = s.column1) FROM (VALUES ('queued'), ('downloaded'), ('extracted'), "
        "('done'), ('failed')) AS s"
    )
    db.execute(
        "CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN "
        "UPDATE stage_counts SET n = n + 1 WHERE stage = NEW.stage; END"
    )
    db.execute(
        "CREATE TRIGGER jobs_count_update AFTER UPDATE OF stage ON jobs "
        "WHEN OLD.stage IS NOT NEW.stage BEGIN "
        "UPDATE stage_counts SET n = n - 1 WHERE stage = OLD.stage; "
        "UPDATE stage_counts SET n = n + 1 WHERE stage = NEW.stage; END"
    )
    db.execute(
        "CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN "
        "UPDATE stage_counts SET n = n - 1 WHERE stage = OLD.stage; END"
    )
    # Claims are FIFO by seq; from now on a new job's seq is its rowid (see jobs.enqueue).
    # Both grew in insertion order before, so this keeps every job's place in the line.
    db.execute("UPDATE jobs SET seq = rowid WHERE seq != rowid")


def _migration_4(db: Database) -> None:
    # A new job is counted by `jobs.enqueue`, one UPDATE per batch in the transaction that
    # inserts it: the trigger's UPDATE per row was about an eighth of enqueueing 1 M IDs.
    db.execute("DROP TRIGGER jobs_count_insert")


MIGRATIONS: list[Callable[[Database], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
]
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the queue database (WAL, busy timeout) and bring its schema up to date.

    `readonly` opens without creating or migrating anything (for `rpa status`). Two processes
    creating one database at the same moment can get SQLITE_BUSY from the switch to WAL, which
    SQLite does not retry through the busy handler: opening is tried again a few times.
    Never called on the event loop (before it starts, or in the database thread).
    """
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return _connect(path, readonly=readonly)
        except _Busy:
            time.sleep(0.05 * 2**attempt)
    return _connect(path, readonly=readonly, last_try=True)


class _Busy(Exception):
    """Internal: the database was locked while being set up."""


#: tries to open a database that another process is setting up at the same moment
OPEN_ATTEMPTS = 6


def _connect(path: Path, *, readonly: bool, last_try: bool = False) -> sqlite3.Connection:
    conn: sqlite3.Connection | None = None
    try:
        if readonly:
            if not path.exists():
                raise DatabaseError(f"no queue database at {path}")
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        conn.isolation_level = None  # autocommit: transactions are explicit (transaction())
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable across process crashes in WAL mode (only power loss can lose
            # the last commits), and it keeps commits off fsync.
            conn.execute("PRAGMA synchronous = NORMAL")
            # 64 MiB of page cache (default 2 MiB): with a million jobs the indexes no longer
            # fit the default, and enqueueing spent most of its time re-reading index pages.
            conn.execute("PRAGMA cache_size = -65536")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{path} has schema version {version}; this rpa knows up to {SCHEMA_VERSION}"
            )
        if readonly:
            if version == 0:
                raise DatabaseError(f"{path} is not an rpa queue (schema {version})")
            if version < SCHEMA_VERSION:
                raise DatabaseError(
                    f"{path} was made by an older rpa (schema {version} of {SCHEMA_VERSION}); "
                    "`rpa migrate` upgrades it (so does the next `rpa run` or `rpa resume`)"
                )
            return conn
        from sqlite_utils import Database  # only for migrations: keeps `rpa status` quick

        db = Database(conn)
        for number, migrate in enumerate(MIGRATIONS, start=1):
            if number > version:
                with transaction(conn):
                    # Read again under the write lock: another process creating the same
                    # database at the same moment may have just applied this migration.
                    if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                        continue
                    migrate(db)
                    conn.execute(f"PRAGMA user_version = {number}")
        return conn
    except sqlite3.OperationalError as exc:
        if conn is not None:
            conn.close()
        if "locked" in str(exc) and not last_try:
            raise _Busy() from None
        raise DatabaseError(f"cannot open {path}: {exc}") from None
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open {path}: {exc}") from None


def upgrade(path: Path) -> tuple[int, int]:
    """Bring an existing queue database to this rpa's schema, and nothing else (`rpa
    migrate`). Returns (schema version before, version now)."""
    if not path.exists():
        raise DatabaseError(f"no queue database at {path}")
    try:
        probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            before = int(probe.execute("PRAGMA user_version").fetchone()[0])
        finally:
            probe.close()
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open {path}: {exc}") from None
    if before == 0:
        raise DatabaseError(f"{path} is not an rpa queue (schema 0)")
    connect(path).close()  # applies the migrations, each in its own transaction
    return before, SCHEMA_VERSION


@contextmanager
def transaction(conn: sqlite3.Connection) -> Any:
    """BEGIN IMMEDIATE ... COMMIT: take the write lock up front, so a claim cannot interleave."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class DbThread:
    """The one place SQLite is called from during a run: a single thread owning the connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rpa-db")
        self._conn: sqlite3.Connection | None = None
        #: the thread as a gate of one: the calls waiting for it, and how long they wait
        #: (a long wait here says the run is bound by SQLite)
        self.gate = Gate("database", 1)
        #: seconds the thread spent inside calls (the benchmark reports it)
        self.busy_seconds = 0.0

    async def open(self) -> None:
        self._conn = await self._submit(connect, self.path)

    async def _submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(conn, *args, **kwargs)` in the database thread and return its result."""
        conn = self._conn
        if conn is None:
            raise DatabaseError("database is not open")

        def call() -> T:
            start = time.perf_counter()
            try:
                return fn(conn, *args, **kwargs)
            finally:
                self.busy_seconds += time.perf_counter() - start

        loop = asyncio.get_running_loop()
        async with self.gate:
            return await loop.run_in_executor(self._executor, call)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=False)

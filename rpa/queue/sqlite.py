"""The SQLite backend: the embedded default, nothing to install.

One file in WAL mode. Within a process one thread owns the connection (rpa.queue.aio), so
there is no lock contention inside a run; across processes (a second `rpa run`, `rpa status`)
SQLite's WAL and `busy_timeout` arbitrate. Claims take the write lock up front
(`BEGIN IMMEDIATE`), so two claimers never see the same free job.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from rpa.errors import DatabaseError, DatabaseUnavailable
from rpa.hints import command_hint
from rpa.queue.clock import now_of
from rpa.queue.runs import found_dead
from rpa.queue.sql import Params, Row
from rpa.queue.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SqliteBackend", "SqliteSql", "connect", "schema_version"]

#: tries to open a database that another process is setting up at the same moment
OPEN_ATTEMPTS = 6
_HEADER = b"SQLite format 3\x00"


@contextlib.contextmanager
def _damage_said(path: object) -> Iterator[None]:
    """A damaged file (pages SQLite cannot read) is rpa's DatabaseError, said plainly; the
    errors of a working database (locked, a constraint) stay what they are."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:
            raise
        raise DatabaseError(
            f"{path} is damaged ({exc}): restore it from a copy, or try `sqlite3 {path} .recover`"
        ) from None


class SqliteSql:
    """`rpa.queue.sql.Sql` over one sqlite3 connection."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, path: object = "the queue database") -> None:
        self.conn = conn
        self.path = path

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        with _damage_said(self.path):
            return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Params = ()) -> Row | None:
        with _damage_said(self.path):
            row: Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def execute(self, sql: str, params: Params = ()) -> int:
        with _damage_said(self.path):
            return self.conn.execute(sql, params).rowcount

    def executemany(self, sql: str, seq: Iterable[Params]) -> int:
        with _damage_said(self.path):
            return self.conn.executemany(sql, seq).rowcount

    @contextlib.contextmanager
    def _within(self, begin: str) -> Iterator[None]:
        with _damage_said(self.path):
            self.conn.execute(begin)
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # the error in hand is the one to tell
                self.conn.execute("ROLLBACK")
            raise
        with _damage_said(self.path):
            self.conn.execute("COMMIT")

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        # IMMEDIATE: take the write lock up front, so a claim cannot interleave with another.
        return self._within("BEGIN IMMEDIATE")

    def read_transaction(self) -> contextlib.AbstractContextManager[None]:
        return self._within("BEGIN")

    def close(self) -> None:
        self.conn.close()


class SqliteBackend:
    """The SQLite-specific statements: enqueue and claim."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.sql = SqliteSql(conn, path)
        self.location = str(path)
        self._conn = conn

    def enqueue(self, keys: Sequence[str], now: float) -> int:
        with self.sql.transaction(), _damage_said(self.location):
            cur = self._conn.executemany(
                # seq = the rowid SQLite gives the new row (one past the largest), found in
                # O(log n); a skipped duplicate takes no number. rowcount counts inserts.
                "INSERT OR IGNORE INTO jobs (id, seq, stage, created_at, updated_at) "
                "VALUES (?, coalesce((SELECT max(rowid) FROM jobs), 0) + 1, 'queued', ?, ?)",
                ((key, now, now) for key in keys),
            )
            new = cur.rowcount
            # Counted here, once a batch, not by a trigger per row (schema 4); the other
            # stage changes are counted by triggers. Same transaction: never off.
            self._conn.execute("UPDATE stage_counts SET n = n + ? WHERE stage = 'queued'", (new,))
        return new

    def claim(
        self, run_id: str, limit: int, lease: float, now: float | None, stages: Sequence[str]
    ) -> list[Row]:
        marks = ", ".join("?" * len(stages))
        with self.sql.transaction():
            now = now_of(self.sql, now)  # the database's clock, read under the write lock
            if found_dead(self.sql, run_id):
                return []
            return self.sql.rows(
                "UPDATE jobs SET lease_owner = ?, lease_token = lease_token + 1, "
                "lease_expires = ?, updated_at = ? "
                "WHERE id IN (SELECT id FROM jobs WHERE lease_owner IS NULL "
                # the first IN repeats the partial index's condition so SQLite uses it
                "  AND stage IN ('queued', 'downloaded', 'extracted') "
                f"  AND stage IN ({marks}) AND next_attempt_at <= ? ORDER BY seq LIMIT ?) "
                "RETURNING seq, id, lease_token, stage, attempts, crashes, pdf_path, pdf_bytes, "
                "pdf_sha256, extract_json, download_seconds, extract_seconds, final_url, "
                "http_status, error_kind",
                (run_id, now + lease, now, *stages, now, limit),
            )


def _check_header(path: Path) -> None:
    """A file that exists but is no SQLite database: say so before SQLite says it obscurely."""
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DatabaseError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head and head != _HEADER:
        raise DatabaseError(f"{path} is not an SQLite database (not made by rpa, or damaged)")


def _check_writable(path: Path) -> None:
    """rpa writes the database and, beside it, SQLite's WAL and shared-memory files."""
    for target in (path, path.parent):
        if target.exists() and not os.access(target, os.W_OK):
            raise DatabaseError(
                f"{path}: {'it' if target == path else 'its folder'} is read-only, and rpa "
                "writes the queue (and SQLite's -wal and -shm files beside it)"
            )


def schema_version(path: Path) -> int:
    """The schema version of an existing database, read without changing anything."""
    if not path.exists():
        raise DatabaseError(f"no queue database at {path}")
    _check_header(path)
    try:
        probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return int(probe.execute("PRAGMA user_version").fetchone()[0])
        finally:
            probe.close()
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open {path}: {exc}") from None


def connect(
    path: Path, *, readonly: bool = False, create: bool = True, busy_timeout: float = 30.0
) -> sqlite3.Connection:
    """Open the queue database (WAL, busy timeout) and bring its schema up to date.

    `readonly` opens without creating or migrating anything (for `rpa status`); `create=False`
    refuses a database that does not exist yet (for `rpa resume`). Two processes creating one
    database at once can get SQLITE_BUSY from the switch to WAL, which SQLite does not retry
    through the busy handler: opening is tried again a few times. Never called on the event
    loop (before it starts, or in the database thread). `busy_timeout`: seconds a statement
    waits for another process's lock before "database is locked" (which rpa.queue.aio waits
    out and tries again).
    """
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return _connect(path, readonly=readonly, create=create, busy=busy_timeout)
        except _Busy:
            time.sleep(0.05 * 2**attempt)
    return _connect(path, readonly=readonly, create=create, busy=busy_timeout, last_try=True)


class _Busy(Exception):
    """Internal: the database was locked while being set up."""


def _connect(
    path: Path, *, readonly: bool, create: bool, busy: float, last_try: bool = False
) -> sqlite3.Connection:
    if (readonly or not create) and not path.exists():
        raise DatabaseError(f"no queue database at {path}")
    if path.is_dir():
        raise DatabaseError(f"{path} is a directory, not a queue database")
    _check_header(path)
    conn: sqlite3.Connection | None = None
    try:
        if readonly:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=busy, check_same_thread=False
            )
        else:
            if not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
            _check_writable(path)
            conn = sqlite3.connect(path, timeout=busy, check_same_thread=False)
        conn.isolation_level = None  # autocommit: transactions are explicit
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {max(1, round(busy * 1000))}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{path} was made by a newer rpa (schema {version}; this rpa knows up to "
                f"{SCHEMA_VERSION}): upgrade rpa to use it"
            )
        if readonly:
            if version == 0:
                raise DatabaseError(f"{path} is not an rpa queue (schema {version})")
            if version < SCHEMA_VERSION:
                raise DatabaseError(
                    f"{path} was made by an older rpa (schema {version} of {SCHEMA_VERSION}); "
                    f"`{command_hint('migrate')}` upgrades it (so does the next run or resume)"
                )
            return conn
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise DatabaseError(f"{path} is an SQLite database, but not an rpa queue")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk when it returns, so a power cut loses no transaction
        # (NORMAL, durable only across process crashes, lost the last ones: those papers
        # were done again). Its cost, an fdatasync of the WAL per commit in the database
        # thread: ~1.1 a paper with completions batched; 320 real papers (pdfium) made 349
        # of ~0.18 ms each on a virtio disk, beside the 250 syncfs of --out they make anyway.
        conn.execute("PRAGMA synchronous = FULL")
        # 64 MiB of page cache (default 2 MiB): with a million jobs the indexes no longer
        # fit the default, and enqueueing spent most of its time re-reading index pages.
        conn.execute("PRAGMA cache_size = -65536")
        _migrate(conn, version)
        return conn
    except sqlite3.OperationalError as exc:
        if conn is not None:
            conn.close()
        if "locked" in str(exc) and not last_try:
            raise _Busy() from None
        if "locked" in str(exc):  # another process holds the write lock: worth waiting for
            raise DatabaseUnavailable(
                f"cannot open {path}: {exc}", reason=f"SQLite: {exc}", reachable=True
            ) from None
        raise DatabaseError(f"cannot open {path}: {_reason(exc)}") from None
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise DatabaseError(f"cannot open {path}: {_reason(exc)}") from None
    except DatabaseError:
        if conn is not None:
            conn.close()
        raise


def _reason(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return f"{text} (the file or its folder is read-only)"
    if "unable to open" in text:
        return f"{text} (does the folder exist, and may rpa write there?)"
    return text


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    from sqlite_utils import Database  # only for migrations: keeps `rpa status` quick

    db = Database(conn)
    sql = SqliteSql(conn)
    for number, migration in enumerate(MIGRATIONS, start=1):
        if number <= version:
            continue
        with sql.transaction():
            # Read again under the write lock: another process creating the same database
            # at the same moment may have just applied this migration.
            if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                continue
            migration(db)
            conn.execute(f"PRAGMA user_version = {number}")

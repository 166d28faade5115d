"""The PostgreSQL backend: one queue for many processes on many hosts (`rpa[postgres]`).

`--db postgresql://user@host:5432/dbname` (or `postgres://`; libpq's conventions: the password
from the URL, `PGPASSWORD` or `~/.pgpass`). Claims take their rows with `FOR UPDATE SKIP
LOCKED`, the way procrastinate, pgqueuer, Oban, River and Solid Queue do, so any number of
claimers never wait for each other and never take the same job; every later write is fenced by
the lease token, as with SQLite. psycopg 3 is the driver, one connection per database thread
(rpa.queue.aio): the event loop never runs driver code, and the SQL of the queue's operations
(rpa.queue.jobs, runs, ...) is the one both backends share.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from rpa.errors import DatabaseError, DatabaseUnavailable
from rpa.hints import command_hint
from rpa.queue.clock import now_of
from rpa.queue.outage import database_outage, pg_busy
from rpa.queue.postgres_schema import MIGRATIONS, SCHEMA_VERSION, SHARDS
from rpa.queue.runs import found_dead
from rpa.queue.sql import Params, Row

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "SCHEMA_VERSION",
    "PgSql",
    "PostgresBackend",
    "connect",
    "open_backend",
    "redact_url",
    "schema_version",
]

#: an advisory lock key: migrations of one database run one at a time, across hosts
_MIGRATE_LOCK = 0x7270_6100  # "rpa\0"
#: seconds to wait for a connection before saying the server cannot be reached
CONNECT_TIMEOUT = 10
#: TCP keepalives (libpq's parameters): a peer that vanished without a word (a host down, a
#: NAT that forgot us) is found dead after ~30 + 3 x 10 s instead of the kernel's 2 hours, and
#: the call waiting on it fails as an outage (rpa.queue.aio then reconnects)
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}  # fmt: skip
#: the longest one statement may run, seconds: rpa's statements take milliseconds; one stuck
#: behind something else is cancelled (57014) and tried again by rpa.queue.aio
STATEMENT_TIMEOUT = 300
#: the default longest wait for a lock, seconds (--db-lock-timeout): then 55P03, tried again
LOCK_TIMEOUT = 30.0


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***` (for messages, status, logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (and a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise DatabaseError(
            "a postgresql:// --db needs the postgres extra: pip install 'rpa[postgres]' "
            "(./run.sh installs it)"
        ) from None
    return psycopg


class PgSql:
    """`rpa.queue.sql.Sql` over one psycopg connection (autocommit; explicit transactions)."""

    dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Any], location: str) -> None:
        self.conn = conn
        self.location = location

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        rows: list[Row] = self.conn.execute(_pg(sql), tuple(params)).fetchall()
        return rows

    def one(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self.conn.execute(_pg(sql), tuple(params)).fetchone()
        return row

    def execute(self, sql: str, params: Params = ()) -> int:
        return self.conn.execute(_pg(sql), tuple(params)).rowcount

    def executemany(self, sql: str, seq: Iterable[Params]) -> int:
        with self.conn.cursor() as cur:
            cur.executemany(_pg(sql), [tuple(p) for p in seq])
            return cur.rowcount

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    @contextlib.contextmanager
    def read_transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield

    def close(self) -> None:
        self.conn.close()


class PostgresBackend:
    """The PostgreSQL-specific statements: enqueue (COPY) and claim (SKIP LOCKED)."""

    def __init__(self, conn: psycopg.Connection[Any], url: str) -> None:
        self._location = redact_url(url)
        self._sql = PgSql(conn, self._location)
        self._conn = conn

    @property
    def sql(self) -> PgSql:
        return self._sql

    @property
    def location(self) -> str:
        return self._location

    def enqueue(self, keys: Sequence[str], now: float) -> int:
        """COPY the batch into a temporary table, then insert what is new in its order (the
        sequence gives FIFO claims); duplicates, queued before or repeated, are skipped."""
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("CREATE TEMPORARY TABLE rpa_incoming (ord bigint, id text) ON COMMIT DROP")
            with cur.copy("COPY rpa_incoming (ord, id) FROM STDIN") as copy:
                for i, key in enumerate(keys):
                    copy.write_row((i, key))
            cur.execute(
                "INSERT INTO jobs (id, stage, created_at, updated_at) "
                "SELECT id, 'queued', %s, %s FROM rpa_incoming ORDER BY ord "
                "ON CONFLICT (id) DO NOTHING",
                (now, now),
            )
            new = cur.rowcount
            cur.execute(
                "UPDATE stage_counts SET n = n + %s WHERE stage = 'queued' "
                f"AND shard = mod(pg_backend_pid(), {SHARDS})",
                (new,),
            )
        return new

    def claim(
        self, run_id: str, limit: int, lease: float, now: float | None, stages: Sequence[str]
    ) -> list[Row]:
        with self._conn.transaction():
            now = now_of(self.sql, now)  # the server's clock
            if found_dead(self.sql, run_id):
                return []
            rows: list[Row] = self._conn.execute(
                "UPDATE jobs SET lease_owner = %s, lease_token = lease_token + 1, "
                "lease_expires = %s, updated_at = %s "
                "WHERE id IN (SELECT id FROM jobs WHERE lease_owner IS NULL "
                "  AND stage IN ('queued', 'downloaded', 'extracted') "
                "  AND stage = ANY(%s) AND next_attempt_at <= %s ORDER BY seq LIMIT %s "
                "  FOR UPDATE SKIP LOCKED) "
                "RETURNING seq, id, lease_token, stage, attempts, crashes, pdf_path, pdf_bytes, "
                "pdf_sha256, extract_json, download_seconds, extract_seconds, final_url, "
                "http_status, error_kind",
                (run_id, now + lease, now, list(stages), now, limit),
            ).fetchall()
        return rows


def connect(url: str, *, lock_timeout: float = LOCK_TIMEOUT) -> psycopg.Connection[Any]:
    """A connection to the queue's server (autocommit, rows as dicts, keepalives, statement
    and lock timeouts). Blocking. Raises DatabaseUnavailable when the server is busy or
    starting (`reachable`) or nothing answers, DatabaseError when it refuses us for good (who
    we are, no such database)."""
    driver = _driver()
    from psycopg.rows import dict_row

    options = f"-c statement_timeout={STATEMENT_TIMEOUT * 1000} "
    options += f"-c lock_timeout={max(1, round(lock_timeout * 1000))}"
    try:
        conn: psycopg.Connection[Any] = driver.connect(
            url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT,
            application_name="rpa", options=options, **KEEPALIVES,
        )  # fmt: skip
    except driver.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        message = f"cannot connect to {redact_url(url)}: {reason}"
        if pg_busy(exc):
            raise DatabaseUnavailable(message, reason=reason, reachable=True) from None
        if _nothing_there(exc):
            raise DatabaseUnavailable(message, reason=reason, reachable=False) from None
        raise DatabaseError(message) from None
    return conn


def _nothing_there(exc: Exception) -> bool:
    """No server answered (refused, no route, a timeout), as opposed to one that refused who
    we are or knows no such database (class 28, 3D000: never worth waiting for)."""
    if getattr(exc, "sqlstate", None) is not None:
        return False
    text = str(exc).lower()
    refusals = ("password", "authentication", "does not exist", "role ", "permission", "ssl")
    return not any(word in text for word in refusals)


def _version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT to_regclass('rpa_meta') IS NOT NULL AS present").fetchone()
    if not row or not row["present"]:
        return 0
    found = conn.execute("SELECT value FROM rpa_meta WHERE key = 'schema'").fetchone()
    return int(found["value"]) if found else 0


def schema_version(url: str) -> tuple[int, int]:
    """(the schema version of the queue at `url`, the one this rpa makes)."""
    conn = connect(url)
    try:
        return _version(conn), SCHEMA_VERSION
    finally:
        conn.close()


def _migrate(conn: psycopg.Connection[Any]) -> None:
    for number, statements in sorted(MIGRATIONS.items()):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            if _version(conn) >= number:  # another process applied it meanwhile
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO rpa_meta (key, value) VALUES ('schema', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(number),),
            )


def open_backend(
    url: str, *, readonly: bool, create: bool, lock_timeout: float = LOCK_TIMEOUT
) -> PostgresBackend:
    """Connect; check the schema (and migrate it, unless `readonly`). Blocking."""
    driver = _driver()
    where = redact_url(url)
    conn = connect(url, lock_timeout=lock_timeout)
    try:
        version = _version(conn)
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{where} was made by a newer rpa (schema {version}; this rpa knows up to "
                f"{SCHEMA_VERSION}): upgrade rpa to use it"
            )
        if version == 0 and (readonly or not create):
            raise DatabaseError(
                f"no rpa queue in {where}; start one with `{command_hint('run IDS')}`"
            )
        if readonly and version < SCHEMA_VERSION:
            raise DatabaseError(
                f"{where} was made by an older rpa (schema {version} of {SCHEMA_VERSION}); "
                f"`{command_hint('migrate')}` upgrades it (so does the next run or resume)"
            )
        if not readonly:
            _migrate(conn)
    except driver.Error as exc:
        conn.close()
        message = f"cannot use {where}: {str(exc).strip() or type(exc).__name__}"
        outage = database_outage(exc)
        if outage is not None:  # the server went away (or was busy) while we set up
            raise DatabaseUnavailable(message, reason=outage, reachable=True) from None
        raise DatabaseError(message) from None
    except BaseException:
        conn.close()
        raise
    return PostgresBackend(conn, url)

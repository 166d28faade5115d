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

from rpa.errors import DatabaseError
from rpa.queue.clock import now_of
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
                "http_status",
                (run_id, now + lease, now, list(stages), now, limit),
            ).fetchall()
        return rows


def connect(url: str) -> psycopg.Connection[Any]:
    """A connection to the queue's server (autocommit, rows as dicts). Blocking."""
    driver = _driver()
    from psycopg.rows import dict_row

    try:
        conn: psycopg.Connection[Any] = driver.connect(
            url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT,
            application_name="rpa",
        )  # fmt: skip
    except driver.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(f"cannot connect to {redact_url(url)}: {reason}") from None
    return conn


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


def open_backend(url: str, *, readonly: bool, create: bool) -> PostgresBackend:
    """Connect; check the schema (and migrate it, unless `readonly`). Blocking."""
    driver = _driver()
    where = redact_url(url)
    conn = connect(url)
    try:
        version = _version(conn)
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{where} was made by a newer rpa (schema {version}; this rpa knows up to "
                f"{SCHEMA_VERSION}): upgrade rpa to use it"
            )
        if version == 0 and (readonly or not create):
            raise DatabaseError(f"no rpa queue in {where}; start one with `rpa run IDS`")
        if readonly and version < SCHEMA_VERSION:
            raise DatabaseError(
                f"{where} was made by an older rpa (schema {version} of {SCHEMA_VERSION}); "
                "`rpa migrate` upgrades it (so does the next `rpa run` or `rpa resume`)"
            )
        if not readonly:
            _migrate(conn)
    except driver.Error as exc:
        conn.close()
        raise DatabaseError(
            f"cannot use {where}: {str(exc).strip() or type(exc).__name__}"
        ) from None
    except BaseException:
        conn.close()
        raise
    return PostgresBackend(conn, url)

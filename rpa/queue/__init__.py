"""The durable job queue of a run, on SQLite or PostgreSQL: what is to do, who holds it,
what came of it.

    open_store("rpa.db")                            SQLite (the embedded default)
    open_store("postgresql://rpa@db.lab:5432/rpa")  PostgreSQL (rpa[postgres])

This package exports `open_store` (a `QueueStore`: one open queue), `QueueStore`,
`schema_version`, `queue_exists`, `is_queue_file`, `is_postgres_url` and `redact`. What is done
with a store is in one module per concern, plain functions whose first parameter is the store:

    rpa.queue.jobs      jobs and their leases, fenced by the lease token
    rpa.queue.runs      runs, heartbeats, dead runs, reclaiming their leases
    rpa.queue.hosts     hosts' cooldowns and breakers, the shared rate slots
    rpa.queue.catalog   the tar index, metadata, the queue's settings, job ids
    rpa.queue.reads     totals, `rpa status`, stage timings, pages of results
    rpa.queue.enqueue   an ID file into the queue, streamed and batched

A store is synchronous and belongs to one thread; `AsyncQueue` (rpa.queue.aio) runs those
functions off the event loop for a run: `await queue.run(jobs.claim, run_id, ...)`. The
typed values in and out are rpa.queue.model's. The backends (rpa.queue.sqlite, .postgres and
their schema modules) are chosen by `open_store`; nothing above this package knows which
backend it talks to.
"""

from __future__ import annotations

from pathlib import Path

from rpa.queue.store import QueueStore

__all__ = [
    "QueueStore", "is_postgres_url", "is_queue_file", "open_store", "queue_exists", "redact",
    "schema_version",
]  # fmt: skip

_PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(db: str | Path) -> bool:
    return isinstance(db, str) and db.startswith(_PG_SCHEMES)


def redact(db: str | Path) -> str:
    """`db` for messages: a PostgreSQL URL without its password."""
    if not is_postgres_url(db):
        return str(db)
    from rpa.queue.postgres import redact_url

    return redact_url(str(db))


def open_store(
    db: str | Path, *, readonly: bool = False, create: bool = True, lock_timeout: float = 30.0
) -> QueueStore:
    """Open the queue at `db` (a SQLite path or a PostgreSQL URL), migrating it to this rpa's
    schema unless `readonly`; `create=False` refuses a queue that does not exist yet.
    `lock_timeout`: the longest a statement waits for a lock (SQLite's busy timeout,
    PostgreSQL's lock_timeout), seconds. Blocking: never call it on the event loop. Raises
    rpa.errors.DatabaseError (DatabaseUnavailable when the database is there but busy, or
    nothing answers)."""
    if is_postgres_url(db):
        from rpa.queue.postgres import open_backend

        return QueueStore(
            open_backend(str(db), readonly=readonly, create=create, lock_timeout=lock_timeout)
        )
    from rpa.queue.sqlite import SqliteBackend, connect

    path = Path(db)
    conn = connect(path, readonly=readonly, create=create, busy_timeout=lock_timeout)
    return QueueStore(SqliteBackend(conn, path))


def queue_exists(db: str | Path) -> bool:
    """Is there a queue at `db` (a file; in PostgreSQL, rpa's tables)? Blocking."""
    if is_postgres_url(db):
        return schema_version(db)[0] > 0
    return Path(db).exists()


def is_queue_file(path: str | Path, db: str | Path) -> bool:
    """Is `path` the queue database `db`'s file, or one SQLite keeps beside it (-wal, -shm,
    -journal)? A file that rpa would write (an export, --metrics-file) must never be one."""
    if is_postgres_url(db):
        return False
    target = Path(path).expanduser()
    for suffix in ("", "-wal", "-shm", "-journal"):
        own = Path(f"{Path(db).expanduser()}{suffix}")
        try:
            if target.resolve() == own.resolve() or (
                target.exists() and own.exists() and target.samefile(own)
            ):
                return True
        except OSError:  # unreadable: the write names it
            continue
    return False


def schema_version(db: str | Path) -> tuple[int, int]:
    """(the schema version of the queue at `db`, the one this rpa makes)."""
    if is_postgres_url(db):
        from rpa.queue.postgres import schema_version as pg_version

        return pg_version(str(db))
    from rpa.queue.sqlite import SCHEMA_VERSION
    from rpa.queue.sqlite import schema_version as sqlite_version

    return sqlite_version(Path(db)), SCHEMA_VERSION

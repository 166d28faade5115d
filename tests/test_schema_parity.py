"""The two schemas agree: a fresh SQLite queue and a fresh PostgreSQL queue have the same
tables, the same columns in each, the same secondary indexes and the same schema version.

The schema is written twice (rpa.queue.sqlite_schema, rpa.queue.postgres_schema) and the
queue's SQL once, for both: a column added to one schema only would work on one backend and
fail on the other at the first statement that names it. The differences that are meant are
listed below, each with its reason; anything else fails here.
"""

from __future__ import annotations

from collections.abc import Callable

from rpa.queue import QueueStore, open_store
from rpa.queue.postgres_schema import SCHEMA_VERSION as PG_VERSION
from rpa.queue.sqlite_schema import SCHEMA_VERSION as SQLITE_VERSION

#: tables only PostgreSQL has: `rpa_meta` holds its schema version (SQLite keeps it in
#: `PRAGMA user_version`, outside any table)
PG_ONLY_TABLES = {"rpa_meta"}
#: (table, column) only PostgreSQL has: its per-stage counters are spread over SHARDS rows a
#: stage (one per server process), so concurrent writers do not queue up behind one counter
#: row; SQLite has one writer at a time and one row a stage
PG_ONLY_COLUMNS = {("stage_counts", "shard")}

Schema = dict[str, set[str]]


def _sqlite_schema(store: QueueStore) -> tuple[Schema, set[str]]:
    tables = [
        r["name"]
        for r in store.sql.rows(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    columns = {t: {r["name"] for r in store.sql.rows(f'PRAGMA table_info("{t}")')} for t in tables}
    # sqlite_autoindex_* are the primary keys' (PostgreSQL's *_pkey, left out below)
    indexes = {
        r["name"]
        for r in store.sql.rows(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'"
        )
    }
    return columns, indexes


def _postgres_schema(store: QueueStore) -> tuple[Schema, set[str]]:
    columns: Schema = {}
    for r in store.sql.rows(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c "
        "JOIN information_schema.tables t ON t.table_schema = c.table_schema "
        "AND t.table_name = c.table_name "
        "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
    ):
        columns.setdefault(r["table_name"], set()).add(r["column_name"])
    indexes = {
        r["name"]
        for r in store.sql.rows(
            "SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND NOT i.indisprimary"
        )
    }
    return columns, indexes


Reader = Callable[[QueueStore], tuple[Schema, set[str]]]


def _read(location: str, reader: Reader) -> tuple[Schema, set[str]]:
    store = open_store(location)  # creates the queue at this rpa's schema
    try:
        return reader(store)
    finally:
        store.close()


def test_sqlite_and_postgres_schemas_agree(
    sqlite_db: Callable[[], str], postgres_db: Callable[[], str]
) -> None:
    assert SQLITE_VERSION == PG_VERSION
    lite, lite_indexes = _read(sqlite_db(), _sqlite_schema)
    pg, pg_indexes = _read(postgres_db(), _postgres_schema)

    assert set(pg) - set(lite) == PG_ONLY_TABLES
    assert set(lite) - set(pg) == set()
    for table in sorted(set(lite)):
        meant = {column for t, column in PG_ONLY_COLUMNS if t == table}
        only_lite, only_pg = lite[table] - pg[table], pg[table] - meant - lite[table]
        assert not only_lite and not only_pg, f"{table}: SQLite {only_lite}, PostgreSQL {only_pg}"
        assert meant <= pg[table], table  # a listed difference that is gone: update the list
    assert lite_indexes == pg_indexes

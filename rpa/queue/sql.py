"""The one thing a queue backend must provide: run SQL on one connection.

The queue's operations (rpa.queue.jobs, runs, hosts, catalog, reads) are written once, in
SQL both SQLite and PostgreSQL accept, against this small interface. Parameters are written
`?` everywhere; a PostgreSQL backend turns them into its own style. Rows are read by column
name only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["Params", "Row", "Sql", "chunks", "rank_sql"]

Row = Mapping[str, Any]
Params = Sequence[Any]


class Sql(Protocol):
    """One database connection, used from one thread at a time."""

    #: "sqlite" or "postgres": for the few statements that differ
    dialect: str

    def rows(self, sql: str, params: Params = ()) -> list[Row]: ...

    def one(self, sql: str, params: Params = ()) -> Row | None: ...

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...

    def executemany(self, sql: str, seq: Iterable[Params]) -> int: ...

    def transaction(self) -> AbstractContextManager[None]:
        """A write transaction: everything inside commits together or not at all."""
        ...

    def read_transaction(self) -> AbstractContextManager[None]:
        """A read-only transaction: every query inside sees one consistent state."""
        ...

    def close(self) -> None: ...


def rank_sql(q_permille: int, n: str) -> str:
    """rpa.metrics.nearest_rank (the one percentile method) as an SQL expression over the
    integer column `n` (integer division in both SQLite and PostgreSQL)."""
    return f"(({q_permille} * ({n} - 1) + 500) / 1000)"


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

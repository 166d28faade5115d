"""`rpa export`'s records: the key outcomes of the done papers, read from the results table.

Rows are read in pages by primary key (not one huge cursor held open), so a million results
export in constant memory while a run keeps writing. `rpa.show.export` writes them out.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rpa.queue import open_store, reads
from rpa.queue.store import QueueStore
from rpa.stages.store import export_columns

__all__ = ["PAGE", "iter_records", "open_records", "stage_columns"]

#: results read per query
PAGE = 1000


def iter_records(store: QueueStore) -> Iterator[dict[str, Any]]:
    """Every done paper's record, in primary-key order, a page at a time."""
    last = ""
    while True:
        rows = reads.results_page(store, last, PAGE)
        if not rows:
            return
        for _, outcome_json in rows:
            yield json.loads(outcome_json)
        last = rows[-1][0]


@contextlib.contextmanager
def open_records(db: str | Path) -> Iterator[Iterator[dict[str, Any]]]:
    """The records of the queue at `db`, on a read-only store held open until the block
    ends; they are read lazily, as the caller writes them. Raises rpa.errors.DatabaseError
    when the queue cannot be opened."""
    store = open_store(db, readonly=True)
    try:
        yield iter_records(store)
    finally:
        store.close()


def stage_columns(db: str | Path) -> list[tuple[str, str]]:
    """The (stage, key) pairs of the export's `stage_<stage>_<key>` columns (rpa.stages.store)."""
    store = open_store(db, readonly=True)
    try:
        return export_columns(store)
    finally:
        store.close()

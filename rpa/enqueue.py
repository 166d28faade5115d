"""Putting an ID list into the queue: streamed, batched, idempotent.

Runs before the event loop starts (or in a thread), with its own connection. A file of a
million IDs is read a batch at a time; each batch is one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rpa import jobs
from rpa.db import connect
from rpa.errors import InputError, InvalidIdError
from rpa.ids import iter_id_batches

__all__ = ["EnqueueReport", "enqueue_file"]

#: invalid lines kept for the report; the rest are only counted
MAX_REPORTED = 50


@dataclass(slots=True)
class EnqueueReport:
    lines: int = 0  # non-blank, non-comment lines
    valid: int = 0
    new: int = 0
    invalid: int = 0
    errors: list[InvalidIdError] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Valid IDs that were already queued (or repeated in the file)."""
        return self.valid - self.new


def enqueue_file(
    db_path: Path,
    ids_path: Path,
    *,
    strict: bool = False,
    batch_size: int = 10_000,
    on_invalid: Callable[[InvalidIdError], None] | None = None,
) -> EnqueueReport:
    """Queue every valid ID of `ids_path`. With `strict`, any invalid line refuses the file."""
    if strict:
        bad = EnqueueReport()
        for batch in iter_id_batches(ids_path, batch_size):
            for line in batch:
                if line.error is not None:
                    bad.invalid += 1
                    if len(bad.errors) < MAX_REPORTED:
                        bad.errors.append(line.error)
        if bad.invalid:
            first = bad.errors[0]
            raise InputError(
                f"{ids_path}: {bad.invalid} invalid lines (--strict), first at {first}; "
                "nothing was queued"
            )
    report = EnqueueReport()
    conn = connect(db_path)
    try:
        for batch in iter_id_batches(ids_path, batch_size):
            keys = []
            for line in batch:
                report.lines += 1
                if line.paper is not None:
                    keys.append(line.paper.key)
                elif line.error is not None:
                    report.invalid += 1
                    if len(report.errors) < MAX_REPORTED:
                        report.errors.append(line.error)
                    if on_invalid is not None:
                        on_invalid(line.error)
            report.valid += len(keys)
            if keys:
                report.new += jobs.enqueue(conn, keys, time.time())
    finally:
        conn.close()
    return report

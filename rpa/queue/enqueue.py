"""Putting an ID list into the queue: streamed, batched, idempotent.

Runs before the event loop starts (or in a thread), with its own store. A file of a million
IDs is read a batch at a time; each batch is one transaction.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

from rpa.errors import InputError, InvalidIdError
from rpa.idlist import KeyBatch, iter_key_batches, readable_twice
from rpa.queue.store import QueueStore
from rpa.units import count

__all__ = ["EnqueueReport", "enqueue_file"]

#: invalid lines kept for the report; the rest are only counted
MAX_REPORTED = 50
#: parsed batches the reading thread may run ahead of the inserts
READ_AHEAD = 4


@dataclass(slots=True)
class EnqueueReport:
    lines: int = 0  # non-blank, non-comment lines
    valid: int = 0
    new: int = 0
    invalid: int = 0
    errors: list[InvalidIdError] = field(default_factory=list)

    def add(self, batch: KeyBatch) -> None:
        """Count a batch's lines, valid IDs and errors (keeping the first MAX_REPORTED)."""
        self.lines += batch.lines
        self.valid += len(batch.keys)
        self.invalid += len(batch.errors)
        self.errors.extend(batch.errors[: MAX_REPORTED - len(self.errors)])

    @property
    def duplicates(self) -> int:
        """Valid IDs that were already queued (or repeated in the file)."""
        return self.valid - self.new


def enqueue_file(
    store: QueueStore,
    ids_path: Path,
    *,
    strict: bool = False,
    batch_size: int = 10_000,
    on_invalid: Callable[[InvalidIdError], None] | None = None,
) -> EnqueueReport:
    """Queue every valid ID of `ids_path`. With `strict`, any invalid line refuses the file."""
    if strict:  # read twice: a stream (standard input, a pipe) is kept aside first
        with readable_twice(ids_path) as readable:
            return _enqueue_strict(store, ids_path, readable, batch_size, on_invalid)
    return _enqueue(store, ids_path, batch_size, on_invalid)


def _enqueue_strict(
    store: QueueStore,
    ids_path: Path,
    readable: Path,
    batch_size: int,
    on_invalid: Callable[[InvalidIdError], None] | None,
) -> EnqueueReport:
    bad = EnqueueReport()
    for batch in iter_key_batches(readable, batch_size):
        bad.add(batch)
    if bad.invalid:
        first = bad.errors[0]
        raise InputError(
            f"{ids_path}: {count(bad.invalid, 'invalid line')} (--strict), first at {first}; "
            "nothing was queued"
        )
    return _enqueue(store, readable, batch_size, on_invalid)


def _enqueue(
    store: QueueStore,
    ids_path: Path,
    batch_size: int,
    on_invalid: Callable[[InvalidIdError], None] | None,
) -> EnqueueReport:
    report = EnqueueReport()
    for batch in _read_ahead(ids_path, batch_size):
        report.add(batch)
        if on_invalid is not None:
            for error in batch.errors:
                on_invalid(error)
        if batch.keys:
            report.new += store.enqueue(batch.keys, time.time())
    return report


def _read_ahead(ids_path: Path, batch_size: int) -> Generator[KeyBatch, None, None]:
    """iter_key_batches run in a thread, READ_AHEAD batches ahead of the caller.

    Parsing holds the GIL but SQLite releases it while it works, so reading the next batch
    overlaps inserting this one (about a tenth of a million-line enqueue). An error in the
    reader is raised here; leaving the loop early stops the reader.
    """
    done = object()
    ready: queue.Queue[object] = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in iter_key_batches(ids_path, batch_size):
                if not put(batch):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)
            return
        put(done)

    reader = threading.Thread(target=read, name="rpa-enqueue-read", daemon=True)
    reader.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, KeyBatch)
            yield item
    finally:
        stop.set()
        reader.join()

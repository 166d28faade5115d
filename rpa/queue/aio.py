"""`AsyncQueue`: the queue as the event loop sees it. No database call runs on the loop thread.

The store (and its connection) lives in dedicated threads; the loop sends a function of the
store (rpa.queue.jobs, runs, ...) and its arguments and awaits the result:

    queue = AsyncQueue("rpa.db")
    await queue.open()
    claimed = await queue.run(jobs.claim, run_id, 64, 120.0, time.time())

SQLite gets one thread (one writer per process: no lock contention inside a run); PostgreSQL
gets `connections` threads, each with its own connection. The threads form a gate, shown with
the other gates: a long wait here says the run is bound by the database.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from rpa.errors import DatabaseError
from rpa.gates import Gate
from rpa.queue import is_postgres_url, open_store
from rpa.queue.store import QueueStore

__all__ = ["AsyncQueue"]

P = ParamSpec("P")
T = TypeVar("T")


class AsyncQueue:
    """A `QueueStore` per database thread, driven from the event loop."""

    def __init__(self, db: str | Path, *, connections: int = 4) -> None:
        self.db = db
        size = connections if is_postgres_url(db) else 1
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="rpa-db")
        self._local = threading.local()
        self._stores: list[QueueStore] = []
        self._lock = threading.Lock()
        self._closed = False
        self.gate = Gate("database", size)
        #: seconds the threads spent inside calls (the benchmark reports it)
        self.busy_seconds = 0.0

    def _store(self) -> QueueStore:
        store: QueueStore | None = getattr(self._local, "store", None)
        if store is None:
            if self._closed:
                raise DatabaseError("the queue is closed")
            # open() migrated it already: the other threads only open it
            store = open_store(self.db, create=False)
            self._local.store = store
            with self._lock:
                self._stores.append(store)
        return store

    async def open(self, *, create: bool = True) -> None:
        """Open (creating and migrating it unless `create` is False) in a database thread."""

        def first() -> None:
            self._local.store = open_store(self.db, create=create)
            with self._lock:
                self._stores.append(self._local.store)

        await asyncio.get_running_loop().run_in_executor(self._executor, first)

    async def run(
        self, fn: Callable[Concatenate[QueueStore, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(store, *args, **kwargs)` in a database thread; its result."""

        def call() -> T:
            start = time.perf_counter()
            try:
                return fn(self._store(), *args, **kwargs)
            finally:
                self.busy_seconds += time.perf_counter() - start

        async with self.gate:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        """Close every thread's store; later calls fail with DatabaseError."""

        def close_all() -> None:
            with self._lock:
                stores, self._stores = self._stores, []
                self._closed = True
            for store in stores:
                store.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, close_all)
        self._executor.shutdown(wait=False)

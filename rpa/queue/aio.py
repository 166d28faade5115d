"""`AsyncQueue`: the queue as the event loop sees it. No database call runs on the loop thread.

The store (and its connection) lives in dedicated threads; the loop sends a function of the
store (rpa.queue.jobs, runs, ...) and its arguments and awaits the result:

    queue = AsyncQueue("rpa.db")
    await queue.open()
    claimed = await queue.run(jobs.claim, run_id, 64, 120.0, time.time())

SQLite gets one thread (one writer per process: no lock contention inside a run); PostgreSQL
gets `connections` threads and up to as many connections, which a thread takes for a call and
gives back (rpa.queue.pool: a server that has fewer slots to spare makes the run slower, not
down). The threads form a gate, shown with the other gates: a long wait here says the run is
bound by the database.

This is the one owner of the database's health. A call that fails because the database is
unavailable (rpa.queue.outage.database_outage: a connection refused, broken or reset, a server
starting or shutting down, too many clients, a lock_timeout or statement_timeout hit,
pg_terminate_backend, SQLite "database is locked") closes that connection (a
later call opens a new one), tells `outage` (the queue's state, not the thread's: it is down,
and said once, only when no thread's call has got through for a few seconds) and is tried
again after a capped backoff, until the database answers (an outage's end said, with how
long it took) or `wait` seconds have passed: then DatabaseStayedAway, and the run stops as
`interrupted`. Any other exception (a bug, a constraint) is raised as it is. While the
database is down every call waits, the feeder's claims included: no new work is claimed,
and work in flight waits at the point where it must be recorded.

Why a retried call is safe: reads are idempotent; every state change of a job is one
transaction fenced by its lease token, so a change whose first try did not commit is simply
made by the retry, and one whose first try committed (its reply lost with the connection)
finds the fence already moved and changes nothing. The one such case whose answer matters is
`complete`: `run_fenced` asks a confirming read (`jobs.completed`) when a retried write
answers False, so a paper whose completion committed counts as done, never as "lease lost".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from rpa.errors import DatabaseError, DatabaseStayedAway, DatabaseUnavailable
from rpa.gates import Gate
from rpa.notices import Notices
from rpa.queue import is_postgres_url, open_store, redact
from rpa.queue.outage import QueueOutage, database_outage
from rpa.queue.pool import StorePool
from rpa.queue.store import QueueStore

__all__ = ["DB_WAIT", "FIRST_RETRY", "LAST_RETRY", "AsyncQueue"]

#: the default longest wait for an unavailable database, seconds (--db-wait)
DB_WAIT = 1800.0
#: the first pause before a call is tried again, seconds; it doubles up to LAST_RETRY
FIRST_RETRY = 0.2
LAST_RETRY = 5.0

P = ParamSpec("P")
T = TypeVar("T")


class AsyncQueue:
    """A `QueueStore` per database thread, driven from the event loop."""

    def __init__(
        self,
        db: str | Path,
        *,
        connections: int = 4,
        wait: float = DB_WAIT,
        lock_timeout: float = 30.0,
        notices: Notices | None = None,
    ) -> None:
        """`wait`: the longest the calls wait for an unavailable database before
        DatabaseStayedAway; `lock_timeout`: SQLite's busy timeout, PostgreSQL's lock_timeout."""
        self.db = db
        self.wait = wait
        self.lock_timeout = lock_timeout
        self.outage = QueueOutage(notices)
        #: the wait passed once: later calls (recording the end of the run) try once only
        self.gave_up = False
        size = connections if is_postgres_url(db) else 1
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="rpa-db")
        # open() migrated the queue already: the pool's stores only open it
        self._stores = StorePool(
            size, lambda: open_store(self.db, create=False, lock_timeout=self.lock_timeout)
        )
        self._closed = False
        self.gate = Gate("database", size)
        #: seconds the threads spent inside calls (the benchmark reports it)
        self.busy_seconds = 0.0

    async def open(self, *, create: bool = True) -> None:
        """Open (creating and migrating it unless `create` is False) in a database thread.
        A server that is there but busy or starting (too many clients) is waited for, as a
        call would; one where nothing answers, or that refuses us, fails at once."""

        def first() -> None:
            self._stores.add(open_store(self.db, create=create, lock_timeout=self.lock_timeout))

        loop = asyncio.get_running_loop()
        delay = FIRST_RETRY
        while True:
            try:
                await loop.run_in_executor(self._executor, first)
                self.outage.came_back()
                return
            except DatabaseUnavailable as exc:
                if not exc.reachable:
                    raise DatabaseError(str(exc)) from None
                self._gave_up_after(exc.reason)
            await self._pause(delay)
            delay = min(2 * delay, LAST_RETRY)

    async def run(
        self, fn: Callable[Concatenate[QueueStore, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(store, *args, **kwargs)` in a database thread; its result. While the database
        is unavailable the call waits (and is tried again) up to `wait` seconds in all."""
        result, _ = await self._run(fn, *args, **kwargs)
        return result

    async def run_fenced(
        self,
        fn: Callable[Concatenate[QueueStore, P], bool],
        confirm: Callable[Concatenate[QueueStore, P], bool],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> bool:
        """A fenced write (True: it was made) whose commit may have happened although its
        reply was lost with the connection: when a retried `fn` answers False, `confirm`
        (same arguments) says whether that first try committed."""
        made, retried = await self._run(fn, *args, **kwargs)
        if made or not retried:
            return made
        return await self.run(confirm, *args, **kwargs)

    async def run_fenced_many(
        self,
        fn: Callable[Concatenate[QueueStore, P], list[bool]],
        confirm: Callable[Concatenate[QueueStore, P], list[bool]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> list[bool]:
        """`run_fenced` for a batch of fenced writes: each False of a retried `fn` is
        confirmed by `confirm` (same arguments)."""
        made, retried = await self._run(fn, *args, **kwargs)
        if all(made) or not retried:
            return made
        confirmed = await self.run(confirm, *args, **kwargs)
        return [m or c for m, c in zip(made, confirmed, strict=True)]

    async def _run(
        self, fn: Callable[Concatenate[QueueStore, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> tuple[T, bool]:
        """(`fn`'s result, whether it had to be tried again after an outage)."""

        def call() -> T:
            start = time.perf_counter()
            store = self._stores.take()
            broken = False
            try:
                return fn(store, *args, **kwargs)
            except Exception as exc:
                broken = self._reconnects and database_outage(exc) is not None
                raise
            finally:
                if broken:
                    self._stores.drop(store)  # a later call opens a new connection
                else:
                    self._stores.give(store)
                self.busy_seconds += time.perf_counter() - start

        loop = asyncio.get_running_loop()
        delay = FIRST_RETRY
        retried = False
        while True:
            try:
                async with self.gate:
                    result = await loop.run_in_executor(self._executor, call)
                self.outage.came_back()
                return result, retried
            except Exception as exc:
                reason = database_outage(exc)
                if reason is None or self._closed:
                    raise
                self._gave_up_after(reason)
            retried = True
            await self._pause(delay)
            delay = min(2 * delay, LAST_RETRY)

    @property
    def _reconnects(self) -> bool:
        """PostgreSQL connections are replaced after an outage; SQLite's one connection is
        kept (a lock held by another process leaves it sound)."""
        return is_postgres_url(self.db)

    def _gave_up_after(self, reason: str) -> None:
        """Mark the database down for `reason`; past the wait (or once given up), raise
        DatabaseStayedAway."""
        self.outage.went_down(reason)
        waited = self.outage.waited()
        if self.gave_up or waited > self.wait:
            self.outage.went_down(reason, say=True)  # said, if it was not yet, before the stop
            self.gave_up = True
            raise DatabaseStayedAway(
                f"the queue database {redact(self.db)} stayed unavailable for {waited:.0f} s "
                f"(--db-wait {self.wait:g} s; {reason})"
            )

    async def _pause(self, seconds: float) -> None:
        self.outage.waiting += 1
        try:
            await asyncio.sleep(min(seconds, max(0.05, self.wait - self.outage.waited() + 0.05)))
        finally:
            self.outage.waiting -= 1

    async def close(self) -> None:
        """Close every thread's store; later calls fail with DatabaseError."""

        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._stores.close)
        self._executor.shutdown(wait=False)

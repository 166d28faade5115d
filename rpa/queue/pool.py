"""`StorePool`: the open queue connections of a run, shared by its database threads.

A database thread takes an open store for a call and gives it back after (rpa.queue.aio). A
store is opened only when none is idle and fewer than `size` are open. When the server
refuses a new connection because it is busy (its slots all taken: too many clients, the slots
reserved) while another connection of this run works, that is no outage: the call waits for a
working store instead of failing, and no new connection is tried for `RETRY_NEW` seconds. A
run that gets one slot out of four then runs at one connection's pace, which is what the
server allows, instead of a call in every four failing its connect and waiting out a backoff
(a run with every slot but one taken did 40 papers in 90 s; a fleet that outgrows the
server's `max_connections` met it on every process). With no connection open, a refused
connect is raised as it is: the database is unavailable, and rpa.queue.aio waits for it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from rpa.errors import DatabaseError, DatabaseUnavailable
from rpa.queue.store import QueueStore

__all__ = ["RETRY_NEW", "StorePool"]

#: seconds after a busy server refused a new connection before another one is tried
RETRY_NEW = 2.0
#: seconds a thread waiting for an idle store looks again (a store dropped, the pause over)
LOOK_AGAIN = 0.25


class StorePool:
    """Up to `size` stores, each used by one thread at a time; `opener()` opens one."""

    def __init__(self, size: int, opener: Callable[[], QueueStore]) -> None:
        self.size = size
        self._opener = opener
        self._cond = threading.Condition()
        self._idle: list[QueueStore] = []
        self._open: list[QueueStore] = []  # idle or in use
        self._opening = 0
        self._new_after = 0.0  # monotonic: no new connection before (a busy server said no)
        self._closed = False

    def add(self, store: QueueStore) -> None:
        """A store opened elsewhere (the first, which creates and migrates the queue)."""
        with self._cond:
            self._open.append(store)
            self._idle.append(store)
            self._cond.notify()

    def take(self) -> QueueStore:
        """An idle store, a new one, or (a busy server refusing more) the next store given
        back. Raises DatabaseError once closed, or what opening a first store raised."""
        with self._cond:
            while True:
                if self._closed:
                    raise DatabaseError("the queue is closed")
                if self._idle:
                    return self._idle.pop()
                working = len(self._open) + self._opening
                if working == 0 or (working < self.size and time.monotonic() >= self._new_after):
                    self._opening += 1
                    break
                self._cond.wait(LOOK_AGAIN)
        try:
            store = self._opener()
        except DatabaseUnavailable as exc:
            with self._cond:
                self._opening -= 1
                others = len(self._open) + self._opening
            if not (exc.reachable and others):
                raise
            with self._cond:  # the server is busy, and this run has a connection: wait for it
                self._new_after = time.monotonic() + RETRY_NEW
            return self.take()
        except BaseException:
            with self._cond:
                self._opening -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._opening -= 1
            if self._closed:
                store.close()
                raise DatabaseError("the queue is closed")
            self._open.append(store)
            return store

    def give(self, store: QueueStore) -> None:
        """`store` is free again."""
        with self._cond:
            if store in self._open:
                self._idle.append(store)
                self._cond.notify()

    def drop(self, store: QueueStore) -> None:
        """`store`'s connection broke (or its server went away): close it; the next call that
        finds no idle store opens a new one."""
        with self._cond:
            if store in self._open:
                self._open.remove(store)
            if store in self._idle:
                self._idle.remove(store)
            self._cond.notify_all()
        with contextlib.suppress(Exception):  # it is broken: closing it may fail too
            store.close()

    def close(self) -> None:
        """Close every open store; later `take`s raise DatabaseError."""
        with self._cond:
            stores, self._open, self._idle = self._open, [], []
            self._closed = True
            self._cond.notify_all()
        for store in stores:
            store.close()

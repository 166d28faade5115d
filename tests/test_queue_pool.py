"""rpa.queue.pool: the run's queue connections shared by its database threads.

Real SQLite stores; the busy server's refusal is raised by the opener (the PostgreSQL case,
with every slot but one taken on a real server, is tests/test_db_outage's: this pins the
pool's rules where a server cannot be made to refuse a given connect on demand)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from rpa.errors import DatabaseError, DatabaseUnavailable
from rpa.queue import open_store
from rpa.queue.pool import StorePool
from rpa.queue.store import QueueStore


def _busy() -> DatabaseUnavailable:
    return DatabaseUnavailable("too many clients", reason="too many clients", reachable=True)


def _opening(db: Path) -> tuple[list[QueueStore], Callable[[], QueueStore]]:
    """An opener of real stores of `db`, and the list of those it opened."""
    opened: list[QueueStore] = []

    def opener() -> QueueStore:
        opened.append(open_store(db))
        return opened[-1]

    return opened, opener


def test_a_store_given_back_is_taken_again_and_no_more_are_opened(tmp_path: Path) -> None:
    opened, opener = _opening(tmp_path / "q.db")
    pool = StorePool(4, opener)
    first = pool.take()
    pool.give(first)
    assert pool.take() is first and len(opened) == 1
    second = pool.take()  # the first is in use: a second is opened
    assert second is not first and len(opened) == 2
    pool.close()
    with pytest.raises(DatabaseError, match="closed"):
        pool.take()


def test_a_busy_server_makes_a_call_wait_for_the_connection_there_is(tmp_path: Path) -> None:
    """The server refuses a second connection: the second thread's call waits for the first
    store, given back, instead of failing (which made it back off, as for an outage)."""
    store = open_store(tmp_path / "q.db")
    asked = [0]

    def opener() -> QueueStore:
        asked[0] += 1
        if asked[0] > 1:
            raise _busy()
        return store

    pool = StorePool(4, opener)
    held = pool.take()
    got: list[QueueStore] = []
    waiter = threading.Thread(target=lambda: got.append(pool.take()))
    waiter.start()
    while asked[0] < 2:  # the waiter was refused a connection of its own
        threading.Event().wait(0.01)
    assert not got  # it waits: it neither failed nor got a store
    pool.give(held)
    waiter.join(10)
    assert got == [store] and asked[0] == 2  # no new connect within RETRY_NEW
    pool.close()


def test_with_no_connection_open_a_refusal_is_raised_as_an_outage(tmp_path: Path) -> None:
    def opener() -> QueueStore:
        raise _busy()

    with pytest.raises(DatabaseUnavailable):
        StorePool(4, opener).take()


def test_a_dropped_store_is_replaced_by_a_new_connection(tmp_path: Path) -> None:
    opened, opener = _opening(tmp_path / "q.db")
    pool = StorePool(1, opener)
    broken = pool.take()
    pool.drop(broken)
    fresh = pool.take()
    assert fresh is not broken and len(opened) == 2
    pool.close()

"""`QueueStore`: one open queue (a backend's connection), and the `Backend` protocol.

The store holds the connection and knows where the queue lives; what is done with it is in
the concern modules, plain functions whose first parameter is the store:

    rpa.queue.jobs      jobs and their leases (claim, checkpoints, complete, fail, retry)
    rpa.queue.runs      runs and their liveness (heartbeat, dead runs, reclaim)
    rpa.queue.hosts     hosts' cooldowns and breakers, the shared rate slots
    rpa.queue.catalog   the tar index, metadata, the queue's settings, job ids
    rpa.queue.reads     totals, status, stage timings, pages of results

so that `AsyncQueue.run(jobs.claim, ...)` calls `jobs.claim(store, ...)` in a database thread.
The store is synchronous and belongs to one thread (`rpa.queue.aio.AsyncQueue` runs it off the
event loop; the CLI's one-shot commands call it directly). The SQL of those modules is
written once for both backends; what differs between SQLite and PostgreSQL (opening,
migrations, enqueue, claim) is the `Backend`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rpa.queue.sql import Row, Sql

__all__ = ["Backend", "QueueStore"]


class Backend(Protocol):
    """What a database backend provides besides its SQL connection."""

    @property
    def sql(self) -> Sql:
        """The backend's connection."""
        ...

    @property
    def location(self) -> str:
        """Where the queue lives, for messages (a path, or a URL without its password)."""
        ...

    def enqueue(self, keys: Sequence[str], now: float) -> int:
        """Add jobs not already queued; returns how many were new."""
        ...

    def claim(
        self, run_id: str, limit: int, lease: float, now: float | None, stages: Sequence[str]
    ) -> list[Row]:
        """Lease up to `limit` claimable jobs in `stages`, the oldest first, unless the run
        was found dead; the claimed rows (with their `seq`). `now` None: the database's
        clock (rpa.queue.clock)."""
        ...


class QueueStore:
    """The queue, over one backend connection."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.sql = backend.sql

    @property
    def location(self) -> str:
        return self.backend.location

    def close(self) -> None:
        self.sql.close()

    def enqueue(self, keys: Sequence[str], now: float) -> int:
        """Add jobs not already queued (one transaction); returns how many were new."""
        return self.backend.enqueue(keys, now) if keys else 0

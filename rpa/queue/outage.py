"""`QueueOutage`: whether the queue database answers, since when it does not, and why; and
`database_outage`: which exceptions say the database is unavailable for now.

rpa.queue.aio is the one owner of the database's health; this is the state it keeps and says.
A call that meets the database unavailable marks it down (the first one says so, with the
reason and how many calls wait); the first call that gets through again marks it back (said
with how long it lasted). `statistics()` is what the run's snapshot shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rpa.errors import DatabaseUnavailable
from rpa.notices import Notices

__all__ = ["PG_BUSY", "PG_UNAVAILABLE", "OutageStatistics", "QueueOutage", "database_outage",
           "pg_busy"]  # fmt: skip


@dataclass(frozen=True, slots=True)
class OutageStatistics:
    """The database's state now: `since` (wall clock) and `reason` are None while it answers."""

    since: float | None
    reason: str | None
    waiting: int
    outages: int


class QueueOutage:
    """The queue database's availability, as the calls through rpa.queue.aio find it."""

    def __init__(self, notices: Notices | None = None) -> None:
        self.notices = notices
        self.since: float | None = None  # wall clock, for messages
        self._since_mono = 0.0
        self.reason: str | None = None
        #: calls waiting for the database to answer again
        self.waiting = 0
        #: outages this run has met
        self.outages = 0

    @property
    def down(self) -> bool:
        return self.since is not None

    def waited(self) -> float:
        """Seconds since the database stopped answering (0 while it answers)."""
        return time.monotonic() - self._since_mono if self.since is not None else 0.0

    def went_down(self, reason: str) -> None:
        """A call found the database unavailable for `reason` (said once per outage)."""
        if self.since is not None:
            if reason != self.reason and self.notices is not None:  # said once per outage
                self.notices.add(
                    f"the queue database is still unavailable ({reason}): waiting",
                    key=f"queue database {self.outages}: {reason}",
                )
            self.reason = reason
            return
        self.since, self._since_mono, self.reason = time.time(), time.monotonic(), reason
        self.outages += 1
        if self.notices is not None:
            when = time.strftime("%H:%M:%S", time.localtime(self.since))
            self.notices.add(
                f"the queue database is unavailable since {when} ({reason}): waiting; "
                f"{self.waiting + 1} calls wait (no new work is claimed; work in flight "
                "waits where it must be recorded)"
            )

    def came_back(self) -> None:
        """A call got through: the outage, if any, is over (said with its length)."""
        if self.since is None:
            return
        took = self.waited()
        self.since, self.reason = None, None
        if self.notices is not None:
            self.notices.add(f"the queue database is back after {took:.0f} s")

    def statistics(self) -> OutageStatistics:
        return OutageStatistics(self.since, self.reason, self.waiting, self.outages)


#: PostgreSQL SQLSTATEs that say the database is unavailable for now, not that the statement
#: is wrong: admin_shutdown (pg_terminate_backend, a fast stop), crash_shutdown,
#: cannot_connect_now (starting up, shutting down, in recovery), idle_session_timeout,
#: too_many_connections, lock_not_available (lock_timeout), query_canceled
#: (statement_timeout), serialization_failure and deadlock_detected (the transaction was
#: rolled back whole: doing it again is safe). Class 08 (connection exceptions) as well.
PG_UNAVAILABLE = frozenset(
    {"57P01", "57P02", "57P03", "57P05", "53300", "55P03", "57014", "40001", "40P01"}
)
#: of those, what a server that is there but busy or starting answers to a connect
PG_BUSY = frozenset({"53300", "57P03"})
_PG_BUSY_WORDS = ("too many", "starting up", "shutting down", "recovery mode", "reserved for")


def database_outage(exc: BaseException) -> str | None:
    """Why `exc` says the queue database is unavailable for now (a reason to wait and try the
    call again), or None when it is not such a condition (a bug, a constraint, bad SQL: raised
    as it is). Reads the drivers' classes by name (PEP 249), never importing them."""
    if isinstance(exc, DatabaseUnavailable):
        return exc.reason
    names = {(c.__module__.split(".")[0], c.__name__) for c in type(exc).__mro__}
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if ("sqlite3", "OperationalError") in names:
        lowered = text.lower()
        return f"SQLite: {text}" if "locked" in lowered or "busy" in lowered else None
    # psycopg's InterfaceError is a misuse of the driver (a bug), never waited for
    if ("psycopg", "OperationalError") in names:
        state = getattr(exc, "sqlstate", None)
        if state is None or state.startswith("08") or state in PG_UNAVAILABLE:
            return f"{text} ({state})" if state else text
    return None


def pg_busy(exc: BaseException) -> bool:
    """Did a PostgreSQL server answer a connect with "busy" or "starting" (as opposed to
    nothing answering, or refusing who we are)?"""
    state = getattr(exc, "sqlstate", None)
    if state is not None:
        return state in PG_BUSY
    return any(word in str(exc).lower() for word in _PG_BUSY_WORDS)

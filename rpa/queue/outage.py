"""`QueueOutage`: whether the queue database answers, since when it does not, and why; and
`database_outage`: which exceptions say the database is unavailable for now.

rpa.queue.aio is the one owner of the database's health; this is the state it keeps and says.
The state is the queue's, not one database thread's: the calls that meet the database
unavailable start a failing streak, which any call that gets through ends. Only a streak
that lasts SAY_AFTER seconds (no thread's call got through meanwhile) is an outage: it is
said once (with its start, the reason and how many calls wait), and its end once (with how
long it lasted). With the server's slots all taken but one, the threads that cannot connect
fail while the one that can goes on: the run is slower, not cut off, and nothing is said
(before: each failed connect said "unavailable", and the next call of the connected thread
"back after 0 s": 62 of each in 30 s). `statistics()` is what the run's snapshot shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rpa.errors import DatabaseUnavailable
from rpa.notices import Notices

__all__ = ["PG_BUSY", "PG_UNAVAILABLE", "SAY_AFTER", "OutageStatistics", "QueueOutage",
           "database_outage", "pg_busy"]  # fmt: skip

#: seconds a failing streak lasts (no call got through) before it is an outage, said
SAY_AFTER = 3.0


@dataclass(frozen=True, slots=True)
class OutageStatistics:
    """The database's state now: `since` (wall clock) and `reason` are None while it answers."""

    since: float | None
    reason: str | None
    waiting: int
    outages: int


class QueueOutage:
    """The queue database's availability, as the calls through rpa.queue.aio find it."""

    def __init__(self, notices: Notices | None = None, say_after: float = SAY_AFTER) -> None:
        self.notices = notices
        self.say_after = say_after
        self.since: float | None = None  # wall clock, for messages: set once the outage is said
        self.reason: str | None = None
        #: the failing streak: when its first call failed (monotonic, wall clock), or None
        #: while the last call got through
        self._failing: tuple[float, float] | None = None
        #: calls waiting for the database to answer again
        self.waiting = 0
        #: outages this run has met (said)
        self.outages = 0

    @property
    def down(self) -> bool:
        """An outage is on (said): no call has got through for `say_after` seconds."""
        return self.since is not None

    def waited(self) -> float:
        """Seconds since the calls stopped getting through (0 while they do)."""
        return time.monotonic() - self._failing[0] if self._failing is not None else 0.0

    def went_down(self, reason: str, *, say: bool = False) -> None:
        """A call found the database unavailable for `reason`. Said once per outage, when
        no call has got through for `say_after` seconds, or at once if `say`."""
        if self._failing is None:
            self._failing = (time.monotonic(), time.time())
        if self.since is not None:
            if reason != self.reason and self.notices is not None:  # said once per outage
                self.notices.add(
                    f"the queue database is still unavailable ({reason}): waiting",
                    key=f"queue database {self.outages}: {reason}",
                )
            self.reason = reason
            return
        self.reason = reason
        if not say and self.waited() < self.say_after:
            return  # maybe one thread's connect: another thread's call may get through
        self.since = self._failing[1]
        self.outages += 1
        if self.notices is not None:
            when = time.strftime("%H:%M:%S", time.localtime(self.since))
            self.notices.add(
                f"the queue database is unavailable since {when} ({reason}): waiting; "
                f"{self.waiting + 1} calls wait (no new work is claimed; work in flight "
                "waits where it must be recorded)"
            )

    def came_back(self) -> None:
        """A call got through: the failing streak, if any, is over; an outage said is said
        over (with its length)."""
        took = self.waited()
        self._failing = None
        if self.since is None:
            self.reason = None
            return
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

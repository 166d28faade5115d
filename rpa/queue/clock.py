"""The queue's clock: the one definition of "now" for liveness and leases.

Every time that decides whether a run is alive or a lease still held (`runs.heartbeat_at`,
`jobs.lease_expires`, and the comparisons of the claim, the fence and the reclaim) is read
from the database's clock, never from the client's: hosts of a fleet whose clocks disagree
(or one process whose clock is off) then still agree on who is alive. PostgreSQL: the
server's `clock_timestamp()`. SQLite: the file is local, so SQLite's own reading of the
system clock (`julianday('now')`), which a process-level offset of Python's `time.time`
does not change.

The queue's functions take `now=None` for "the database's clock"; tests of the queue's
contract pass an explicit `now` to play time forward.

One thing is measured on this host instead: how long a lease surely still holds
(`lease_clock`). A lease set at the database's `t` lasts to `t + lease_seconds` there; a holder
that took the local reading before asking for it knows the lease holds until that reading plus
`lease_seconds` by its own elapsed time, whatever the clocks' offsets (elapsed seconds agree).
"""

from __future__ import annotations

import time

from rpa.queue.sql import Sql

__all__ = ["db_now", "lease_clock", "now_of"]

#: seconds since the epoch by the database's clock, as an SQL expression per dialect
_NOW_SQL = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgres": "extract(epoch FROM clock_timestamp())::float8",
}


def db_now(sql: Sql) -> float:
    """Now, by the database's clock. Read it inside the transaction that uses it (after any
    wait for a lock), so that a stall does not make it stale."""
    row = sql.one(f"SELECT {_NOW_SQL[sql.dialect]} AS now")
    assert row is not None
    return float(row["now"])


def lease_clock() -> float:
    """Seconds on this host's clock that never steps and goes on while the machine is
    suspended or the process stopped (CLOCK_BOOTTIME; the monotonic clock where there is
    none), the same in every process of the host: what a lease's sure end is measured on."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.monotonic() if boottime is None else time.clock_gettime(boottime)


def now_of(sql: Sql, now: float | None) -> float:
    """`now` when a caller gives one (the queue's contract tests play time forward), else
    the database's clock."""
    return db_now(sql) if now is None else now

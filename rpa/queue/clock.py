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
A run's leases are also lost when another run finds it dead (no heartbeat for `dead_after`), so
what a run vouches for (`Vouch`) is the reading taken before its last good heartbeat plus the
shorter of the two; the extraction processes read it when they need it (`vouched_until`).
"""

from __future__ import annotations

import os
import struct
import tempfile
import time

from rpa.queue.sql import Sql

__all__ = ["Vouch", "db_now", "lease_clock", "now_of", "vouched_until"]

_STAMP = struct.Struct("<d")

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


class Vouch:
    """Until when (on `lease_clock`) every lease a run holds surely still holds, shared with
    the run's extraction processes: 8 bytes in an anonymous memory file (memfd), which they
    open by its /proc path. It vanishes with the run's process, so a leftover extraction
    process finds nothing vouched for. The heartbeat moves it on; a run found dead revokes
    it (0)."""

    def __init__(self) -> None:
        try:
            self._fd = os.memfd_create("rpa-leases", os.MFD_CLOEXEC)
            self.path = f"/proc/{os.getpid()}/fd/{self._fd}"
        except (AttributeError, OSError):  # no memfd: a temporary file (deleted by close)
            self._fd, self.path = tempfile.mkstemp(prefix="rpa-leases-")
        self.until(0.0)

    def until(self, sure_until: float) -> None:
        """Every lease held now surely holds until `sure_until` (one 8-byte write: atomic;
        nothing once closed: the run's extraction is over)."""
        if self._fd >= 0:
            os.pwrite(self._fd, _STAMP.pack(sure_until), 0)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            if not self.path.startswith("/proc/"):
                os.unlink(self.path)
            self._fd = -1


def vouched_until(path: str) -> float:
    """What the run at `path` vouches for now (rpa.queue.clock.Vouch); 0 when nothing is
    (no path, its run gone). Opened afresh each time (a few microseconds): a path names
    another vouch once its run's descriptor number is reused."""
    if not path:
        return 0.0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0.0
    try:
        data = os.pread(fd, _STAMP.size, 0)
    finally:
        os.close(fd)
    return _STAMP.unpack(data)[0] if len(data) == _STAMP.size else 0.0

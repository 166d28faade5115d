"""Gates: bounded resources with statistics.

A `Gate` is an async context manager that bounds how many are inside, counts who is inside and
who is waiting and how long they waited, and can be narrowed while in use. It offers
`statistics()` returning a frozen `GateStatistics`, which is all the progress table reads; the
per-host rate gates (rpa.hosts) offer the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType

from rpa.errors import ConfigError
from rpa.metrics import Window

__all__ = ["RAMP_INTERVAL", "RAMP_STEP", "Gate", "GateStatistics"]

#: a slow start (Gate.ramp): this many more holders every RAMP_INTERVAL seconds
RAMP_STEP = 8
RAMP_INTERVAL = 0.1


@dataclass(frozen=True, slots=True)
class GateStatistics:
    name: str
    in_use: int
    capacity: int
    waiting: int
    wait_p50: float
    wait_p95: float
    entered: int


class Gate:
    """At most `limit` holders at once (at most `capacity`, at least 1); measures the wait
    before entry. FIFO: a waiter is let in in the order it came.

    `set_limit` narrows or widens the gate while it is in use (the memory governor narrows the
    extract gate under pressure): holders inside stay; no one new enters until the count is
    under the new limit. A limit never goes below 1, so a gate with nothing inside always lets
    one in: a narrowed run never deadlocks.
    """

    def __init__(self, name: str, capacity: int, window_seconds: float = 60.0) -> None:
        if capacity < 1:
            raise ConfigError(f"gate {name}: capacity must be at least 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self.limit = capacity
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._in_use = 0
        self.waits = Window(window_seconds)

    def set_limit(self, limit: int) -> None:
        """Let at most `limit` (1 .. capacity) in at once from now on."""
        self.limit = max(1, min(self.capacity, limit))
        self._wake()

    async def ramp(
        self, start: int = RAMP_STEP, step: int = RAMP_STEP, interval: float = RAMP_INTERVAL
    ) -> None:
        """Open from `start` to the full capacity, `step` more every `interval` seconds (a
        slow start: 64 downloads begun in the same instant on a fast link made the event
        loop's iterations 10-60 ms long while their bodies streamed in together). Gives up
        the moment someone else sets the limit."""
        self.set_limit(start)
        while self.limit < self.capacity:
            expected = self.limit
            await asyncio.sleep(interval)
            if self.limit != expected:
                return
            self.set_limit(self.limit + step)

    def _wake(self) -> None:
        while self._waiters and self._in_use < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)

    async def acquire(self) -> float:
        """Enter; returns the seconds spent waiting."""
        start = time.perf_counter()
        if self._in_use < self.limit and not self._waiters:
            self._in_use += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self.release()  # let in, then cancelled before it could go in
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
        waited = time.perf_counter() - start
        self.waits.add(waited)
        return waited

    def release(self) -> None:
        self._in_use -= 1
        self._wake()

    async def __aenter__(self) -> float:
        return await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def has_waiters(self) -> bool:
        """Is anyone waiting to enter? (cheap: statistics() computes percentiles)"""
        return any(not w.done() for w in self._waiters)

    def statistics(self) -> GateStatistics:
        stats = self.waits.stats()
        return GateStatistics(
            name=self.name,
            in_use=self._in_use,
            capacity=self.limit,
            waiting=sum(not w.done() for w in self._waiters),
            wait_p50=stats.p50,
            wait_p95=stats.p95,
            entered=self.waits.total_count,
        )

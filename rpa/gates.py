"""Gates: bounded resources with statistics.

A `Gate` is an async context manager around a semaphore that also counts who is inside, who is
waiting and how long they waited. `RateGate` caps the requests to one host in any window. Both offer
`statistics()` returning a frozen snapshot, which is all the progress table reads.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from rpa.errors import ConfigError
from rpa.metrics import Window

__all__ = ["Gate", "GateStatistics", "RateGate"]


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
    """At most `capacity` holders at once; measures the wait before entry."""

    def __init__(self, name: str, capacity: int, window_seconds: float = 60.0) -> None:
        if capacity < 1:
            raise ConfigError(f"gate {name}: capacity must be at least 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self._semaphore = asyncio.Semaphore(capacity)
        self._in_use = 0
        self._waiting = 0
        self.waits = Window(window_seconds)
        #: wait of the most recent entry, for the caller to record with its attempt
        self.last_wait = 0.0

    async def acquire(self) -> float:
        """Enter; returns the seconds spent waiting."""
        start = time.perf_counter()
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        waited = time.perf_counter() - start
        self._in_use += 1
        self.waits.add(waited)
        self.last_wait = waited
        return waited

    def release(self) -> None:
        self._in_use -= 1
        self._semaphore.release()

    async def __aenter__(self) -> float:
        return await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def statistics(self) -> GateStatistics:
        stats = self.waits.stats()
        return GateStatistics(
            name=self.name,
            in_use=self._in_use,
            capacity=self.capacity,
            waiting=self._waiting,
            wait_p50=stats.p50,
            wait_p95=stats.p95,
            entered=self.waits.total_count,
        )


class RateGate:
    """At most `count` requests in any window of `period` seconds (a sliding-window log).

    arXiv's guidance for automated access is "bursts of at most 4 requests per second, then a
    1 second pause"; a GCRA or token bucket with burst 4 would let 4 + 4·T through in a window
    of T seconds, so rpa keeps the send times of the last `count` requests and lets the next
    one go only when the oldest of them is `period` old. Exact, O(1), FIFO (waiters queue on a
    lock). `pause_until()` sets a cooldown every waiter respects (Retry-After).
    """

    def __init__(
        self,
        name: str,
        count: int | None,
        period: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        window_seconds: float = 60.0,
    ) -> None:
        if (count is not None and count < 1) or period <= 0:
            raise ConfigError(f"rate gate {name}: count must be >= 1 and period > 0")
        self.name = name
        self.count = count
        self.period = period
        self._clock = clock
        # count None: no cap, only cooldowns (a host with no configured limit)
        self._sent: deque[float] = deque(maxlen=count or 1)
        self._paused_until = 0.0
        self._waiting = 0
        self._lock = asyncio.Lock()
        self.waits = Window(window_seconds)
        self.last_wait = 0.0

    def pause_until(self, monotonic_deadline: float) -> None:
        self._paused_until = max(self._paused_until, monotonic_deadline)

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def _delay(self, now: float) -> float:
        """Seconds until a request may go at `now` (0 if it may go now)."""
        full = self.count is not None and len(self._sent) == self.count
        window_free = self._sent[0] + self.period - now if full else 0.0
        return max(0.0, window_free, self._paused_until - now)

    async def acquire(self) -> float:
        start = self._clock()
        self._waiting += 1
        try:
            async with self._lock:
                # waiting out a time window, not an event: a sleep is the right primitive
                while (delay := self._delay(self._clock())) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(delay)
                self._sent.append(self._clock())
        finally:
            self._waiting -= 1
        waited = self._clock() - start
        self.waits.add(waited)
        self.last_wait = waited
        return waited

    def statistics(self) -> GateStatistics:
        stats = self.waits.stats()
        now = self._clock()
        recent = sum(1 for t in self._sent if t > now - self.period)
        return GateStatistics(
            name=self.name,
            in_use=recent,
            capacity=self.count or 0,
            waiting=self._waiting,
            wait_p50=stats.p50,
            wait_p95=stats.p95,
            entered=self.waits.total_count,
        )

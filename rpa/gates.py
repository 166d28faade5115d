"""Gates: bounded resources with statistics.

A `Gate` is an async context manager that bounds how many are inside, counts who is inside and
who is waiting and how long they waited, and can be narrowed while in use. `RateGate` caps the
requests to one host in any window. Both offer `statistics()` returning a frozen snapshot,
which is all the progress table reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from rpa.errors import ConfigError
from rpa.metrics import Window

__all__ = ["RAMP_INTERVAL", "RAMP_STEP", "Gate", "GateStatistics", "RateGate"]

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
        #: wait of the most recent entry, for the caller to record with its attempt
        self.last_wait = 0.0

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
        self.last_wait = waited
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


class RateGate:
    """At most `count` requests to one host in any window of `period` seconds, as the host sees it.

    arXiv's guidance for automated access is "bursts of at most 4 requests per second, then a
    1 second pause". Stamping a request when it leaves the gate is not enough: it reaches the
    server a little later (a new connection, a busy loop), and the next burst, sent on warm
    connections, can land inside the same server-side second (measured: 7 in one second).
    So a request holds one of `count` slots from the moment it may go until `period` seconds
    after its answer began (`answered()`, which the downloader calls when the response
    headers arrive, or when the request fails). Any `period` window at the server then sees
    at most `count` arrivals: if `count + 1` arrived in one window, the latest arrival would
    lie inside the slot of every one of them. FIFO: waiters queue on a lock.

    A slot belongs to the task that took it; `answered()` releases the current task's slot,
    and a task's next `acquire()` (or its end) releases one it left unanswered.
    `pause_until()` sets a cooldown every waiter respects (Retry-After).
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
        self._pending: dict[asyncio.Task[object], float] = {}  # task -> when its request left
        self._cooling: list[float] = []  # heap: when each answered slot is free again
        self._tracked: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet()
        self._answer = asyncio.Event()
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

    @property
    def paused(self) -> bool:
        """Is a cooldown still ahead?"""
        return self._paused_until > self._clock()

    def _in_use(self, now: float) -> int:
        while self._cooling and self._cooling[0] <= now:
            heapq.heappop(self._cooling)
        return len(self._pending) + len(self._cooling)

    def _delay(self, now: float) -> float | None:
        """Seconds until a request may go at `now` (0: now; None: when a slot is answered)."""
        pause = self._paused_until - now
        if self.count is None or self._in_use(now) < self.count:
            return max(0.0, pause)
        if not self._cooling:
            return None  # every slot waits for its answer
        return max(self._cooling[0] - now, pause)

    async def acquire(self) -> float:
        """Take a slot for one request (the current task's); returns the seconds waited."""
        start = self._clock()
        task = asyncio.current_task()
        self._waiting += 1
        try:
            async with self._lock:
                if task is not None:
                    self._release(task)  # its previous request, if unanswered, is over
                while (delay := self._delay(self._clock())) != 0:
                    if delay is None:
                        self._answer.clear()
                        await self._answer.wait()
                    else:
                        # waiting out a time window, not an event: a sleep is the right primitive
                        await asyncio.sleep(delay)
                if self.count is not None and task is not None:
                    self._pending[task] = self._clock()
                    if task not in self._tracked:
                        self._tracked.add(task)
                        task.add_done_callback(self._release)
        finally:
            self._waiting -= 1
        waited = self._clock() - start
        self.waits.add(waited)
        self.last_wait = waited
        return waited

    def answered(self) -> None:
        """The current task's request got its answer, or failed: its slot is free in `period`."""
        task = asyncio.current_task()
        if task is not None:
            self._release(task)

    def _release(self, task: asyncio.Task[object]) -> None:
        if self._pending.pop(task, None) is not None:
            heapq.heappush(self._cooling, self._clock() + self.period)
            self._answer.set()

    def statistics(self) -> GateStatistics:
        stats = self.waits.stats()
        return GateStatistics(
            name=self.name,
            in_use=self._in_use(self._clock()),
            capacity=self.count or 0,
            waiting=self._waiting,
            wait_p50=stats.p50,
            wait_p95=stats.p95,
            entered=self.waits.total_count,
        )

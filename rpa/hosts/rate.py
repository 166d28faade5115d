"""A host's rate cap in one process: at most N requests in any window of T seconds.

See `RateGate` for how a window is kept so that the server, not only rpa, sees at most N.
`rpa.hosts.fleet.FleetRateGate` applies the same rule across every process of a queue.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable

from rpa.errors import ConfigError
from rpa.gates import GateStatistics
from rpa.hosts.slots import TaskSlots
from rpa.metrics import Window

__all__ = ["RateGate"]


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
        self._pending: TaskSlots[float] = TaskSlots(self._release)  # -> when its request left
        self._cooling: list[float] = []  # heap: when each answered slot is free again
        self._answer = asyncio.Event()
        self._paused_until = 0.0
        self._waiting = 0
        self._lock = asyncio.Lock()
        self.waits = Window(window_seconds)

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
                    self._pending.take(task, self._clock())
        finally:
            self._waiting -= 1
        waited = self._clock() - start
        self.waits.add(waited)
        return waited

    def answered(self) -> None:
        """The current task's request got its answer, or failed: its slot is free in `period`."""
        task = asyncio.current_task()
        if task is not None:
            self._release(task)

    def _release(self, task: asyncio.Task[object]) -> None:
        if self._pending.pop(task) is not None:
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

"""One politeness budget for the whole fleet: a host's rate cap kept in the queue database.

arXiv counts all of a user's machines together, so `--rate-limits host=N/Ts` must hold across
every process that shares the queue, on every host, not per process. `FleetRateGate` takes one
of the host's N slots from the `rate_slots` table (rpa.queue.hosts.take_rate_slot) before a request
leaves, and gives it back when the answer begins, free again T seconds later by the
database's clock (one clock for all hosts). That is `rpa.hosts.rate.RateGate`'s rule, shared: a
slot's requests arrive at least T seconds apart, so any T-second window at the server sees at
most N. A process that dies holding a slot loses it after `hold` seconds (the longest a request
can wait for its answer). Within a process one task at a time asks the database (a FIFO lock),
so waiting workers cost one query per wait, not one each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rpa.gates import GateStatistics
from rpa.hosts.rate import RateGate
from rpa.hosts.slots import TaskSlots
from rpa.metrics import Window
from rpa.queue import hosts
from rpa.queue.aio import AsyncQueue

__all__ = ["FleetRateGate"]

#: the longest a waiting task sleeps before asking the database again
MAX_POLL = 1.0


class FleetRateGate:
    """At most `count` requests to `host` in any `period` seconds, across the fleet."""

    def __init__(
        self,
        host: str,
        count: int,
        period: float,
        *,
        queue: AsyncQueue,
        holder: str,
        hold: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = f"host {host}"
        self.host = host
        self.count: int | None = count
        self.period = period
        self._queue = queue
        self._holder = holder
        self._hold = hold
        self._clock = clock
        self._cooldown = RateGate(self.name, None, period)  # Retry-After pauses, locally
        self._lock = asyncio.Lock()
        self._held: TaskSlots[int] = TaskSlots(self._on_task_done)  # -> its slot's number
        self._releases: set[asyncio.Task[None]] = set()
        self._waiting = 0
        self.waits = Window(60.0)

    def pause_until(self, monotonic_deadline: float) -> None:
        self._cooldown.pause_until(monotonic_deadline)

    @property
    def paused(self) -> bool:
        return self._cooldown.paused

    @property
    def paused_until(self) -> float:
        return self._cooldown.paused_until

    async def acquire(self) -> float:
        """Take a fleet-wide slot for one request of the current task; the seconds waited."""
        start = self._clock()
        task = asyncio.current_task()
        self._waiting += 1
        try:
            if task is not None:
                await self._release(task)  # its previous request, if unanswered, is over
            async with self._lock:
                while True:
                    await self._cooldown.acquire()  # a Retry-After binds before any slot
                    slot, wait = await self._queue.run(
                        hosts.take_rate_slot, self.host, self.count or 1, self._hold,
                        self._holder,
                    )  # fmt: skip
                    if slot is not None:
                        break
                    # waiting out a time window held in the database: a sleep is right here
                    await asyncio.sleep(min(max(wait, 0.001), MAX_POLL))
        finally:
            self._waiting -= 1
        if task is not None:
            self._held.take(task, slot)
        waited = self._clock() - start
        self.waits.add(waited)
        return waited

    async def answered(self) -> None:
        """The current task's request got its answer, or failed: its slot frees in `period`."""
        task = asyncio.current_task()
        if task is not None:
            await self._release(task)

    async def _release(self, task: asyncio.Task[object]) -> None:
        slot = self._held.pop(task)
        if slot is not None:
            # shielded: a cancelled download still gives its slot back
            await asyncio.shield(
                self._queue.run(hosts.release_rate_slot, self.host, slot, self.period, self._holder)
            )

    def _on_task_done(self, task: asyncio.Task[object]) -> None:
        if task in self._held:
            release = asyncio.get_running_loop().create_task(self._release(task))
            self._releases.add(release)
            release.add_done_callback(self._releases.discard)

    def statistics(self) -> GateStatistics:
        stats = self.waits.stats()
        return GateStatistics(
            name=self.name,
            in_use=len(self._held),
            capacity=self.count or 0,
            waiting=self._waiting,
            wait_p50=stats.p50,
            wait_p95=stats.p95,
            entered=self.waits.total_count,
        )

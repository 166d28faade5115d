"""Measurements the live table and the end-of-run summary read: windows, rates, the lag probe.

All of this lives on the event loop and is cheap: appending a float to a deque. Percentiles are
computed only when a snapshot is taken (a few times a second), never per sample. Every
structure is bounded by design, however long the run: windows hold at most `maxlen` samples,
rates drop what leaves their window as they go, and the whole-run lag figures come from a
fixed-size histogram, not from a list of every sample.

One percentile method everywhere: nearest rank, half up (`nearest_rank`); the database ranks
with its SQL twin (rpa.queue.sql.rank_sql), so the live table, the summary and `rpa status`
agree on the same data.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "LagHistogram",
    "LagProbe",
    "Rate",
    "Window",
    "WindowStats",
    "nearest_rank",
    "percentile",
]


def nearest_rank(q_permille: int, n: int) -> int:
    """The index of the quantile `q` (in thousandths: 500 = median) in a sorted list of `n`
    values: nearest rank, half up."""
    return (q_permille * (n - 1) + 500) // 1000


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 if empty; `q` in 0..1)."""
    if not sorted_values:
        return 0.0
    return sorted_values[nearest_rank(round(q * 1000), len(sorted_values))]


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Percentiles of some samples; `count == 0` means no data (shown as "—", not 0)."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, sorted_values: list[float]) -> WindowStats:
        """The statistics of an already sorted list."""
        return cls(
            count=len(sorted_values),
            p50=percentile(sorted_values, 0.50),
            p95=percentile(sorted_values, 0.95),
            p99=percentile(sorted_values, 0.99),
            max=sorted_values[-1] if sorted_values else 0.0,
        )


class Window:
    """Samples over the last `seconds` (and at most `maxlen` of them)."""

    def __init__(
        self,
        seconds: float = 60.0,
        maxlen: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=maxlen)
        self.total_count = 0
        self.all_time_max = 0.0

    def add(self, value: float) -> None:
        self._samples.append((self._clock(), value))
        self.total_count += 1
        self.all_time_max = max(self.all_time_max, value)

    def _trim(self) -> None:
        horizon = self._clock() - self.seconds
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def stats(self) -> WindowStats:
        self._trim()
        return WindowStats.of(sorted(v for _, v in self._samples))


class Rate:
    """Amounts per second over a sliding window (papers, pages, bytes). What leaves the
    window is dropped as new amounts arrive, so it holds one window's events at most."""

    def __init__(self, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._events: deque[tuple[float, float]] = deque()
        self._sum = 0.0
        self._started = clock()
        self.total = 0.0

    def _trim(self, now: float) -> None:
        horizon = now - self.seconds
        while self._events and self._events[0][0] < horizon:
            self._sum -= self._events.popleft()[1]

    def add(self, amount: float = 1.0) -> None:
        now = self._clock()
        self._events.append((now, amount))
        self._sum += amount
        self.total += amount
        self._trim(now)

    def per_second(self) -> float:
        now = self._clock()
        self._trim(now)
        span = min(self.seconds, max(now - self._started, 1e-9))
        return max(self._sum, 0.0) / span


class LagHistogram:
    """Every lag sample of a run in a fixed-size log-scale histogram: bins 2% wide from 1 µs
    to over an hour (~1,100 counters, whatever the run's length), exact count and max."""

    GROWTH = 1.02
    FLOOR = 1e-6
    BINS = 1100

    def __init__(self) -> None:
        self._counts = [0] * self.BINS
        self.count = 0
        self.max = 0.0
        self._log = math.log(self.GROWTH)

    def add(self, value: float) -> None:
        if value <= self.FLOOR:
            index = 0
        else:
            index = min(self.BINS - 1, 1 + int(math.log(value / self.FLOOR) / self._log))
        self._counts[index] += 1
        self.count += 1
        self.max = max(self.max, value)

    def _value(self, index: int) -> float:
        """A bin's upper edge (never above the largest sample seen)."""
        return 0.0 if index == 0 else min(self.max, self.FLOOR * self.GROWTH**index)

    def quantile(self, q_permille: int) -> float:
        """The nearest-rank quantile, to the bin's 2% (0.0 without samples)."""
        if self.count == 0:
            return 0.0
        rank = nearest_rank(q_permille, self.count)
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen > rank:
                return self._value(index)
        return self.max

    def stats(self) -> WindowStats:
        return WindowStats(
            count=self.count,
            p50=self.quantile(500),
            p95=self.quantile(950),
            p99=self.quantile(990),
            max=self.max,
        )


class LagProbe:
    """Event-loop lag: sleep `interval`, record how late we woke up.

    A loop that something blocks wakes late by exactly as long as it was blocked, so this is the
    judge of "never block the loop". The last minute is kept as samples (the live table); the
    whole run, its start included (as the live table's first minute and an outside probe see
    it), as a histogram (the summary).
    """

    def __init__(self, interval: float = 0.01, window_seconds: float = 60.0) -> None:
        self.interval = interval
        self.window = Window(window_seconds, maxlen=int(window_seconds / interval) + 100)
        self.whole_run = LagHistogram()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - start - self.interval)
            self.window.add(lag)
            self.whole_run.add(lag)

    def summary(self) -> WindowStats:
        """Whole-run lag."""
        return self.whole_run.stats()

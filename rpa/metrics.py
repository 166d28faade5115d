"""Measurements the live table and the end-of-run summary read: sliding windows and the lag probe.

All of this lives on the event loop and is cheap: appending a float to a deque. Percentiles are
computed only when a snapshot is taken (a few times a second), never per sample.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LagProbe", "Rate", "Window", "WindowStats", "percentile"]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 if empty)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclass(frozen=True, slots=True)
class WindowStats:
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
    """Amounts per second over a sliding window (papers, pages, bytes)."""

    def __init__(self, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._events: deque[tuple[float, float]] = deque()
        self._started = clock()
        self.total = 0.0

    def add(self, amount: float = 1.0) -> None:
        self._events.append((self._clock(), amount))
        self.total += amount

    def per_second(self) -> float:
        now = self._clock()
        horizon = now - self.seconds
        while self._events and self._events[0][0] < horizon:
            self._events.popleft()
        span = min(self.seconds, max(now - self._started, 1e-9))
        return sum(a for _, a in self._events) / span


class LagProbe:
    """Event-loop lag: sleep `interval`, record how late we woke up.

    A loop that something blocks wakes late by exactly as long as it was blocked, so this is the
    judge of "never block the loop".
    """

    def __init__(self, interval: float = 0.01, window_seconds: float = 60.0) -> None:
        self.interval = interval
        self.window = Window(window_seconds, maxlen=200_000)
        self.all_samples: list[float] = []  # every sample of the run, for the summary

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - start - self.interval)
            self.window.add(lag)
            self.all_samples.append(lag)

    def summary(self, skip_seconds: float = 0.0) -> WindowStats:
        """Whole-run lag, leaving out the first `skip_seconds` (start-up)."""
        skip = int(skip_seconds / self.interval)
        return WindowStats.of(sorted(self.all_samples[skip:]))

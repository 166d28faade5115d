"""Gates bound concurrency and report it; the GCRA rate gate spaces requests (injected clock)."""

from __future__ import annotations

import asyncio

import pytest

from rpa.errors import ConfigError
from rpa.gates import Gate, RateGate


async def test_gate_never_exceeds_capacity_and_counts_waiters() -> None:
    gate = Gate("download", 3)
    inside = 0
    most = 0
    release = asyncio.Event()

    async def holder() -> None:
        nonlocal inside, most
        async with gate:
            inside += 1
            most = max(most, inside)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(holder()) for _ in range(10)]
    # one loop iteration runs every new task up to the point where it blocks: the gate
    await asyncio.sleep(0)
    stats = gate.statistics()
    assert (stats.in_use, stats.capacity, stats.waiting) == (3, 3, 7)
    release.set()
    await asyncio.gather(*tasks)
    assert most == 3
    final = gate.statistics()
    assert (final.in_use, final.waiting, final.entered) == (0, 0, 10)
    assert final.wait_p95 >= final.wait_p50 >= 0.0


def test_gate_capacity_is_validated() -> None:
    with pytest.raises(ConfigError):
        Gate("x", 0)


class FakeClock:
    """Injected clock: asyncio.sleep is patched to advance it, so no real time passes."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now


async def test_rate_gate_allows_a_burst_then_spaces_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        clock.sleeps.append(delay)
        clock.now += delay
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    gate = RateGate("host", count=4, period=1.0, clock=clock)
    times = []
    for _ in range(12):
        await gate.acquire()
        times.append(clock.now)
    # arXiv's pattern: a burst of 4, a pause, the next burst one second after the first
    assert times == [1000.0] * 4 + [1001.0] * 4 + [1002.0] * 4
    # never more than 4 requests in any window of one second
    for t in times:
        assert sum(1 for u in times if t <= u < t + 1.0) <= 4


async def test_rate_gate_pause_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        clock.now += delay
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    gate = RateGate("host", count=10, period=1.0, clock=clock)
    gate.pause_until(clock.now + 30)
    await gate.acquire()
    assert clock.now >= 1030.0

"""Gates bound concurrency and report it; the GCRA rate gate spaces requests (injected clock)."""

from __future__ import annotations

import asyncio

import pytest

from rpa.errors import ConfigError
from rpa.gates import Gate
from rpa.hosts.rate import RateGate


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


async def test_a_narrowed_gate_lets_in_no_one_new_but_never_less_than_one() -> None:
    gate = Gate("extract", 3)
    release = [asyncio.Event() for _ in range(6)]
    inside: list[int] = []

    async def holder(i: int) -> None:
        async with gate:
            inside.append(i)
            await release[i].wait()
            inside.remove(i)

    tasks = [asyncio.create_task(holder(i)) for i in range(6)]
    await asyncio.sleep(0)
    assert inside == [0, 1, 2]
    gate.set_limit(0)  # as the memory governor does under pressure: at least one stays allowed
    assert gate.statistics().capacity == 1
    release[0].set()
    release[1].set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert inside == [2]  # two left, nobody came in: 1 is inside, the limit is 1
    release[2].set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert inside == [3]  # the gate empty: one may always go in (no deadlock)
    gate.set_limit(3)  # widened again: the waiters come in, in order
    for _ in range(5):
        await asyncio.sleep(0)
    assert inside == [3, 4, 5]
    for event in release:
        event.set()
    await asyncio.gather(*tasks)
    assert gate.statistics().in_use == 0


async def test_a_waiter_cancelled_while_being_let_in_gives_its_place_back() -> None:
    gate = Gate("x", 1)
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    gate.release()  # the slot is handed to the waiter ...
    waiter.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert gate.statistics().in_use == 0
    await asyncio.wait_for(gate.acquire(), 1)  # the place was given back


async def test_a_ramp_opens_the_gate_step_by_step_to_its_capacity() -> None:
    gate = Gate("download", 7)
    seen: list[int] = []
    original = gate.set_limit

    def record(limit: int) -> None:
        original(limit)
        seen.append(gate.limit)

    gate.set_limit = record  # type: ignore[method-assign]
    await gate.ramp(2, 2, 0.0)
    assert seen == [2, 4, 6, 7]  # capped at the capacity


async def test_a_ramp_gives_way_to_whoever_sets_the_limit_meanwhile() -> None:
    gate = Gate("download", 64)
    ramp = asyncio.create_task(gate.ramp(8, 8, 0.0))
    await asyncio.sleep(0)  # the ramp has set its start and sleeps
    assert gate.limit == 8
    gate.set_limit(3)  # someone else narrows it
    await ramp
    assert gate.limit == 3

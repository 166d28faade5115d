"""One run's figures from several conductor processes' (`--processes N`: rpa.run.processes).

Each process of the group runs its own loop, gates and extraction processes on the one queue,
and reports its snapshot (while it runs) and its summary (when it ends). These functions add
them up into the one snapshot the live table draws and the one summary the run ends with:
counts and capacities are summed, the queue's totals are the newest report's (each reads the
whole queue), rates are summed. Percentiles cannot be added: a merged p50 is the processes'
p50s weighted by their sample counts, and a p95, p99 or max is the highest of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from rpa.gates import GateStatistics
from rpa.metrics import WindowStats
from rpa.run.snapshot import (
    FailureSnapshot,
    MemorySnapshot,
    PoolStatistics,
    RunSnapshot,
    RunSummary,
    StageSnapshot,
)

__all__ = ["merge_snapshots", "merge_summaries", "merge_windows"]

T = TypeVar("T")

#: a merged run's status: the first of these that any process ended with
_STATUS_ORDER = ("crashed", "denied", "unreachable", "interrupted", "declared_dead", "finished")
_MEMORY_STATES = ("ok", "paused", "shedding")


def merge_windows(windows: Iterable[WindowStats]) -> WindowStats:
    """Several processes' percentiles as one (see the module's doc)."""
    some = [w for w in windows if w.count]
    if not some:
        return WindowStats(0, 0.0, 0.0, 0.0, 0.0)
    count = sum(w.count for w in some)
    return WindowStats(
        count=count,
        p50=sum(w.p50 * w.count for w in some) / count,
        p95=max(w.p95 for w in some),
        p99=max(w.p99 for w in some),
        max=max(w.max for w in some),
    )


def _combined(
    parts: Iterable[Iterable[T]], key: Callable[[T], str], add: Callable[[T, T], T]
) -> list[T]:
    """The items of every part, those with the same key added up (`add(had, new)`), in the
    order their keys first came."""
    by_key: dict[str, T] = {}
    for items in parts:
        for item in items:
            k = key(item)
            by_key[k] = add(by_key[k], item) if k in by_key else item
    return list(by_key.values())


def _gates(parts: Sequence[Sequence[GateStatistics]]) -> list[GateStatistics]:
    return _combined(parts, lambda g: g.name, lambda had, g: GateStatistics(
        g.name, had.in_use + g.in_use, had.capacity + g.capacity, had.waiting + g.waiting,
        max(had.wait_p50, g.wait_p50), max(had.wait_p95, g.wait_p95), had.entered + g.entered,
    ))  # fmt: skip


def _stages(parts: Sequence[Sequence[StageSnapshot]]) -> list[StageSnapshot]:
    names: list[str] = []
    for stages in parts:
        names += [s.name for s in stages if s.name not in names]
    merged = []
    for name in names:
        same = [s for stages in parts for s in stages if s.name == name]
        merged.append(StageSnapshot(
            name, sum(s.running for s in same), sum(s.done for s in same),
            sum(s.failed for s in same), sum(s.retried for s in same),
            merge_windows(s.durations for s in same), sum(s.uncounted for s in same),
        ))  # fmt: skip
    return merged


def _pool(pools: Sequence[PoolStatistics]) -> PoolStatistics:
    first = pools[0]
    summed = {
        f.name: sum(getattr(p, f.name) for p in pools)
        for f in dataclasses.fields(first)
        if f.name != "mode"
    }
    return dataclasses.replace(first, **summed)


def _memory(parts: Sequence[MemorySnapshot | None]) -> MemorySnapshot | None:
    some = [m for m in parts if m is not None]
    if not some:
        return None
    newest = some[-1]  # the machine's (or cgroup's) memory: each process reads the same
    return dataclasses.replace(
        newest,
        state=max((m.state for m in some), key=_MEMORY_STATES.index),
        pauses=sum(m.pauses for m in some),
        paused_seconds=max(m.paused_seconds for m in some),
        shed=sum(m.shed for m in some),
        recycled=sum(m.recycled for m in some),
        extract_limit=sum(m.extract_limit for m in some),
    )


def _failures(parts: Sequence[Sequence[FailureSnapshot]]) -> list[FailureSnapshot]:
    merged = _combined(parts, lambda f: f.kind, lambda had, f: FailureSnapshot(
        f.kind, had.failed + f.failed, had.retried + f.retried, f.last or had.last
    ))  # fmt: skip
    return sorted(merged, key=lambda f: -(f.failed + f.retried))


def merge_snapshots(snaps: Sequence[RunSnapshot], run_id: str, elapsed: float) -> RunSnapshot:
    """The group's snapshot from its processes' latest (at least one), newest last."""
    newest = snaps[-1]
    rate = sum(s.papers_per_min for s in snaps)
    remaining = newest.totals.remaining
    messages = [m for s in snaps for m in s.messages]
    return RunSnapshot(
        run_id=run_id,
        elapsed=elapsed,
        gates=_gates([s.gates for s in snaps]),
        stages=_stages([s.stages for s in snaps]),
        totals=newest.totals,
        papers_per_min=rate,
        pages_per_s=sum(s.pages_per_s for s in snaps),
        mb_per_s=sum(s.mb_per_s for s in snaps),
        eta_seconds=remaining / rate * 60 if rate > 0 and remaining else None,
        lag=merge_windows(s.lag for s in snaps),
        workers_busy=sum(s.workers_busy for s in snaps),
        workers_total=sum(s.workers_total for s in snaps),
        pool=_pool([s.pool for s in snaps]),
        done_this_run=sum(s.done_this_run for s in snaps),
        failed_this_run=sum(s.failed_this_run for s in snaps),
        stopping=any(s.stopping for s in snaps),
        messages=messages[-8:],
        waiting=next((s.waiting for s in snaps if s.waiting), None),
        memory=_memory([s.memory for s in snaps]),
        failures=_failures([s.failures for s in snaps]),
    )


def merge_summaries(
    parts: Sequence[RunSummary], run_id: str, wall: float, messages: Sequence[str] = ()
) -> RunSummary:
    """The group's summary from its processes' (at least one), the last to end last: its
    totals and the jobs it saw held elsewhere are the queue's at the group's end."""
    last = parts[-1]
    failures: dict[str, int] = {}
    reasons: dict[str, str] = {}
    for p in parts:
        for kind, n in p.failures.items():
            failures[kind] = failures.get(kind, 0) + n
        reasons.update(p.reasons)
    slowest = sorted((s for p in parts for s in p.slowest), key=lambda s: -s[1])
    return RunSummary(
        run_id=run_id,
        status=min((p.status for p in parts), key=_status_rank),
        done=sum(p.done for p in parts),
        failed=sum(p.failed for p in parts),
        totals=last.totals,
        wall_seconds=wall,
        lag=merge_windows(p.lag for p in parts),
        failures=failures,
        reasons=reasons,
        slowest=slowest[: max((len(p.slowest) for p in parts), default=0)],
        stages=_stages([p.stages for p in parts]),
        messages=[*messages, *(m for p in parts for m in p.messages)],
        held_elsewhere=last.held_elsewhere,
        crash=next((p.crash for p in parts if p.crash), None),
        memory=_memory([p.memory for p in parts]),
        stamp_mismatches=sum(p.stamp_mismatches for p in parts),
        stamp_examples=[e for p in parts for e in p.stamp_examples][:5],
    )


def _status_rank(status: str) -> int:
    return _STATUS_ORDER.index(status) if status in _STATUS_ORDER else 0

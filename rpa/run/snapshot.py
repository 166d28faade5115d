"""Plain-data snapshots of a run: what the live table, the log lines and the summary render.

Rendering is a pure function of one of these, so it can be tested without a run and costs the
loop only the copy of a few numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rpa.gates import GateStatistics
from rpa.metrics import WindowStats
from rpa.queue.model import Totals

__all__ = ["MemorySnapshot", "PoolSnapshot", "RunSnapshot", "StageSnapshot", "Totals"]


@dataclass(frozen=True, slots=True)
class StageSnapshot:
    """One stage of this run: attempts running now, counts so far, recent durations."""

    name: str  # download | extract | outcome
    running: int
    done: int
    failed: int
    retried: int
    durations: WindowStats


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """The extraction workers: configured, alive, busy; replaced/crashed/timed out so far."""

    mode: str
    workers: int
    alive: int
    busy: int
    replaced: int
    crashed: int
    timed_out: int


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    """The memory governor: memory in use against the limit that binds, and what it did."""

    used: int  # bytes
    limit: int  # bytes
    source: str  # cgroup | machine
    state: str  # ok | paused | shedding
    pauses: int
    paused_seconds: float
    shed: int  # extraction processes killed for memory (their papers retried)
    recycled: int  # extraction processes replaced for having grown past --extract-recycle-mb
    extract_limit: int  # the extract gate's capacity now (narrowed after a shed)


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """Everything the live table, a progress line and `rpa_live_*` metrics show, as plain
    data, taken on the loop in about half a millisecond."""

    run_id: str
    elapsed: float
    gates: list[GateStatistics]
    stages: list[StageSnapshot]
    totals: Totals
    papers_per_min: float
    pages_per_s: float
    mb_per_s: float
    eta_seconds: float | None
    lag: WindowStats
    workers_busy: int
    workers_total: int
    pool: PoolSnapshot
    done_this_run: int
    failed_this_run: int
    stopping: bool = False
    messages: list[str] = field(default_factory=list)
    #: what the run is waiting for, and until when, when it waits (disk space, a cooldown)
    waiting: str | None = None
    memory: MemorySnapshot | None = None

"""Plain data of a run: the snapshots the live table and log lines render while it goes, and
the summary of how it ended.

Rendering is a pure function of one of these, so it can be tested without a run and costs the
loop only the copy of a few numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rpa.extract.pool import PoolStatistics
from rpa.gates import GateStatistics
from rpa.metrics import WindowStats
from rpa.queue.model import Totals

__all__ = [
    "ELSEWHERE",
    "FailureSnapshot",
    "MemorySnapshot",
    "PoolStatistics",
    "RunSnapshot",
    "RunSummary",
    "StageSnapshot",
    "Totals",
]

#: how a run's end says the jobs other live runs hold ("N jobs " before it)
ELSEWHERE = "are in progress in another live run"


@dataclass(frozen=True, slots=True)
class StageSnapshot:
    """One stage of this run: attempts running now, counts so far, recent durations."""

    name: str  # download | extract | outcome
    running: int
    done: int
    failed: int
    retried: int  # retries charged to their papers (towards --max-attempts)
    durations: WindowStats
    #: retries not charged to their papers (rpa.run.policy): their host was down, their
    #: extraction process was shed for memory or died among others (the machine's, maybe)
    uncounted: int = 0


@dataclass(frozen=True, slots=True)
class FailureSnapshot:
    """One failure kind in this run: papers failed for good, attempts given back to be tried
    again, and the last reason seen (the paper's ID, then the message), whole."""

    kind: str
    failed: int
    retried: int
    last: str


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
    pool: PoolStatistics
    done_this_run: int
    failed_this_run: int
    stopping: bool = False
    messages: list[str] = field(default_factory=list)
    #: what the run is waiting for, and until when, when it waits (disk space, a cooldown)
    waiting: str | None = None
    memory: MemorySnapshot | None = None
    #: every failure kind met this run (retried or failed for good), most papers first
    failures: list[FailureSnapshot] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    status: str  # finished | interrupted | denied | unreachable | crashed
    done: int
    failed: int
    totals: Totals
    wall_seconds: float
    lag: WindowStats
    failures: dict[str, int]
    #: the last reason of each failure kind, of a paper failed for good (its ID, then the
    #: message), whole
    reasons: dict[str, str]
    #: the papers whose own work took longest: (id, work seconds, seconds spent waiting)
    slowest: list[tuple[str, float, float]]
    stages: list[StageSnapshot]
    messages: list[str]
    #: jobs leased by another live run at the end (two runs sharing one queue)
    held_elsewhere: int = 0
    #: what ended a crashed run
    crash: str | None = None
    #: what the memory governor did over the run
    memory: MemorySnapshot | None = None
    #: papers whose PDF's arXiv stamp names another paper (checks.stamp_mismatch), a few
    stamp_mismatches: int = 0
    stamp_examples: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """130 interrupted; 75 declared dead (another run took this run's jobs: try again
        later, `rpa resume` waits for them); 1 if anything failed, the run crashed, a host
        refused us or was never reachable, or work is left that no live run holds; else 0
        (jobs another live run is finishing are not a failure)."""
        if self.status == "interrupted":
            return 130
        if self.status == "declared_dead":
            return 75
        left_over = self.totals.remaining - self.held_elsewhere
        if (
            self.status in ("denied", "unreachable", "crashed")
            or self.totals.failed
            or left_over > 0
        ):
            return 1
        return 0

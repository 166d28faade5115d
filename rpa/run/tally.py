"""What a run has done so far: counters, stage meters, failures by kind, attempts to write.

The job processor writes these and the runner's snapshot reads them, on the one loop thread;
every structure is bounded however long the run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from rpa.metrics import Rate, Window
from rpa.queue.model import Attempt
from rpa.run.snapshot import StageSnapshot

__all__ = ["STAGES", "StageMeter", "Tally"]

STAGES = ("download", "extract", "outcome")
#: papers kept for "slowest papers" (the top 5 are shown)
SLOWEST_KEPT = 10


class StageMeter:
    """Counts and recent durations of one stage, for the live table."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.running = 0
        self.done = 0
        self.failed = 0
        self.retried = 0
        self.durations = Window(120.0)

    def snapshot(self) -> StageSnapshot:
        return StageSnapshot(
            self.name, self.running, self.done, self.failed, self.retried, self.durations.stats()
        )


class Tally:
    """The run's counts: jobs taken, done, failed, given back; failures by kind with one
    message each; the slowest papers; throughput; attempts not yet written."""

    def __init__(self) -> None:
        self.meters = {name: StageMeter(name) for name in STAGES}
        self.papers = Rate(60.0)
        self.pages = Rate(60.0)
        self.bytes = Rate(60.0)
        self.taken = 0  # jobs this run took from `queued`, less those it gave back unchanged
        self.done = 0
        self.failed = 0
        self.retried = 0  # jobs this run gave back to wait for a retry
        self.failures: Counter[str] = Counter()
        self.reasons: dict[str, str] = {}  # kind -> the message of its first failure
        self.slowest: list[tuple[str, float]] = []
        self.attempts: list[Attempt] = []  # written at each heartbeat
        #: called with each job that became done (the user stages' phase takes it from there)
        self.on_finished: list[Callable[[str], None]] = []

    def finished(self, job_id: str, seconds: float) -> None:
        self.done += 1
        self.papers.add()
        self.slowest.append((job_id, seconds))
        if len(self.slowest) > 5 * SLOWEST_KEPT:
            self.slowest = sorted(self.slowest, key=lambda x: -x[1])[:SLOWEST_KEPT]
        for hook in self.on_finished:
            hook(job_id)

    def failed_for_good(self, kind: str, message: str) -> None:
        self.failed += 1
        self.failures[kind] += 1
        self.reasons.setdefault(kind, message)

    def take_attempts(self) -> list[Attempt]:
        rows, self.attempts = self.attempts, []
        return rows

    def top_slowest(self, n: int = 5) -> list[tuple[str, float]]:
        return sorted(self.slowest, key=lambda x: -x[1])[:n]

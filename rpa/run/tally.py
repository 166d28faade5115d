"""What a run has done so far: counters, stage meters, failures by kind, attempts to write.

The job processor writes these and the runner's snapshot reads them, on the one loop thread;
every structure is bounded however long the run (the failure kinds are rpa.errors.KINDS; the
work of a paper is kept only while the paper is in hand).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable

from rpa.metrics import Rate, Window
from rpa.queue.model import Attempt
from rpa.run.snapshot import FailureSnapshot, StageSnapshot

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
        self.retried = 0  # charged to the paper
        self.uncounted = 0  # retries not charged: the host down, a shed, the machine's
        self.durations = Window(120.0)

    def snapshot(self) -> StageSnapshot:
        return StageSnapshot(
            self.name, self.running, self.done, self.failed, self.retried,
            self.durations.stats(), self.uncounted,
        )  # fmt: skip


class Tally:
    """The run's counts: jobs taken, done, failed, given back; failures by kind with the last
    reason of each; the papers whose work was slowest; throughput; attempts not yet written."""

    def progress(self, waiting: int = 0) -> tuple[int, ...]:
        """The papers under way in a stage now (less `waiting`: those in a stage that only
        wait at a host's gate), then each stage's count of ends: unchanged and none under
        way, nothing the workers hold is moving (rpa.run.feeder)."""
        meters = self.meters.values()
        running = sum(m.running for m in meters) - waiting
        return (running, *(m.done + m.failed + m.retried + m.uncounted for m in meters))

    def __init__(self) -> None:
        self.meters = {name: StageMeter(name) for name in STAGES}
        self.papers = Rate(60.0)
        self.pages = Rate(60.0)
        self.bytes = Rate(60.0)
        self.taken = 0  # jobs this run took from `queued`, less those it gave back unchanged
        self.done = 0
        self.failed = 0
        self.retried = 0  # jobs this run gave back to wait for a retry
        self.failures: Counter[str] = Counter()  # kind -> papers failed for good
        self.retries: Counter[str] = Counter()  # kind -> attempts given back for a retry
        #: kind -> "<id>: <message>" of its last failure for good (the summary's)
        self.reasons: dict[str, str] = {}
        #: kind -> "<id>: <message>" of its last failure, for good or to be retried (the table's)
        self.last_seen: dict[str, str] = {}
        #: (id, work seconds, waiting seconds) of finished papers, the slowest work kept
        self.slowest: list[tuple[str, float, float]] = []
        self.attempts: list[Attempt] = []  # written at each heartbeat
        self._work: defaultdict[str, float] = defaultdict(float)  # papers in hand: work so far
        #: papers whose PDF carries another paper's arXiv stamp, and the first few of them
        self.stamp_mismatches = 0
        self.stamp_examples: list[str] = []
        #: called with each job that became done (the user stages' phase takes it from there)
        self.on_finished: list[Callable[[str], None]] = []

    def attempt(self, row: Attempt) -> None:
        """An attempt at one stage of a paper: to be written, and its own time (not its wait)
        counted to the paper's work."""
        self.attempts.append(row)
        self._work[row.job_id] += row.duration

    def finished(self, job_id: str, seconds: float) -> None:
        """A paper done, `seconds` after it was taken: its work is the sum of its attempts'
        own time, the rest it spent waiting (gates, the pool, the database)."""
        self.done += 1
        self.papers.add()
        work = self._work.pop(job_id, 0.0)
        self.slowest.append((job_id, work, max(0.0, seconds - work)))
        if len(self.slowest) > 5 * SLOWEST_KEPT:
            self.slowest = self.top_slowest(SLOWEST_KEPT)
        for hook in self.on_finished:
            hook(job_id)

    def let_go(self, job_id: str) -> None:
        """The paper left this worker's hands (done, failed, given back): forget its work."""
        self._work.pop(job_id, None)

    def checked(self, job_id: str, stamped: str | None) -> None:
        """Count what a done paper's record flags (checks.stamp_mismatch: the ID its PDF's
        arXiv stamp names instead of its own)."""
        if stamped:
            self.stamp_mismatches += 1
            if len(self.stamp_examples) < 5:
                self.stamp_examples.append(f"{job_id} (stamp: {stamped})")

    def failed_for_good(self, kind: str, message: str, job_id: str = "") -> None:
        self.failed += 1
        self.failures[kind] += 1
        self.reasons[kind] = self.last_seen[kind] = f"{job_id}: {message}" if job_id else message

    def retry_later(self, kind: str, message: str, job_id: str = "") -> None:
        """An attempt failed and the paper waits for another: counted, its reason kept."""
        self.retried += 1
        self.retries[kind] += 1
        self.last_seen[kind] = f"{job_id}: {message}" if job_id else message

    def failure_snapshot(self) -> list[FailureSnapshot]:
        """Every kind met this run, the most papers first."""
        kinds = sorted(
            set(self.failures) | set(self.retries),
            key=lambda k: (-(self.failures[k] + self.retries[k]), k),
        )
        return [
            FailureSnapshot(k, self.failures[k], self.retries[k], self.last_seen.get(k, ""))
            for k in kinds
        ]

    def take_attempts(self) -> list[Attempt]:
        rows, self.attempts = self.attempts, []
        return rows

    def top_slowest(self, n: int = 5) -> list[tuple[str, float, float]]:
        """The `n` finished papers whose own work took longest."""
        return sorted(self.slowest, key=lambda x: -x[1])[:n]

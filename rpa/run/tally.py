"""What a run has done so far, and what it has to say: counters, stage meters, notices.

The job processor writes these and the runner's snapshot reads them, on the one loop thread;
every structure is bounded however long the run.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable

from rpa.metrics import Rate, Window
from rpa.queue.model import Attempt
from rpa.run.snapshot import StageSnapshot

__all__ = ["STAGES", "Notices", "StageMeter", "Tally"]

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


class Notices:
    """What the run has to tell the user, newest last: a bounded list, and `on_new` called
    with each new one (to print it when no live table shows it). `key` lets a notice be said
    once (a wait that goes on is said once, not every second)."""

    def __init__(self, on_new: Callable[[str], None] | None = None, keep: int = 100) -> None:
        self._recent: deque[str] = deque(maxlen=keep)
        self._said: OrderedDict[str, None] = OrderedDict()
        self.on_new = on_new

    def add(self, text: str, *, key: str | None = None) -> None:
        if key is not None:
            if key in self._said:
                return
            self._said[key] = None
            while len(self._said) > 1000:
                self._said.popitem(last=False)
        self._recent.append(text)
        if self.on_new is not None:
            self.on_new(text)

    def forget(self, key: str) -> None:
        """Let the notice of `key` be said again (the condition ended)."""
        self._said.pop(key, None)

    def recent(self, n: int) -> list[str]:
        return list(self._recent)[-n:]


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

    def finished(self, job_id: str, seconds: float) -> None:
        self.done += 1
        self.papers.add()
        self.slowest.append((job_id, seconds))
        if len(self.slowest) > 5 * SLOWEST_KEPT:
            self.slowest = sorted(self.slowest, key=lambda x: -x[1])[:SLOWEST_KEPT]

    def failed_for_good(self, kind: str, message: str) -> None:
        self.failed += 1
        self.failures[kind] += 1
        self.reasons.setdefault(kind, message)

    def take_attempts(self) -> list[Attempt]:
        rows, self.attempts = self.attempts, []
        return rows

    def top_slowest(self, n: int = 5) -> list[tuple[str, float]]:
        return sorted(self.slowest, key=lambda x: -x[1])[:n]

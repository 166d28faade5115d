"""The run's progress as it goes: the queue totals kept current between heartbeats, what the
run waits for, and the `RunSnapshot` the live table, the log lines and the metrics render.

A snapshot is taken on the loop in about half a millisecond: it copies numbers the parts of
the run keep (gates, meters, the pool, the governor), and never asks the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rpa.extract.pool import ExtractPool
from rpa.gates import GateStatistics
from rpa.hosts.health import HostHealth
from rpa.metrics import LagProbe, WindowStats
from rpa.notices import Notices
from rpa.queue.model import Totals, Wait
from rpa.queue.outage import QueueOutage
from rpa.run.disk import DiskGuard
from rpa.run.feeder import Feeder
from rpa.run.job import JobGates
from rpa.run.memory import MemoryGovernor
from rpa.run.snapshot import RunSnapshot
from rpa.run.tally import Tally
from rpa.units import gib

__all__ = ["Progress"]


class Progress:
    """Reads the parts of one run into snapshots; keeps the queue's totals current."""

    def __init__(
        self,
        *,
        run_id: str,
        workers: int,
        gates: JobGates,
        network: bool,
        more_gates: Callable[[], list[GateStatistics]],
        hosts: HostHealth,
        pool: ExtractPool,
        feeder: Feeder,
        disk: DiskGuard,
        governor: MemoryGovernor,
        tally: Tally,
        notices: Notices,
        probe: Callable[[], LagProbe],
        outage: QueueOutage | None = None,
    ) -> None:
        self._run_id = run_id
        self._workers = workers
        self._gates = gates
        self._network = network
        self._more_gates = more_gates
        self._hosts = hosts
        self._pool = pool
        self._feeder = feeder
        self._disk = disk
        self._governor = governor
        self._tally = tally
        self._notices = notices
        self._probe = probe
        self._outage = outage
        self.started = time.monotonic()
        self.totals = Totals()
        self._beat = (0, 0, 0, 0)  # taken, done, failed, retried when self.totals was read
        self._lag_stats: WindowStats | None = None
        self._lag_at = 0.0
        self._began: float | None = None  # when the run began to wait (time.monotonic())

    def set_totals(self, totals: Totals) -> None:
        """The queue's totals as just read (at a heartbeat, at the start and the end)."""
        t = self._tally
        self.totals = totals
        self._beat = (t.taken, t.done, t.failed, t.retried)

    def fresh_totals(self) -> Totals:
        """The queue totals of the last heartbeat, moved on by what this run did since: jobs
        it took left `queued` for `in_progress`, and those it finished or gave back for a
        retry left `in_progress` (other runs' moves show at the next heartbeat)."""
        t, tally = self.totals, self._tally
        taken, done, failed, retried = (
            now - then
            for now, then in zip(
                (tally.taken, tally.done, tally.failed, tally.retried), self._beat, strict=True
            )
        )
        return Totals(
            queued=max(0, t.queued - taken),
            in_progress=max(0, t.in_progress + taken - done - failed - retried),
            retry_scheduled=t.retry_scheduled + retried,
            done=t.done + done,
            failed=t.failed + failed,
        )

    def _lag(self) -> WindowStats:
        """The probe's last minute (~6,000 samples to sort, ~0.5 ms of loop), at most once a
        second: the live table asks four times a second."""
        now = time.monotonic()
        if self._lag_stats is None or now - self._lag_at >= 1.0:
            self._lag_stats, self._lag_at = self._probe().window.stats(), now
        return self._lag_stats

    def _waits(self) -> tuple[str | None, list[str]]:
        """(the queue database's wait, the others: the disk, hosts, memory, the next retry)."""
        db = self._outage.statistics() if self._outage is not None else None
        database = None
        if db is not None and db.since is not None:
            when = time.strftime("%H:%M:%S", time.localtime(db.since))
            database = f"the queue database, unavailable since {when} ({db.reason}); " \
                f"{db.waiting} calls wait"  # fmt: skip
        waits = [self._disk.low] if self._disk.low else []
        waits += self._hosts.waits()
        governor, m = self._governor, self._governor.reading
        if governor.state != "ok" and m is not None:
            waits.append(
                f"memory to fall under --memory-resume {governor.resume:.0%}: {gib(m.used)} GiB "
                f"of {gib(m.limit)} GiB in use ({m.source}, {m.fraction:.0%}), over "
                f"--memory-pause {governor.pause:.0%}: no new extraction or download starts"
            )
        feeder = self._feeder
        if feeder.idle_until is not None and feeder.all_idle:
            when = time.strftime("%H:%M:%S", time.localtime(feeder.idle_until))
            waits.append(f"the next retry, due {when}")
        if not waits:
            self._began = None
        elif self._began is None:
            self._began = time.monotonic()
        return database, waits

    def waiting(self) -> str | None:
        """What the run waits for now, and until when, if it waits (the live table's line)."""
        database, waits = self._waits()
        return "; ".join([database, *waits] if database else waits) or None

    def wait(self) -> Wait | None:
        """What the run waits for, for its row in the queue (`rpa status`), and since when (as
        first seen here: at the live table's refresh or the heartbeat, whichever came first).
        Not the database: a wait for it cannot be written to it, and is over once written."""
        _, waits = self._waits()
        began = self._began
        return Wait("; ".join(waits), began) if waits and began is not None else None

    def snapshot(self) -> RunSnapshot:
        stats = self._pool.statistics()
        totals = self.fresh_totals()
        tally = self._tally
        papers_per_s = tally.papers.per_second()
        g = self._gates
        gates = [g.prefetch.statistics()]
        if self._network:  # a source off the network passes no download gate
            gates.append(g.download.statistics())
        gates.append(g.extract.statistics())
        gates.extend(self._hosts.gates.statistics())
        gates.extend(self._more_gates())
        return RunSnapshot(
            run_id=self._run_id,
            elapsed=time.monotonic() - self.started,
            gates=gates,
            stages=[m.snapshot() for m in tally.meters.values()],
            totals=totals,
            papers_per_min=papers_per_s * 60,
            pages_per_s=tally.pages.per_second(),
            mb_per_s=tally.bytes.per_second() / 1e6,
            eta_seconds=totals.remaining / papers_per_s if papers_per_s > 0 else None,
            lag=self._lag(),
            workers_busy=self._feeder.busy,
            workers_total=self._workers,
            pool=stats,
            done_this_run=tally.done,
            failed_this_run=tally.failed,
            stopping=self._feeder.stopping,
            messages=self._notices.recent(5),
            waiting=self.waiting(),
            memory=self._governor.snapshot(),
            failures=tally.failure_snapshot(),
        )

"""The heartbeat: the run's proof of life, and the upkeep that rides on it.

Every `min(--heartbeat-seconds, --lease-seconds / 3)` seconds: renew the run's row and the
leases its workers hold (saying a lease lost when it is), free the leases of dead runs and
expired ones (so a dead run's work goes to the live ones), write the attempts recorded since
the last beat, read the queue's totals, follow the host state other processes stored, and look
at the free disk space. A beat that fails is said and the next one tries again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rpa.config import Settings
from rpa.hosts.health import HostHealth
from rpa.notices import Notices
from rpa.queue import jobs, reads, runs
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import Lease, Totals
from rpa.run.disk import DiskGuard
from rpa.run.tally import Tally

__all__ = ["Heartbeat", "heartbeat_interval"]


def heartbeat_interval(settings: Settings) -> float:
    """Seconds between beats: at least three beats in every lease."""
    return min(settings.heartbeat_seconds, settings.lease_seconds / 3)


class Heartbeat:
    """Beats for one run; `held` is the workers' leases (job id -> token), read at each beat."""

    def __init__(
        self,
        *,
        settings: Settings,
        run_id: str,
        queue: AsyncQueue,
        held: dict[str, int],
        hosts: HostHealth,
        disk: DiskGuard,
        tally: Tally,
        notices: Notices,
        on_totals: Callable[[Totals], None],
        on_reclaimed: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._run_id = run_id
        self._queue = queue
        self._held = held
        self._hosts = hosts
        self._disk = disk
        self._tally = tally
        self._notices = notices
        self._on_totals = on_totals
        self._on_reclaimed = on_reclaimed

    async def run(self) -> None:
        s = self._settings
        interval = heartbeat_interval(s)
        while True:
            await asyncio.sleep(interval)
            try:
                beat = dict(self._held)
                leases = [Lease(job_id, token) for job_id, token in beat.items()]
                lost = await self._queue.run(
                    runs.heartbeat, self._run_id, leases, s.lease_seconds, time.time()
                )
                for job_id in lost:
                    # Still ours to lose? A job completed (or failed, or given back) while the
                    # beat was on its way let go of its lease itself: not a lost lease.
                    if self._held.get(job_id) == beat[job_id]:
                        self._notices.add(f"lease lost: {job_id}")
                await self.reclaim()
                await self.flush_attempts()
                self._on_totals(await self._queue.run(reads.totals, time.time()))
                await self._hosts.follow()
            except Exception as exc:  # a busy database: the next beat tries again
                self._notices.add(f"heartbeat failed ({type(exc).__name__}: {exc}); retrying")
            await self._disk.check()

    async def reclaim(self) -> None:
        """Free the leases of dead runs (a host that died, a kill -9) and expired ones: at the
        start, and at every heartbeat, so the work of a run that died goes to the live ones."""
        reclaimed = await self._queue.run(runs.reclaim_stale, time.time())
        if reclaimed.dead_leases or reclaimed.expired_leases:
            self._notices.add(
                f"reclaimed {reclaimed.dead_leases} leases of {reclaimed.dead_runs} dead runs, "
                f"{reclaimed.expired_leases} expired"
            )
            self._on_reclaimed()  # the feeder may claim them now

    async def flush_attempts(self) -> None:
        """Write the attempts recorded since the last beat."""
        rows = self._tally.take_attempts()
        if rows:
            await self._queue.run(jobs.record_attempts, rows)

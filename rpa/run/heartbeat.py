"""The heartbeat: the run's proof of life, and the upkeep that rides on it.

Every `min(--heartbeat-seconds, --lease-seconds / 3)` seconds: renew the run's row and every
lease still in its name (by the database's clock: rpa.queue.clock), free the leases of dead
runs and expired ones of other runs (so a dead run's work goes to the live ones), write the
attempts recorded since the last beat, read the queue's totals, follow the host state other
processes stored, and look at the free disk space. Each beat stores what the run waits for
now, and since when (the live table's line, rpa.run.progress: a full disk, memory, a host
down, the next retry), or clears it, for `rpa status` in any terminal. A beat that fails is
said and the next one tries again.

Every lease of the run surely holds until the local reading before its last good beat (or its
registration) plus the shorter of the lease and the time after which a silent run is dead
(rpa.run.leases: what a first claim's worker needs to replace a foreign file at a final name).
A lease the beat finds lost (another run took the job) is said once and its worker cancelled:
the job is someone else's now. A beat that finds the run found dead by another run (it was
paused past its lease, say) tells the runner, which stops without writing anything. A beat
long after the previous one (this run was paused, or its database calls stalled) does not
judge other runs dead: they were most likely stalled too, and the next beat judges.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from rpa.config import Settings
from rpa.errors import DatabaseError, DeclaredDead
from rpa.hosts.health import HostHealth
from rpa.notices import Notices
from rpa.queue import jobs, reads, runs
from rpa.queue.aio import AsyncQueue
from rpa.queue.clock import lease_clock
from rpa.queue.model import Lease, RunInfo, Totals, Wait
from rpa.run.disk import DiskGuard
from rpa.run.leases import Held
from rpa.run.tally import Tally
from rpa.units import count

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
        held: Held,
        hosts: HostHealth,
        disk: DiskGuard,
        tally: Tally,
        notices: Notices,
        on_totals: Callable[[Totals], None],
        on_reclaimed: Callable[[], None],
        on_lost: Callable[[str], None] = lambda job_id: None,
        on_dead: Callable[[str], None] = lambda reason: None,
        wait: Callable[[], Wait | None] = lambda: None,
    ) -> None:
        """`on_lost(job_id)`: a worker's lease was taken by another run (cancel its work);
        `on_dead(reason)`: another run found this one dead (stop without writing); `wait()`:
        what the run waits for now (stored at each beat)."""
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
        self._on_lost = on_lost
        self._on_dead = on_dead
        self._wait = wait

    async def register(self, info: RunInfo) -> None:
        """Register the run as running: its first beat, at the database's clock now."""
        asked = lease_clock()  # before it: the leases it claims surely hold until + span
        started = await self._queue.run(runs.clock)
        await self._queue.run(runs.register_run, dataclasses.replace(info, started_at=started))
        self._held.beat(asked)

    async def run(self) -> None:
        s = self._settings
        interval = heartbeat_interval(s)
        while True:
            await asyncio.sleep(interval)
            try:
                held = dict(self._held)
                leases = [Lease(job_id, token) for job_id, token in held.items()]
                asked = lease_clock()  # before the beat: the leases surely hold until + span
                beat = await self._queue.run(
                    runs.heartbeat, self._run_id, leases, s.lease_seconds, wait=self._wait()
                )
                self._held.beat(asked)
                for job_id in beat.lost:
                    # Still ours to lose? A job completed (or failed, or given back) while the
                    # beat was on its way let go of its lease itself: not a lost lease.
                    if self._held.get(job_id) == held[job_id]:
                        self._notices.add(
                            f"lease lost: {job_id} (another run took it): its work here stops"
                        )
                        self._on_lost(job_id)
                if beat.gap <= 2 * interval:
                    await self.reclaim()
                await self.flush_attempts()
                self._on_totals(await self._queue.run(reads.totals, time.time()))
                await self._hosts.follow()
            except DeclaredDead as exc:
                self._held.revoke()
                self._on_dead(str(exc))
                return
            except DatabaseError as exc:  # the database away, or past --db-wait: beat again
                self._notices.add(f"heartbeat failed ({type(exc).__name__}: {exc}); retrying")
            # anything else is a bug (rpa.queue.aio raises it as it is): it ends the run,
            # named (rpa.run.tasks), rather than be said at every beat while leases lapse
            await self._disk.check()

    async def reclaim(self) -> None:
        """Free the leases of dead runs (a host that died, a kill -9) and expired ones: at the
        start, and at every heartbeat, so the work of a run that died goes to the live ones."""
        reclaimed = await self._queue.run(runs.reclaim_stale, None, by=self._run_id)
        if reclaimed.dead_leases or reclaimed.expired_leases:
            self._notices.add(
                f"reclaimed {count(reclaimed.dead_leases, 'lease')} of "
                f"{count(reclaimed.dead_runs, 'dead run')}, "
                f"{reclaimed.expired_leases} expired"
            )
            self._on_reclaimed()  # the feeder may claim them now

    async def flush_attempts(self) -> None:
        """Write the attempts recorded since the last beat."""
        rows = self._tally.take_attempts()
        if rows:
            await self._queue.run(jobs.record_attempts, rows)

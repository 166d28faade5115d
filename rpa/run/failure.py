"""One paper's failed attempt carried out: the failure policy's verdict (rpa.run.policy) made
real for the job processor (rpa.run.job): the paper given back, held, retried or failed in the
queue (fenced by its lease), its host told (down, refusing us, asking us to wait), the disk
guard told of an --out that cannot take files, the run's tally and notices; too many 'not
found' while the source has served no PDF stop the run (rpa.run.misses). Only a failure to
record the failure (the database itself broken) ends the run, as `RunCrashed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from rpa import errors
from rpa.config import Settings
from rpa.hosts.health import HostHealth
from rpa.notices import Notices
from rpa.queue import jobs
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import Failure, Job
from rpa.run import policy
from rpa.run.disk import DiskGuard
from rpa.run.misses import FirstMisses
from rpa.run.tally import Tally

__all__ = ["FailureRecorder"]


#: seconds a stopping run waits for a failure's write under way, to count it
TALLY_WAIT = 2.0


class FailureRecorder:
    """Records the failures of one run's papers (`fail`)."""

    def __init__(
        self,
        *,
        settings: Settings,
        run_id: str,
        queue: AsyncQueue,
        hosts: HostHealth,
        tally: Tally,
        notices: Notices,
        network: bool,
        stopping: Callable[[], bool],
        disk: DiskGuard | None = None,
    ) -> None:
        self.settings = settings
        self.run_id = run_id
        self.queue = queue
        self.hosts = hosts
        self.tally = tally
        self.notices = notices
        #: is the paper's source a network one (its download failures say something of a host)?
        self.network = network
        self.stopping = stopping
        self.disk = disk
        #: 'not found' papers while the source has served none (rpa.run.misses)
        self.misses = FirstMisses(settings)

    async def _give_back(self, job: Job) -> None:
        """Back to the queue as it was claimed: no attempt counted."""
        await self.queue.run(jobs.release, self.run_id, [job.lease])
        self.tally.taken -= 1

    async def fail(self, job: Job, exc: errors.JobError, stage: str) -> None:
        try:
            await self._record(job, exc, stage)
        except (asyncio.CancelledError, errors.StayedAway):
            raise
        except Exception as inner:  # the failure itself cannot be recorded: the run stops
            raise errors.RunCrashed(
                f"cannot record the failure of {job.id} ({exc.kind}: {exc.message}): "
                f"{type(inner).__name__}: {inner}"
            ) from inner

    def _as_condition(self, job: Job, exc: errors.JobError, stage: str) -> errors.JobError:
        """Tell host health what this failure says of the paper's host: if the host is down,
        the failure is the host's (HostDown), not the paper's."""
        if stage != "download" or not self.network:
            return exc
        if policy.host_trouble(exc):
            cut = policy.cut_mid_body(exc)  # the host had begun to answer
            if self.hosts.connection_failed(exc.host, job.id, exc.message, cut=cut):
                return policy.as_host_down(exc)
        elif policy.proves_host_works(exc):
            self.hosts.answered(exc.host)
        return exc

    async def _record(self, job: Job, exc: errors.JobError, stage: str) -> None:
        """Carry out the failure policy's verdict (rpa.run.policy) on this attempt."""
        now = time.time()
        exc = self._as_condition(job, exc, stage)
        verdict = policy.judge(exc, job, self.settings, stopping=self.stopping(), now=now)
        if verdict.refused:
            await self.hosts.refused(exc.host, exc.message)
        if verdict.said:
            self.notices.add(verdict.said)
        if verdict.pause_out and self.disk is not None and isinstance(exc, errors.ConditionError):
            await self.disk.trouble(exc.message, exc.folder, full=isinstance(exc, errors.DiskFull))
        if verdict.action == "give_back":
            await self._give_back(job)
            return
        exc = verdict.error
        if verdict.cooldown:
            await self.hosts.asked_to_wait(exc.host, verdict.cooldown, exc.message)
        final = verdict.action == "fail"  # a hold: a retry never due (`HELD`), uncounted
        failure = Failure(
            exc.kind, exc.message, final, verdict.next_at, verdict.crashed, verdict.counted
        )
        write = asyncio.ensure_future(
            self.queue.run(jobs.fail, self.run_id, job.lease, failure, now)
        )
        try:
            made = await asyncio.shield(write)
        except asyncio.CancelledError:
            # the run stops (another paper's miss, a Ctrl-C): the write goes on in its thread,
            # and a failure it commits is tallied, or the summary says one less than the queue;
            # waited for a moment only (a database away would hold the stop for --db-wait)
            write.add_done_callback(lambda t: t.cancelled() or t.exception())
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(TALLY_WAIT):
                    if await asyncio.shield(write):
                        self._tally(job, exc, stage, verdict)
            raise
        if not made:
            self.notices.add(f"lease lost before recording a failure: {job.id}")
            return
        self._tally(job, exc, stage, verdict)
        if final and stage == "download":
            self.misses.missed(job.id, exc)  # the limit's: the run stops

    def _tally(self, job: Job, exc: errors.JobError, stage: str, verdict: policy.Verdict) -> None:
        """Count a failure the queue took: for good, or to be retried."""
        final = verdict.action == "fail"
        meter = self.tally.meters[stage]
        if final:
            meter.failed += 1
            self.tally.failed_for_good(exc.kind, exc.message, job.id)
        elif verdict.action != "hold":  # a held paper is no retry: the run's end says it
            if verdict.counted:
                meter.retried += 1
            else:
                meter.uncounted += 1
            self.tally.retry_later(exc.kind, exc.message, job.id)

"""The feeder and the workers: claims from the queue, handed to N logical workers.

    feeder ──claims──▶ local queue ──▶ worker × N ──▶ JobProcessor (download ▸ extract ▸ outcome)

The feeder claims as many jobs as workers are idle (at most 256 a claim; when other runs are
live, at most its share of the queue's end: rpa.queue.jobs.claim), only at the stages
host health allows (`HostHealth.claimable`), and not while the disk guard says space is short.
When nothing is claimable it waits for the next retry to come due (said once), and while
other runs hold leases it waits for them too (said, with how long since each was heard from):
they finish those jobs, or their run is found dead by the heartbeat (rpa.run.heartbeat) and
this run reclaims and does them. It ends only when nothing is left that anyone holds: a run
never ends saying "done" with work stranded in a dead run's name. A job held for a host that
refused us (the failure policy's `hold`) is never due: it is not waited for, and a run that
leaves only such jobs ends `denied`, saying so (`HostHealth.refused_us`). Each worker takes a
job, has the job processor take it as far as it goes, and lets go of its lease; a worker whose lease
another run took (`lose`) drops that job at once and takes the next. A `RunCrashed` from a
worker stops the run. While the queue database is unavailable the claim waits
(rpa.queue.aio), so nothing new is claimed; when it stayed away past --db-wait
(`DatabaseStayedAway`, from the claim or a worker), or arXiv's metadata API did past
--metadata-wait (`MetadataStayedAway`, from a worker waiting for a paper's metadata), the run
stops: `stayed_away` says why, and the run ends `interrupted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from rpa import errors
from rpa.config import Settings
from rpa.hints import command_hint
from rpa.hosts.health import HostHealth
from rpa.notices import Notices
from rpa.queue import jobs, runs
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import Job, dead_after
from rpa.queue.runs import Holder
from rpa.run.disk import DISK_POLL, DiskGuard
from rpa.run.heartbeat import heartbeat_interval
from rpa.run.job import JobProcessor
from rpa.run.leases import Held
from rpa.run.tally import Tally
from rpa.run.tasks import start

#: seconds without progress after which a stopping run stops waiting for its workers
STUCK_CHECK = 0.25

__all__ = ["IDLE_POLL", "WAKE_BATCH", "Feeder"]

# How often the feeder looks again when nothing is claimable but work may appear (retries
# coming due, another run releasing leases).
IDLE_POLL = 0.5
#: jobs handed to workers per loop iteration when a claim brings many (see Feeder.feed)
WAKE_BATCH = 16
#: the most jobs one claim takes
MAX_CLAIM = 256


class Feeder:
    """Claims jobs for the run's workers; `held` is every lease they hold (job id -> token)."""

    def __init__(
        self,
        *,
        settings: Settings,
        run_id: str,
        queue: AsyncQueue,
        hosts: HostHealth,
        disk: DiskGuard,
        tally: Tally,
        notices: Notices,
        on_crash: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._run_id = run_id
        self._queue = queue
        self._hosts = hosts
        self._disk = disk
        self._tally = tally
        self._notices = notices
        self._on_crash = on_crash
        self.held = Held(min(settings.lease_seconds, dead_after(heartbeat_interval(settings))))
        #: why the run stopped because the queue database or the metadata API stayed away
        self.stayed_away: str | None = None
        self.idle = 0
        #: its claims share the queue's last jobs with the live runs, this many at least
        #: (rpa.queue.jobs.claim; a group's processes: rpa.run.processes.group_size)
        self.share = 1
        self.stopping = False
        #: nothing claimable before this (wall clock), while the workers wait for it
        self.idle_until: float | None = None
        self.workers: list[asyncio.Task[None]] = []
        self._local: asyncio.Queue[Job | None] = asyncio.Queue()
        self._want = asyncio.Event()
        #: the worker task working on each job, and the jobs whose lease another run took
        self._working: dict[str, asyncio.Task[None]] = {}
        self._lost: set[str] = set()
        self._stopper: asyncio.Future[None] | None = None  # (stop_within)

    def stop(self) -> None:
        """Stop claiming new work; workers finish what they hold."""
        self.stopping = True
        self._want.set()

    def wake(self) -> None:
        """Look for claimable work now (leases were freed, say)."""
        self._want.set()

    def lose(self, job_id: str) -> None:
        """Another run took `job_id`'s lease: cancel its work here (the worker goes on to the
        next job)."""
        task = self._working.get(job_id)
        if task is not None and job_id not in self._lost:
            self._lost.add(job_id)
            task.cancel()

    def cancel_workers(self) -> None:
        for task in self.workers:
            task.cancel()

    def stop_within(self, grace: float, progress: Callable[[], tuple[int, ...]]) -> None:
        """After a first Ctrl-C: see `_cancel_when_stuck`."""
        self._stopper = asyncio.ensure_future(self._cancel_when_stuck(grace, progress))

    async def _cancel_when_stuck(
        self, grace: float, progress: Callable[[], tuple[int, ...]]
    ) -> None:
        """Cancel the workers once nothing they hold moves (`progress`:
        the papers under way and the counts done, unchanged and none under way for a
        STUCK_CHECK: all wait in gates, for a host that is down, a rate limit...), at the
        latest after `grace` seconds (the jobs go back to the queue uncounted)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        seen = progress()
        while loop.time() < deadline:
            await asyncio.sleep(min(STUCK_CHECK, max(0.0, deadline - loop.time())))
            now = progress()
            if now == seen and not now[0]:
                break
            seen = now
        self.cancel_workers()

    @property
    def busy(self) -> int:
        """Workers working on a job now."""
        return sum(not t.done() for t in self.workers) - self.idle

    @property
    def all_idle(self) -> bool:
        return self.idle == len(self.workers)

    async def run(self, processor: JobProcessor) -> None:
        """The feeder and the workers, until nothing is left or the run stops."""
        processor.vouch = self.held.vouch.path  # until when its leases surely hold
        try:
            async with asyncio.TaskGroup() as tg:
                start(tg, "feeder", self._feed())
                self.workers = [
                    start(tg, f"worker-{i}", self._work(processor))
                    for i in range(self._settings.workers)
                ]
        finally:
            self.held.close()

    def _stayed_away(self, exc: errors.StayedAway) -> None:
        """Stop the run: the queue database or the metadata API stayed away past its wait."""
        if self.stayed_away is None:
            self.stayed_away = str(exc)
            self._notices.add(
                f"the run stops: {exc}"
                + ("" if exc.charged else "; no paper was charged for it")
                + f". `{command_hint('resume')}` {exc.resume}"
            )
        self.stop()
        self.cancel_workers()

    async def _feed(self) -> None:
        try:
            await self._claim_loop()
        except errors.StayedAway as exc:
            self._stayed_away(exc)
        finally:
            for _ in self.workers:
                self._local.put_nowait(None)

    async def _claim_loop(self) -> None:
        s = self._settings
        while not self.stopping:
            demand = self.idle - self._local.qsize()
            if demand <= 0:
                self._want.clear()
                await self._want.wait()
                continue
            if self._disk.low:
                self._notices.add(self._disk.low, key="disk-low")
                await self._pause(DISK_POLL)
                if not self._disk.low:
                    self._notices.forget("disk-low")
                    self._notices.add("--out takes files again: claiming again")
                continue
            claimed = await self._queue.run(
                jobs.claim, self._run_id, min(demand, MAX_CLAIM), s.lease_seconds,
                None, self._hosts.claimable(), share=self.share, holding=len(self.held),
            )  # fmt: skip
            self._tally.taken += len(claimed)
            for n, job in enumerate(claimed, start=1):
                self.held.take(job.id, job.token)
                self._local.put_nowait(job)
                if n % WAKE_BATCH == 0:
                    # Let these workers take their first steps in this loop iteration
                    # and the next ones in the next: 200 workers woken at once made one
                    # iteration of 50-65 ms at start (200 first steps, 64 connections).
                    await asyncio.sleep(0)
            if claimed:
                self.idle_until = None
                continue
            busy = len(self.workers) - self.idle + self._local.qsize()
            if busy == 0:
                wait = await self._queue.run(jobs.next_due, time.time(), self._hosts.claimable())
                if wait is None and not self._hosts.waiting_for_a_host():
                    holders = await self._queue.run(runs.holders, self._run_id)
                    if not holders:
                        # Nothing was due while others held leases; the heartbeat may have
                        # reclaimed them between the two reads: due now, read after.
                        again = await self._queue.run(
                            jobs.next_due, time.time(), self._hosts.claimable()
                        )
                        if again is None:
                            return
                        continue
                    self._say_held(holders)  # theirs: finished, or reclaimed when dead
                    # looked at again soon: the others' last papers (a group's, or a
                    # fleet's) end within a paper's time, and this run ends with them
                    await self._pause(IDLE_POLL)
                    continue
                if wait is None:  # a host is down: its papers wait for it to answer
                    await self._pause(IDLE_POLL * 4)
                    continue
                self._say_idle(wait)
                await self._pause(min(wait, IDLE_POLL * 4))
            else:
                await self._pause(IDLE_POLL)

    def _say_held(self, holders: list[Holder]) -> None:
        """What the run waits for before it may end: said per run, again every 30 s."""
        now = int(time.monotonic() // 30)
        for h in holders:
            heard = "never heard from" if h.silent is None else f"last heard {h.silent:.0f}s ago"
            self._notices.add(
                f"waiting for {h.jobs} jobs held by run {h.run_id}, {heard}",
                key=f"held {h.run_id} {now}",
            )

    def _say_idle(self, wait: float) -> None:
        """Nothing claimable now: say until when, once per wait."""
        until = time.time() + wait
        self.idle_until = until
        if wait >= 5.0:
            when = time.strftime("%H:%M:%S", time.localtime(until))
            self._notices.add(
                f"nothing to do until {when}: waiting for the next retry", key=f"idle {when}"
            )

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake early when a worker asks for work or a stop is requested."""
        self._want.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._want.wait()

    async def _work(self, processor: JobProcessor) -> None:
        while True:
            self.idle += 1
            self._want.set()
            try:
                job = await self._local.get()
            finally:
                self.idle -= 1
            if job is None:
                return
            worker = asyncio.current_task()
            assert worker is not None
            # The job in a task of its own, so that `lose` can cancel it alone (awaiting it
            # passes a cancellation of the worker on to it).
            work = asyncio.create_task(processor.process(job), name=f"job {job.id}")
            self._working[job.id] = work
            try:
                await work
            except asyncio.CancelledError:
                # The job's lease was lost (`lose`): its work stops here, and the worker goes
                # on, unless the worker itself is being cancelled.
                if worker.cancelling() or job.id not in self._lost:
                    raise
            except errors.StayedAway as exc:
                self._stayed_away(exc)
                return
            except errors.RunCrashed as exc:
                self._on_crash(str(exc))
                self._notices.add(f"the run cannot go on: {exc}")
                self.stop()
                self.cancel_workers()
                return
            finally:
                self.held.drop(job.id)
                self._working.pop(job.id, None)
                self._lost.discard(job.id)

"""The run: one event loop, N logical workers, a feeder, the heartbeat, and how a run ends.

    feeder ──claims──▶ local queue ──▶ worker × N ──▶ JobProcessor (download ▸ extract ▸ outcome)
       ▲                                            │
       └────────────── AsyncQueue (database threads) ◀┘  checkpoints, fenced by the lease token

Structured concurrency: every task lives in a TaskGroup. Nothing here blocks the loop: the
queue runs in its database threads, file work in the I/O pool, PDF work in the extraction
processes. A run ends `finished`, `interrupted` (a signal), `denied` (a host refused us) or
`crashed` (something outside one paper broke): never `finished` when it did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from rpa import errors
from rpa.config import Settings, parse_rate
from rpa.extract.pool import ExtractPool
from rpa.gates import Gate
from rpa.layout import Layout
from rpa.metrics import LagProbe, WindowStats
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import ACTIVE_STAGES, Job, Lease, RunInfo, TarMember, Totals, new_run_id
from rpa.queue.store import QueueStore
from rpa.report import status as report_status
from rpa.run.clients import make_api_client, make_clients
from rpa.run.fleet import FleetRateGate
from rpa.run.job import JobGates, JobProcessor
from rpa.run.memory import MemoryGovernor
from rpa.run.metadata import MetadataService
from rpa.run.snapshot import MemorySnapshot, PoolSnapshot, RunSnapshot, StageSnapshot
from rpa.run.tally import Notices, Tally
from rpa.sources.base import Source
from rpa.sources.hosts import HostGate, HostGates
from rpa.sources.http import Downloader, HttpSource
from rpa.sources.local import LocalSource
from rpa.sources.tar import TarSource

__all__ = ["RunSummary", "Runner"]

# How often the feeder looks again when nothing is claimable but work may appear (retries
# coming due, another run releasing leases).
IDLE_POLL = 0.5
# How often --metrics-file is rewritten during a run.
METRICS_INTERVAL = 5.0
#: how often the disk guard looks again while claiming is paused
DISK_POLL = 5.0
#: jobs handed to workers per loop iteration when a claim brings many (see _feeder)
WAKE_BATCH = 16
#: niceness of the I/O threads relative to the event loop's (Linux schedules threads one by
#: one). Hashing and writing 64 downloads at once on 8 threads left the loop thread a fifth of
#: a core on a 2-core machine (40-80 ms lags at start); below it, they take what it leaves.
IO_NICE = 5


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    status: str  # finished | interrupted | denied | crashed
    done: int
    failed: int
    totals: Totals
    wall_seconds: float
    lag: WindowStats
    failures: dict[str, int]
    #: one message for each failure kind: why papers failed, not only how many
    reasons: dict[str, str]
    slowest: list[tuple[str, float]]
    stages: list[StageSnapshot]
    messages: list[str]
    #: jobs leased by another live run at the end (two runs sharing one queue)
    held_elsewhere: int = 0
    #: what ended a crashed run
    crash: str | None = None
    #: what the memory governor did over the run
    memory: MemorySnapshot | None = None

    @property
    def exit_code(self) -> int:
        """130 interrupted; 1 if anything failed, the run crashed, a host refused us, or work
        is left that no live run holds; else 0 (jobs another live run is finishing are not a
        failure)."""
        if self.status == "interrupted":
            return 130
        left_over = self.totals.remaining - self.held_elsewhere
        if self.status in ("denied", "crashed") or self.totals.failed or left_over > 0:
            return 1
        return 0


def _lower_thread_priority(nice: int) -> None:
    """Run the calling thread `nice` steps below the process (Linux: a per-thread value)."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)


class Runner:
    """Runs the queue in `settings.db` until nothing claimable is left (or it is told to stop).
    `notices.on_new` may print each notice as it comes (when no live table shows them)."""

    def __init__(
        self,
        settings: Settings,
        *,
        command: str = "run",
        run_id: str | None = None,
        notices: Notices | None = None,
    ) -> None:
        self.settings = settings
        self.command = command
        self.run_id = run_id or new_run_id()
        self.layout = Layout(settings.out)
        self.queue = AsyncQueue(settings.db)
        self.io = ThreadPoolExecutor(
            max_workers=8,
            thread_name_prefix="rpa-io",
            initializer=_lower_thread_priority,
            initargs=(IO_NICE,),
        )
        #: PDFs over the network (HTTP), or from local files or bulk tars
        self.network = not (settings.pdf_tar or settings.pdf_url.lower().startswith("file://"))
        self.prefetch_gate = Gate("prefetch", settings.prefetch)
        self.download_gate = Gate("download", settings.download_concurrency)
        self.extract_gate = Gate("extract", settings.extract_concurrency_resolved)
        host = urlsplit(settings.pdf_url.replace("{id}", "x")).hostname or ""
        # A host's cap is one budget for every process of the queue (rpa.run.fleet).
        self.hosts = HostGates(
            settings.rate_limits if self.network else "",
            primary=host,
            make_gate=self._fleet_gate,
        )
        self.pool = ExtractPool(
            settings.extract_workers_resolved,
            mode=settings.extract_pool,
            timeout=settings.extract_timeout,
            max_mb=settings.extract_max_mb or None,
            nice=settings.extract_nice,
            extractor=settings.extractor,
            recycle_mb=settings.extract_recycle_mb,
        )
        self.notices = notices or Notices()
        self.governor = MemoryGovernor(
            pause=settings.memory_pause,
            resume=settings.memory_resume,
            kill=settings.memory_kill,
            prefetch=self.prefetch_gate,
            extract=self.extract_gate,
            pool=self.pool,
            notices=self.notices,
        )
        self.probe = LagProbe()
        self._lag_stats, self._lag_at = self.probe.window.stats(), 0.0
        self.tally = Tally()
        self.held: dict[str, int] = {}
        self.idle = 0
        self.local: asyncio.Queue[Job | None] = asyncio.Queue()
        self.totals = Totals()
        self._beat = (0, 0, 0, 0)  # taken, done, failed, retried when self.totals was read
        self.held_elsewhere = 0
        self.stopping = False
        self.disk_low: str | None = None  # why claiming is paused, while it is
        self.idle_until: float | None = None  # nothing claimable before this (wall clock)
        self._want = asyncio.Event()
        self._started = time.monotonic()
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._signals = 0
        self._crash: str | None = None
        self.metadata: MetadataService | None = None

    def _metadata_service(self) -> MetadataService | None:
        """The metadata stage, unless it is off: its API gate has one fleet-wide slot."""
        s = self.settings
        mode = s.metadata_mode
        if mode == "off":
            return None
        gate = None
        if mode == "arxiv-api":
            count, period = parse_rate(s.metadata_rate)
            host = urlsplit(s.metadata_url).hostname or "api"
            gate = self._fleet_gate(f"api {host}", count, period)
        return MetadataService(
            mode=mode, queue=self.queue, url=s.metadata_url, batch=s.metadata_batch, gate=gate,
            client=functools.partial(make_api_client, s), io=self.io, notices=self.notices,
        )  # fmt: skip

    def _fleet_gate(self, host: str, count: int, period: float) -> HostGate:
        s = self.settings
        # a slot whose holder died frees once no request could still be waiting for its answer
        hold = s.connect_timeout + s.read_timeout + period
        return FleetRateGate(host, count, period, queue=self.queue, holder=self.run_id, hold=hold)

    # ---- snapshot -------------------------------------------------------------------------

    def _lag(self) -> WindowStats:
        """The probe's last minute (~6,000 samples to sort, ~0.5 ms of loop), at most once a
        second: the live table asks four times a second."""
        now = time.monotonic()
        if now - self._lag_at >= 1.0:
            self._lag_stats, self._lag_at = self.probe.window.stats(), now
        return self._lag_stats

    def _set_totals(self, totals: Totals) -> None:
        t = self.tally
        self.totals = totals
        self._beat = (t.taken, t.done, t.failed, t.retried)

    def _fresh_totals(self) -> Totals:
        """The queue totals of the last heartbeat, moved on by what this run did since: jobs
        it took left `queued` for `in_progress`, and those it finished or gave back for a
        retry left `in_progress` (other runs' moves show at the next heartbeat)."""
        t, tally = self.totals, self.tally
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

    def _waiting(self) -> str | None:
        """What the run waits for now, and until when, if it waits."""
        if self.disk_low:
            return self.disk_low
        waits = []
        for host, deadline in self.hosts.cooling_down():
            until = time.time() + deadline - time.monotonic()
            waits.append(
                f"{host} cooldown until {time.strftime('%H:%M:%S', time.localtime(until))}"
            )
        if self.idle_until is not None and self.idle == len(self._worker_tasks):
            when = time.strftime("%H:%M:%S", time.localtime(self.idle_until))
            waits.append(f"the next retry, due {when}")
        return "; ".join(waits) or None

    def snapshot(self) -> RunSnapshot:
        stats = self.pool.statistics()
        totals = self._fresh_totals()
        papers_per_s = self.tally.papers.per_second()
        gates = [self.prefetch_gate.statistics()]
        if self.network:
            gates.append(self.download_gate.statistics())
        gates.append(self.extract_gate.statistics())
        gates.extend(self.hosts.statistics())
        if self.metadata is not None and self.metadata.gate is not None:
            gates.append(self.metadata.gate.statistics())
        gates.append(self.queue.gate.statistics())
        return RunSnapshot(
            run_id=self.run_id,
            elapsed=time.monotonic() - self._started,
            gates=gates,
            stages=[m.snapshot() for m in self.tally.meters.values()],
            totals=totals,
            papers_per_min=papers_per_s * 60,
            pages_per_s=self.tally.pages.per_second(),
            mb_per_s=self.tally.bytes.per_second() / 1e6,
            eta_seconds=totals.remaining / papers_per_s if papers_per_s > 0 else None,
            lag=self._lag(),
            workers_busy=sum(not t.done() for t in self._worker_tasks) - self.idle,
            workers_total=self.settings.workers,
            pool=PoolSnapshot(
                self.settings.extract_pool,
                stats.workers,
                stats.alive,
                stats.busy,
                stats.replaced,
                stats.crashed,
                stats.timed_out,
            ),
            done_this_run=self.tally.done,
            failed_this_run=self.tally.failed,
            stopping=self.stopping,
            messages=self.notices.recent(5),
            waiting=self._waiting(),
            memory=self.governor.snapshot(),
        )

    # ---- the run --------------------------------------------------------------------------

    async def run(self) -> RunSummary:
        """Process the queue. Raises DatabaseError (or ConfigError) if the run cannot start;
        any later failure ends the run as `crashed`, said in the summary."""
        s = self.settings
        try:
            await self.queue.open(create=False)
            await self._start()
        except BaseException:
            await self.queue.close()
            self.io.shutdown(wait=False)
            raise
        status = "finished"
        try:
            await self._serve()
            if self._crash:
                status = "crashed"
            elif self._signals:
                status = "interrupted"
            elif self.hosts.breaker_open(self.hosts.primary):
                status = "denied"
        except asyncio.CancelledError:
            status = "interrupted"
        except Exception as exc:  # outside any one paper: the run cannot go on
            status = "crashed"
            self._crash = self._crash or f"{type(exc).__name__}: {exc}"
        finally:
            self._remove_signal_handlers()
            await self._finish(status)
        if s.metrics_file:
            await self._write_metrics()
        await self.queue.close()
        self.io.shutdown(wait=False)
        return self._summary(status)

    async def _reclaim(self) -> None:
        """Free the leases of dead runs (a host that died, a kill -9) and expired ones: at the
        start, and at every heartbeat, so the work of a run that died goes to the live ones."""
        reclaimed = await self.queue.run(QueueStore.reclaim_stale, time.time())
        if reclaimed.dead_leases or reclaimed.expired_leases:
            self.notices.add(
                f"reclaimed {reclaimed.dead_leases} leases of {reclaimed.dead_runs} dead runs, "
                f"{reclaimed.expired_leases} expired"
            )
            self._want.set()  # the feeder may claim them now

    async def _start(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        now = time.time()
        await self._reclaim()
        live = await self.queue.run(QueueStore.live_runs, now)
        await loop.run_in_executor(self.io, self.layout.prepare, live)
        # the disk guard holds from the first claim, not from the first heartbeat
        self.disk_low = await loop.run_in_executor(self.io, self._disk_low)
        info = RunInfo(
            id=self.run_id,
            command=self.command,
            started_at=now,
            heartbeat_seconds=min(s.heartbeat_seconds, s.lease_seconds / 3),
            settings_json=json.dumps(dataclasses.asdict(s), default=str),
        )
        await self.queue.run(QueueStore.register_run, info)
        await self._restore_host_state()
        self._set_totals(await self.queue.run(QueueStore.totals, time.time()))

    async def _serve(self) -> None:
        s = self.settings
        self._install_signal_handlers()
        source: Source
        max_bytes = int(s.max_pdf_mb * 1024 * 1024)
        async with contextlib.AsyncExitStack() as stack:
            if s.pdf_tar:

                async def lookup(base: str) -> TarMember | None:
                    return await self.queue.run(QueueStore.tar_member, base)

                source = TarSource(lookup, self.io, max_bytes=max_bytes)
            elif not self.network:
                source = LocalSource(self.io, s.pdf_url, max_bytes=max_bytes)
            else:
                # Built in a thread: each client loads the CA bundle and builds its SSL
                # context, tens of milliseconds the loop would otherwise stand still for.
                clients = await asyncio.to_thread(make_clients, s)
                for client in clients:
                    await stack.enter_async_context(client)
                downloader = Downloader(
                    clients,
                    self.io,
                    max_bytes=max_bytes,
                    hosts=self.hosts,
                    redirects=s.follow_redirects,
                    deadline=s.download_timeout,
                    run_id=self.run_id,
                )
                source = HttpSource(downloader, s.pdf_url)
            await stack.enter_async_context(self.pool)
            self.metadata = self._metadata_service()
            self.governor.start(asyncio.get_running_loop())
            stack.callback(self.governor.stop)
            self.processor = JobProcessor(
                settings=s,
                run_id=self.run_id,
                queue=self.queue,
                source=source,
                pool=self.pool,
                gates=JobGates(self.prefetch_gate, self.download_gate, self.extract_gate),
                hosts=self.hosts,
                layout=self.layout,
                io=self.io,
                tally=self.tally,
                notices=self.notices,
                stopping=lambda: self.stopping,
                metadata=self.metadata,
            )
            await self._run_tasks()

    async def _finish(self, status: str) -> None:
        """Record how the run ended, as far as the database lets us."""
        try:
            await self._flush_attempts()
            await self.queue.run(QueueStore.end_run, self.run_id, status, time.time())
            totals, self.held_elsewhere = await self.queue.run(
                QueueStore.end_of_run_totals, self.run_id, time.time()
            )
            self._set_totals(totals)
        except Exception as exc:  # the database itself broke: say so, keep what we know
            reason = f"{type(exc).__name__}: {exc}"
            self._crash = self._crash or reason
            self.notices.add(f"could not record the end of the run: {reason}")
        if self.held_elsewhere:
            self.notices.add(f"{self.held_elsewhere} jobs are in progress in another live run")

    async def _run_tasks(self) -> None:
        async with asyncio.TaskGroup() as background:
            side = [
                background.create_task(self.probe.run(), name="lag-probe"),
                background.create_task(self._heartbeat(), name="heartbeat"),
                background.create_task(self.download_gate.ramp(), name="slow-start"),
            ]
            if self.settings.metrics_file:
                side.append(background.create_task(self._metrics_loop(), name="metrics-file"))
            if self.metadata is not None:
                side.append(background.create_task(self.metadata.run(), name="metadata"))
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._feeder(), name="feeder")
                    self._worker_tasks = [
                        tg.create_task(self._worker(), name=f"worker-{i}")
                        for i in range(self.settings.workers)
                    ]
            finally:
                for task in side:
                    task.cancel()

    async def _restore_host_state(self) -> None:
        """Respect a cooldown a previous run stored; a new run closes an open breaker."""
        host = self.hosts.primary
        state = await self.queue.run(QueueStore.host_state, host)
        if state is None:
            return
        remaining = (state.cooldown_until or 0.0) - time.time()
        if remaining > 0:
            self.hosts.pause_until(host, time.monotonic() + remaining)
            until = time.strftime("%H:%M:%S", time.localtime(state.cooldown_until or 0.0))
            self.notices.add(
                f"{host} asked us to wait: no request to it before {until} ({state.reason})"
            )
        if state.breaker_open:
            self.notices.add(f"{host} had refused us ({state.reason}); trying again")
            await self.queue.run(QueueStore.close_breaker, host, time.time())

    async def _follow_hosts(self) -> None:
        """A cooldown or a breaker another process of the queue set binds this one too,
        within a heartbeat."""
        now = time.time()
        for state in await self.queue.run(QueueStore.all_hosts):
            remaining = (state.cooldown_until or 0.0) - now
            if remaining > 0:
                self.hosts.pause_until(state.host, time.monotonic() + remaining)
            if state.breaker_open and self.hosts.open_breaker(state.host, state.reason):
                self.notices.add(
                    f"{state.host} refused another run of this queue ({state.reason}); "
                    "downloads from it stopped here too"
                )

    def _summary(self, status: str) -> RunSummary:
        return RunSummary(
            run_id=self.run_id,
            status=status,
            done=self.tally.done,
            failed=self.tally.failed,
            totals=self.totals,
            wall_seconds=time.monotonic() - self._started,
            lag=self.probe.summary(),
            failures=dict(self.tally.failures),
            reasons=dict(self.tally.reasons),
            slowest=self.tally.top_slowest(),
            stages=[m.snapshot() for m in self.tally.meters.values()],
            messages=self.notices.recent(10),
            held_elsewhere=self.held_elsewhere,
            crash=self._crash,
            memory=self.governor.snapshot(),
        )

    # ---- signals --------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal)

    def _remove_signal_handlers(self) -> None:
        with contextlib.suppress(Exception):
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        """First signal: stop claiming, let in-flight work finish for --grace seconds.
        Second: stop at once. Handlers only set state and schedule; the tasks do the rest."""
        self._signals += 1
        self.stop()
        if self._signals == 1:
            self.notices.add(
                f"stopping: finishing in-flight work for up to {self.settings.grace:g}s "
                "(Ctrl-C again to stop now)"
            )
            asyncio.get_running_loop().call_later(self.settings.grace, self._cancel_workers)
        else:
            self._cancel_workers()

    def stop(self) -> None:
        """Stop claiming new work; workers finish what they hold."""
        self.stopping = True
        self._want.set()

    def _cancel_workers(self) -> None:
        for task in self._worker_tasks:
            task.cancel()

    # ---- background tasks -----------------------------------------------------------------

    async def _heartbeat(self) -> None:
        s = self.settings
        interval = min(s.heartbeat_seconds, s.lease_seconds / 3)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                beat = dict(self.held)
                leases = [Lease(job_id, token) for job_id, token in beat.items()]
                lost = await self.queue.run(
                    QueueStore.heartbeat, self.run_id, leases, s.lease_seconds, time.time()
                )
                for job_id in lost:
                    # Still ours to lose? A job completed (or failed, or given back) while the
                    # beat was on its way let go of its lease itself: not a lost lease.
                    if self.held.get(job_id) == beat[job_id]:
                        self.notices.add(f"lease lost: {job_id}")
                await self._reclaim()
                await self._flush_attempts()
                self._set_totals(await self.queue.run(QueueStore.totals, time.time()))
                await self._follow_hosts()
            except Exception as exc:  # a busy database: the next beat tries again
                self.notices.add(f"heartbeat failed ({type(exc).__name__}: {exc}); retrying")
            self.disk_low = await loop.run_in_executor(self.io, self._disk_low)

    async def _metrics_loop(self) -> None:
        while True:
            took = await self._write_metrics()
            # Counting a big queue is O(jobs): keep it under ~10% of one thread.
            await asyncio.sleep(max(METRICS_INTERVAL, 10 * took))

    async def _write_metrics(self) -> float:
        """--metrics-file. The loop only takes the snapshot; the status is read on its own
        read-only store in the I/O pool, rendered and written there. Returns the seconds."""
        start = time.monotonic()
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.io,
                report_status.write_status_metrics,
                self.settings.db,
                self.settings.metrics_file,
                self.snapshot(),
            )
        except Exception as exc:
            self.notices.add(f"cannot write the metrics file: {exc}", key="metrics-file")
        return time.monotonic() - start

    def _disk_low(self) -> str | None:
        """Why claiming must pause for want of space under --out, or None."""
        try:
            free_mb = shutil.disk_usage(self.layout.root).free / 1e6
        except OSError:
            return None
        if free_mb >= self.settings.min_free_mb:
            return None
        return (
            f"free space under {self.settings.out} is {free_mb:.0f} MB, below --min-free-mb "
            f"{self.settings.min_free_mb:g}: claiming paused, looking again every {DISK_POLL:g} s"
        )

    async def _flush_attempts(self) -> None:
        rows = self.tally.take_attempts()
        if rows:
            await self.queue.run(QueueStore.record_attempts, rows)

    def _claimable(self) -> tuple[str, ...]:
        if self.hosts.breaker_open(self.hosts.primary):
            return ("downloaded", "extracted")
        return ACTIVE_STAGES

    async def _feeder(self) -> None:
        s = self.settings
        try:
            while not self.stopping:
                demand = self.idle - self.local.qsize()
                if demand <= 0:
                    self._want.clear()
                    await self._want.wait()
                    continue
                if self.disk_low:
                    self.notices.add(self.disk_low, key="disk-low")
                    await self._pause(DISK_POLL)
                    if not self.disk_low:
                        self.notices.forget("disk-low")
                        self.notices.add("free space is back: claiming again")
                    continue
                claimed = await self.queue.run(
                    QueueStore.claim, self.run_id, min(demand, 256), s.lease_seconds,
                    time.time(), self._claimable(),
                )  # fmt: skip
                self.tally.taken += len(claimed)
                for n, job in enumerate(claimed, start=1):
                    self.held[job.id] = job.token
                    self.local.put_nowait(job)
                    if n % WAKE_BATCH == 0:
                        # Let these workers take their first steps in this loop iteration
                        # and the next ones in the next: 200 workers woken at once made one
                        # iteration of 50-65 ms at start (200 first steps, 64 connections).
                        await asyncio.sleep(0)
                if claimed:
                    self.idle_until = None
                    continue
                busy = len(self._worker_tasks) - self.idle + self.local.qsize()
                if busy == 0:
                    wait = await self.queue.run(QueueStore.next_due, time.time(), self._claimable())
                    if wait is None:
                        return
                    self._say_idle(wait)
                    await self._pause(min(wait, IDLE_POLL * 4))
                else:
                    await self._pause(IDLE_POLL)
        finally:
            for _ in self._worker_tasks:
                self.local.put_nowait(None)

    def _say_idle(self, wait: float) -> None:
        """Nothing claimable now: say until when, once per wait."""
        until = time.time() + wait
        self.idle_until = until
        if wait >= 5.0:
            when = time.strftime("%H:%M:%S", time.localtime(until))
            self.notices.add(
                f"nothing to do until {when}: waiting for the next retry", key=f"idle {when}"
            )

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake early when a worker asks for work or a stop is requested."""
        self._want.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._want.wait()

    async def _worker(self) -> None:
        while True:
            self.idle += 1
            self._want.set()
            try:
                job = await self.local.get()
            finally:
                self.idle -= 1
            if job is None:
                return
            try:
                await self.processor.process(job)
            except errors.RunCrashed as exc:
                self._crash = self._crash or str(exc)
                self.notices.add(f"the run cannot go on: {exc}")
                self.stop()
                self._cancel_workers()
                return
            finally:
                self.held.pop(job.id, None)

"""The run: one event loop, N logical workers, a feeder, and the stages between gates.

    feeder ──claims──▶ local queue ──▶ worker × N ──▶ download gate ─▶ extract gate ─▶ outcome
       ▲                                            │
       └──────────── database thread ◀──────────────┘  (checkpoints, fenced by the lease token)

Structured concurrency: every task lives in a TaskGroup. Nothing here blocks the loop: SQLite runs
in the database thread, file work in the I/O pool, PDF work in the extraction processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from rpa import __version__, errors, hosts, jobs, openmetrics
from rpa.config import Settings, parse_rate_limits
from rpa.db import DbThread
from rpa.download import Downloader
from rpa.gates import Gate, RateGate
from rpa.jobs import Job
from rpa.metrics import LagProbe, Rate, WindowStats
from rpa.pool import ExtractPool
from rpa.snapshot import PoolSnapshot, RunSnapshot, StageSnapshot, Totals
from rpa.stages import STAGES, StageMeter, StageWork
from rpa.status import end_of_run_totals, queue_totals
from rpa.storage import Layout

__all__ = ["RunSummary", "Runner"]

# How often the feeder looks again when nothing is claimable but work may appear (retries
# coming due, another run releasing leases).
IDLE_POLL = 0.5
# Connections per httpx client (see Runner._make_clients).
CLIENT_POOL_SIZE = 8
# How often --metrics-file is rewritten during a run.
METRICS_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    status: str  # finished | interrupted | denied
    done: int
    failed: int
    totals: Totals
    wall_seconds: float
    lag: WindowStats
    failures: dict[str, int]
    slowest: list[tuple[str, float]]
    stages: list[StageSnapshot]
    messages: list[str]
    #: jobs leased by another live run at the end (two runs sharing one queue)
    held_elsewhere: int = 0

    @property
    def exit_code(self) -> int:
        """130 interrupted; 1 if anything failed, a host refused us, or work is left that no
        live run holds; else 0 (jobs another live run is finishing are not a failure)."""
        if self.status == "interrupted":
            return 130
        left_over = self.totals.remaining - self.held_elsewhere
        if self.status == "denied" or self.totals.failed or left_over > 0:
            return 1
        return 0


#: niceness of the I/O threads relative to the event loop's (Linux schedules threads one by
#: one). Hashing and writing 64 downloads at once on 8 threads left the loop thread a fifth of
#: a core on a 2-core machine (40-80 ms lags at start); below it, they take what it leaves.
IO_NICE = 5


def _lower_thread_priority(nice: int) -> None:
    """Run the calling thread `nice` steps below the process (Linux: a per-thread value)."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)


class Runner(StageWork):
    """Runs the queue in `settings.db` until nothing claimable is left (or it is told to stop)."""

    def __init__(self, settings: Settings, *, command: str = "run") -> None:
        self.settings = settings
        self.command = command
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.layout = Layout(settings.out)
        self.db = DbThread(settings.db)
        self.io = ThreadPoolExecutor(
            max_workers=8,
            thread_name_prefix="rpa-io",
            initializer=_lower_thread_priority,
            initargs=(IO_NICE,),
        )
        self.prefetch_gate = Gate("prefetch", settings.prefetch)
        self.download_gate = Gate("download", settings.download_concurrency)
        self.extract_gate = Gate("extract", settings.extract_concurrency_resolved)
        self.host = urlsplit(settings.pdf_url.replace("{id}", "x")).hostname or ""
        count, period = parse_rate_limits(settings.rate_limits).get(self.host, (None, 1.0))
        # Always present: even a host with no rate cap gets Retry-After cooldowns.
        self.host_gate = RateGate(f"host {self.host}", count, period)
        self.pool = ExtractPool(
            settings.extract_workers_resolved,
            mode=settings.extract_pool,
            timeout=settings.extract_timeout,
            max_mb=settings.extract_max_mb or None,
            nice=settings.extract_nice,
            extractor=settings.extractor,
        )
        self.probe = LagProbe()
        self._lag_stats, self._lag_at = self.probe.window.stats(), 0.0
        self.meters = {name: StageMeter(name) for name in STAGES}
        self.papers = Rate(60.0)
        self.pages = Rate(60.0)
        self.bytes = Rate(60.0)
        self.held: dict[str, int] = {}
        self.idle = 0
        self.local: asyncio.Queue[Job | None] = asyncio.Queue()
        self.totals = Totals()
        self.held_elsewhere = 0
        self.done = 0
        self.failed = 0
        self.taken = 0  # jobs this run took from `queued`, less those it gave back unchanged
        self.retried = 0  # jobs this run gave back to wait for a retry
        self._beat = (0, 0, 0, 0)  # taken, done, failed, retried when self.totals was read
        self.failures: Counter[str] = Counter()
        self.slowest: list[tuple[str, float]] = []
        self.messages: list[str] = []
        self.breaker_open = False
        self.stopping = False
        self.disk_low = False
        self._attempt_rows: list[tuple[Any, ...]] = []
        self._want = asyncio.Event()
        self._started = time.monotonic()
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._signals = 0

    # ---- snapshot -------------------------------------------------------------------------

    def _lag(self) -> WindowStats:
        """The probe's last minute (~6,000 samples to sort, ~0.5 ms of loop), at most once a
        second: the live table asks four times a second."""
        now = time.monotonic()
        if now - self._lag_at >= 1.0:
            self._lag_stats, self._lag_at = self.probe.window.stats(), now
        return self._lag_stats

    def _set_totals(self, totals: Totals) -> None:
        self.totals = totals
        self._beat = (self.taken, self.done, self.failed, self.retried)

    def _fresh_totals(self) -> Totals:
        """The queue totals of the last heartbeat, moved on by what this run did since: jobs
        took left `queued` for `in_progress`, and those it finished or gave back for a retry
        left `in_progress` (other runs' moves show at the next heartbeat)."""
        t = self.totals
        taken, done, failed, retried = (
            now - then
            for now, then in zip(
                (self.taken, self.done, self.failed, self.retried), self._beat, strict=True
            )
        )
        return Totals(
            queued=max(0, t.queued - taken),
            in_progress=max(0, t.in_progress + taken - done - failed - retried),
            retry_scheduled=t.retry_scheduled + retried,
            done=t.done + done,
            failed=t.failed + failed,
        )

    def snapshot(self) -> RunSnapshot:
        stats = self.pool.statistics()
        totals = self._fresh_totals()
        remaining = totals.remaining
        papers_per_s = self.papers.per_second()
        gates = [
            self.prefetch_gate.statistics(),
            self.download_gate.statistics(),
            self.extract_gate.statistics(),
        ]
        if self.host_gate.count is not None:
            gates.append(self.host_gate.statistics())
        gates.append(self.db.gate.statistics())
        return RunSnapshot(
            run_id=self.run_id,
            elapsed=time.monotonic() - self._started,
            gates=gates,
            stages=[m.snapshot() for m in self.meters.values()],
            totals=totals,
            papers_per_min=papers_per_s * 60,
            pages_per_s=self.pages.per_second(),
            mb_per_s=self.bytes.per_second() / 1e6,
            eta_seconds=remaining / papers_per_s if papers_per_s > 0 else None,
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
            done_this_run=self.done,
            failed_this_run=self.failed,
            stopping=self.stopping,
            messages=list(self.messages[-5:]),
        )

    # ---- the run --------------------------------------------------------------------------

    async def run(self) -> RunSummary:
        s = self.settings
        await self.db.open()
        loop = asyncio.get_running_loop()
        status = "finished"
        try:
            await loop.run_in_executor(self.io, self.layout.prepare)
            # the disk guard holds from the first claim, not from the first heartbeat
            self.disk_low = await loop.run_in_executor(self.io, self._disk_low)
            reclaimed = await self.db.run(
                jobs.reclaim_stale, time.time(), 3 * s.heartbeat_seconds + 5
            )
            if reclaimed["dead_leases"] or reclaimed["expired_leases"]:
                self.messages.append(
                    f"reclaimed {reclaimed['dead_leases']} leases of "
                    f"{reclaimed['dead_runs']} dead runs, {reclaimed['expired_leases']} expired"
                )
            settings_json = json.dumps(dataclasses.asdict(s), default=str)
            await self.db.run(
                jobs.register_run, self.run_id, self.command, settings_json, time.time()
            )
            await self._restore_host_state()
            self._set_totals(await self.db.run(queue_totals, time.time()))
            self._install_signal_handlers()
            # Built in a thread: each client loads the CA bundle and builds its SSL context,
            # tens of milliseconds the loop would otherwise stand still for.
            clients = await asyncio.to_thread(self._make_clients)
            async with contextlib.AsyncExitStack() as stack:
                for client in clients:
                    await stack.enter_async_context(client)
                await stack.enter_async_context(self.pool)
                self.downloader = Downloader(
                    clients, self.io, int(s.max_pdf_mb * 1024 * 1024), gate=self.host_gate
                )
                await self._run_tasks()
            if self._signals:
                status = "interrupted"
            elif self.breaker_open:
                status = "denied"
        except asyncio.CancelledError:
            status = "interrupted"
        finally:
            self._remove_signal_handlers()
            await self._flush_attempts()
            await self.db.run(jobs.end_run, self.run_id, status, time.time())
            totals, self.held_elsewhere = await self.db.run(
                end_of_run_totals, self.run_id, time.time()
            )
            self._set_totals(totals)
            if self.held_elsewhere:
                self.messages.append(
                    f"{self.held_elsewhere} jobs are in progress in another live run"
                )
            if s.metrics_file:
                await self._write_metrics()  # the final figures, with this run ended
            await self.db.close()
            self.io.shutdown(wait=False)
        return self._summary(status)

    async def _run_tasks(self) -> None:
        async with asyncio.TaskGroup() as background:
            side = [
                background.create_task(self.probe.run(), name="lag-probe"),
                background.create_task(self._heartbeat(), name="heartbeat"),
            ]
            if self.settings.metrics_file:
                side.append(background.create_task(self._metrics_loop(), name="metrics-file"))
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
        row = await self.db.run(hosts.host_state, self.host)
        if row is None:
            return
        cooldown_until, breaker_open, reason = row
        remaining = (cooldown_until or 0.0) - time.time()
        if remaining > 0:
            self.host_gate.pause_until(time.monotonic() + remaining)
            self.messages.append(
                f"{self.host} asked us to wait: no request before {remaining:.0f}s ({reason})"
            )
        if breaker_open:
            self.messages.append(f"{self.host} had refused us ({reason}); trying again")
            await self.db.run(hosts.close_breaker, self.host, time.time())

    def _summary(self, status: str) -> RunSummary:
        return RunSummary(
            run_id=self.run_id,
            status=status,
            done=self.done,
            failed=self.failed,
            totals=self.totals,
            wall_seconds=time.monotonic() - self._started,
            lag=self.probe.summary(skip_seconds=1.0),
            failures=dict(self.failures),
            slowest=sorted(self.slowest, key=lambda x: -x[1])[:5],
            stages=[m.snapshot() for m in self.meters.values()],
            messages=self.messages,
            held_elsewhere=self.held_elsewhere,
        )

    def _make_clients(self) -> list[httpx.AsyncClient]:
        """The HTTP clients: --max-connections split into pools of at most CLIENT_POOL_SIZE.

        httpx's pool does work per request that grows with its connection count
        (encode/httpx#3215); the benchmark measured 64 connections as 8 clients of 8 at about
        twice the MB/s and half the CPU per GB of one client of 64.
        """
        s = self.settings
        total = s.max_connections_resolved
        count = -(-total // CLIENT_POOL_SIZE)
        sizes = [total // count + (1 if i < total % count else 0) for i in range(count)]
        timeout = httpx.Timeout(s.read_timeout, connect=s.connect_timeout)
        headers = {"User-Agent": self._user_agent()}
        # One TLS context for all: loading the CA bundle holds the GIL for ~30 ms, so a
        # context per client starved the loop thread for a quarter of a second at start.
        tls = httpx.create_ssl_context()
        return [
            httpx.AsyncClient(
                timeout=timeout,
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                headers=headers,
                follow_redirects=True,
                verify=tls,
            )
            for size in sizes
        ]

    def _user_agent(self) -> str:
        if self.settings.user_agent:
            return self.settings.user_agent
        contact = f" (mailto:{self.settings.mailto})" if self.settings.mailto else ""
        return f"rpa/{__version__}{contact}"

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
            self.messages.append(
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
        while True:
            await asyncio.sleep(interval)
            lost = await self.db.run(
                jobs.heartbeat, self.run_id, list(self.held.items()), s.lease_seconds, time.time()
            )
            for job_id in lost:
                self.messages.append(f"lease lost: {job_id}")
            await self._flush_attempts()
            self._set_totals(await self.db.run(queue_totals, time.time()))
            self.disk_low = await asyncio.get_running_loop().run_in_executor(
                self.io, self._disk_low
            )

    async def _metrics_loop(self) -> None:
        while True:
            took = await self._write_metrics()
            # Counting a big queue is O(jobs): keep it under ~10% of one thread.
            await asyncio.sleep(max(METRICS_INTERVAL, 10 * took))

    async def _write_metrics(self) -> float:
        """--metrics-file. The loop only takes the snapshot; the status is read on its own
        read-only connection in the I/O pool (a million-job queue takes about a second to
        count, which must not hold up the database thread), rendered and written there (tmp,
        fsync, rename). Returns the seconds it took."""
        start = time.monotonic()
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.io,
                openmetrics.write_status_metrics,
                self.settings.db,
                self.settings.metrics_file,
                self.snapshot(),
            )
        except (OSError, sqlite3.Error, errors.DatabaseError) as exc:
            message = f"cannot write the metrics file: {exc}"
            if message not in self.messages:
                self.messages.append(message)
        return time.monotonic() - start

    def _disk_low(self) -> bool:
        free_mb = shutil.disk_usage(self.layout.root).free / 1e6
        return free_mb < self.settings.min_free_mb

    async def _flush_attempts(self) -> None:
        rows, self._attempt_rows = self._attempt_rows, []
        if rows:
            await self.db.run(jobs.record_attempts, rows)

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
                    low = f"free space under {s.out} below {s.min_free_mb:g} MB: claiming paused"
                    if low not in self.messages:
                        self.messages.append(low)
                    await self._pause(5.0)
                    continue
                stages = ("downloaded", "extracted") if self.breaker_open else None
                claimed = await self.db.run(
                    jobs.claim, self.run_id, min(demand, 256), s.lease_seconds, time.time(), stages
                )
                self.taken += len(claimed)
                for job in claimed:
                    self.held[job.id] = job.token
                    self.local.put_nowait(job)
                if claimed:
                    continue
                busy = len(self._worker_tasks) - self.idle + self.local.qsize()
                if busy == 0:
                    wait = await self.db.run(_next_due, time.time(), self.breaker_open)
                    if wait is None:
                        return
                    await self._pause(min(wait, IDLE_POLL * 4))
                else:
                    await self._pause(IDLE_POLL)
        finally:
            for _ in self._worker_tasks:
                self.local.put_nowait(None)

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
                await self._process(job)
            finally:
                self.held.pop(job.id, None)


def _next_due(conn: Any, now: float, breaker_open: bool) -> float | None:
    """Seconds until some job may become claimable by us; None if nothing is left for us."""
    stages = (
        "('downloaded', 'extracted')" if breaker_open else "('queued', 'downloaded', 'extracted')"
    )
    row = conn.execute(
        f"SELECT min(next_attempt_at) AS due, count(*) AS n FROM jobs WHERE stage IN {stages} "
        "AND lease_owner IS NULL"
    ).fetchone()
    if row["n"] == 0:
        return None
    return max(0.0, float(row["due"] or 0) - now)

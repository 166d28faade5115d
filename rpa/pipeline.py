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
import shutil
import signal
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from rpa import __version__, errors, jobs
from rpa.config import Settings, parse_rate_limits
from rpa.db import DbThread
from rpa.download import Downloader
from rpa.gates import Gate, RateGate
from rpa.jobs import Job
from rpa.metrics import LagProbe, Rate, Window, WindowStats
from rpa.pool import ExtractPool
from rpa.retry import retry_delay
from rpa.snapshot import PoolSnapshot, RunSnapshot, StageSnapshot, Totals
from rpa.status import queue_totals
from rpa.storage import Layout

__all__ = ["RunSummary", "Runner"]

STAGES = ("download", "extract", "outcome")
_DOWNLOAD_FIELDS = (
    "pdf_path", "pdf_bytes", "pdf_sha256", "final_url", "http_status", "download_seconds"
)  # fmt: skip
# How often the feeder looks again when nothing is claimable but work may appear (retries
# coming due, another run releasing leases).
IDLE_POLL = 0.5


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

    @property
    def exit_code(self) -> int:
        if self.status == "interrupted":
            return 130
        if self.status == "denied" or self.totals.failed or self.totals.remaining:
            return 1
        return 0


class _StageMeter:
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


class Runner:
    """Runs the queue in `settings.db` until nothing claimable is left (or it is told to stop)."""

    def __init__(self, settings: Settings, *, command: str = "run") -> None:
        self.settings = settings
        self.command = command
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.layout = Layout(settings.out)
        self.db = DbThread(settings.db)
        self.io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="rpa-io")
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
        self.meters = {name: _StageMeter(name) for name in STAGES}
        self.papers = Rate(60.0)
        self.pages = Rate(60.0)
        self.bytes = Rate(60.0)
        self.held: dict[str, int] = {}
        self.idle = 0
        self.local: asyncio.Queue[Job | None] = asyncio.Queue()
        self.totals = Totals()
        self.done = 0
        self.failed = 0
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

    def snapshot(self) -> RunSnapshot:
        stats = self.pool.statistics()
        remaining = self.totals.remaining
        papers_per_s = self.papers.per_second()
        gates = [self.download_gate.statistics(), self.extract_gate.statistics()]
        if self.host_gate.count is not None:
            gates.append(self.host_gate.statistics())
        return RunSnapshot(
            run_id=self.run_id,
            elapsed=time.monotonic() - self._started,
            gates=gates,
            stages=[m.snapshot() for m in self.meters.values()],
            totals=self.totals,
            papers_per_min=papers_per_s * 60,
            pages_per_s=self.pages.per_second(),
            mb_per_s=self.bytes.per_second() / 1e6,
            eta_seconds=remaining / papers_per_s if papers_per_s > 0 else None,
            lag=self.probe.window.stats(),
            workers_busy=len(self._worker_tasks) - self.idle,
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
            self.totals = await self.db.run(queue_totals, time.time())
            self._install_signal_handlers()
            timeout = httpx.Timeout(s.read_timeout, connect=s.connect_timeout)
            limits = httpx.Limits(
                max_connections=s.max_connections_resolved,
                max_keepalive_connections=s.max_connections_resolved,
            )
            headers = {"User-Agent": self._user_agent()}
            async with (
                httpx.AsyncClient(
                    timeout=timeout, limits=limits, headers=headers, follow_redirects=True
                ) as client,
                self.pool,
            ):
                self.downloader = Downloader(client, self.io, int(s.max_pdf_mb * 1024 * 1024))
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
            self.totals = await self.db.run(queue_totals, time.time())
            await self.db.close()
            self.io.shutdown(wait=False)
        return self._summary(status)

    async def _run_tasks(self) -> None:
        async with asyncio.TaskGroup() as background:
            side = [
                background.create_task(self.probe.run(), name="lag-probe"),
                background.create_task(self._heartbeat(), name="heartbeat"),
            ]
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
        row = await self.db.run(_host_state, self.host)
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
            await self.db.run(_close_breaker, self.host, time.time())

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
        )

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
            self.totals = await self.db.run(queue_totals, time.time())
            self.disk_low = await asyncio.get_running_loop().run_in_executor(
                self.io, self._disk_low
            )

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
                    self.messages.append(f"free space under {s.out} below {s.min_free_mb:g} MB")
                    await self._pause(5.0)
                    continue
                stages = ("downloaded", "extracted") if self.breaker_open else None
                claimed = await self.db.run(
                    jobs.claim, self.run_id, min(demand, 256), s.lease_seconds, time.time(), stages
                )
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

    # ---- one job --------------------------------------------------------------------------

    async def _process(self, job: Job) -> None:
        stage_of = {"queued": "download", "downloaded": "extract", "extracted": "outcome"}
        meter_name = stage_of[job.stage]
        start = time.perf_counter()
        current: Job | None = job
        try:
            if job.stage == "queued":
                current = await self._stage_download(job)
            if current is not None and current.stage == "downloaded":
                meter_name = "extract"
                current = await self._stage_extract(current, verify=job.stage == "downloaded")
            if current is not None:
                meter_name = "outcome"
                await self._stage_outcome(current, total=time.perf_counter() - start)
        except errors.JobError as exc:
            await self._fail(current or job, exc, meter_name)

    def _attempt(
        self,
        job: Job,
        stage: str,
        started: float,
        wait: float,
        took: float,
        outcome: str,
        kind: str | None = None,
    ) -> None:
        self._attempt_rows.append((job.id, self.run_id, stage, started, wait, took, outcome, kind))

    async def _stage_download(self, job: Job) -> Job | None:
        meter = self.meters["download"]
        dest = self.layout.pdf_path(job.id)
        started = time.time()
        adopted = await asyncio.get_running_loop().run_in_executor(
            self.io, self.layout.adopt_pdf, dest
        )
        if adopted is not None:
            # A complete file from an interrupted run: final names only ever hold whole PDFs.
            size, sha256 = adopted
            new = dataclasses.replace(
                job, pdf_path=str(dest), pdf_bytes=size, pdf_sha256=sha256, download_seconds=0.0
            )
        else:
            url = self.layout.url(self.settings.pdf_url, job.id)
            async with self.download_gate as wait:
                wait += await self.host_gate.acquire()
                if self.breaker_open:
                    raise errors.AccessDenied(f"downloads from {self.host} are stopped")
                meter.running += 1
                t0 = time.perf_counter()
                try:
                    result = await self.downloader.fetch(url, dest)
                except errors.JobError as exc:
                    self._attempt(
                        job, "download", started, wait, time.perf_counter() - t0, "error", exc.kind
                    )
                    raise
                finally:
                    meter.running -= 1
            meter.done += 1
            meter.durations.add(result.seconds)
            self.bytes.add(result.bytes)
            self._attempt(job, "download", started, wait, result.seconds, "ok")
            new = dataclasses.replace(
                job,
                pdf_path=result.path,
                pdf_bytes=result.bytes,
                pdf_sha256=result.sha256,
                final_url=result.final_url,
                http_status=result.status,
                download_seconds=result.seconds,
            )
        fields = {name: getattr(new, name) for name in _DOWNLOAD_FIELDS}
        ok = await self.db.run(
            jobs.checkpoint, job.id, job.token, self.run_id, "downloaded", fields, time.time()
        )
        if not ok:
            self.messages.append(f"lease lost before download checkpoint: {job.id}")
            return None
        return dataclasses.replace(new, stage="downloaded")

    async def _stage_extract(self, job: Job, *, verify: bool) -> Job | None:
        """Extract the checkpointed PDF. `verify`: the PDF comes from an earlier run, so check
        it is still the file that was checkpointed (size and sha256) before trusting it."""
        meter = self.meters["extract"]
        loop = asyncio.get_running_loop()
        pdf_path = job.pdf_path or ""
        intact = pdf_path and (
            not verify
            or await loop.run_in_executor(
                self.io, self.layout.verify_pdf, pdf_path, job.pdf_bytes, job.pdf_sha256
            )
        )
        if not intact:
            # The checkpointed file is gone or changed: fetch it again, from the queued stage.
            await self.db.run(
                jobs.checkpoint,
                job.id,
                job.token,
                self.run_id,
                "queued",
                {"pdf_path": None},
                time.time(),
            )
            self.messages.append(f"{job.id}: stored PDF missing or changed, downloading again")
            again = await self._stage_download(dataclasses.replace(job, stage="queued"))
            if again is None:
                return None
            job = again
            pdf_path = job.pdf_path or ""
        text_path = self.layout.text_path(job.id)
        started = time.time()
        async with self.extract_gate as wait:
            meter.running += 1
            t0 = time.perf_counter()
            try:
                result = await self.pool.extract(pdf_path, str(text_path))
            except errors.JobError as exc:
                self._attempt(
                    job, "extract", started, wait, time.perf_counter() - t0, "error", exc.kind
                )
                raise
            finally:
                meter.running -= 1
        took = time.perf_counter() - t0
        if not result.get("ok"):
            self._attempt(job, "extract", started, wait, took, "error", str(result.get("kind")))
            raise errors.error_for_kind(str(result.get("kind")), str(result.get("message", "")))
        meter.done += 1
        meter.durations.add(took)
        self.pages.add(float(str(result.get("pages", 0))))
        self._attempt(job, "extract", started, wait, took, "ok")
        result["text_path"] = str(text_path)
        ok = await self.db.run(
            jobs.checkpoint,
            job.id,
            job.token,
            self.run_id,
            "extracted",
            {
                "text_path": str(text_path),
                "extract_json": json.dumps(result),
                "extract_seconds": took,
            },
            time.time(),
        )
        if not ok:
            self.messages.append(f"lease lost before extract checkpoint: {job.id}")
            return None
        return dataclasses.replace(job, stage="extracted", extract=result, extract_seconds=took)

    async def _stage_outcome(self, job: Job, total: float) -> None:
        meter = self.meters["outcome"]
        t0 = time.perf_counter()
        started = time.time()
        record = self.layout.outcome_record(job, self.run_id)
        path = self.layout.outcome_path(job.id)
        await asyncio.get_running_loop().run_in_executor(
            self.io, self.layout.write_json, path, record
        )
        took = time.perf_counter() - t0
        row = self.layout.result_row(record)
        ok = await self.db.run(
            jobs.complete, job.id, job.token, self.run_id, row, str(path), time.time()
        )
        if not ok:
            self.messages.append(f"lease lost before completion: {job.id}")
            return
        meter.done += 1
        meter.durations.add(took)
        self._attempt(job, "outcome", started, 0.0, took, "ok")
        self.done += 1
        self.papers.add()
        self.slowest.append((job.id, total))
        if len(self.slowest) > 50:
            self.slowest = sorted(self.slowest, key=lambda x: -x[1])[:10]

    async def _fail(self, job: Job, exc: errors.JobError, stage: str) -> None:
        s = self.settings
        meter = self.meters[stage]
        now = time.time()
        if isinstance(exc, errors.RunLevelError):
            if not self.breaker_open:
                self.breaker_open = True
                self.messages.append(
                    f"{self.host} refused us ({exc.message}); downloads stopped. Finishing what "
                    "is downloaded. Wait before `rpa resume`; arXiv's bulk data is the way for "
                    "large lists."
                )
                await self.db.run(_open_breaker, self.host, exc.message, now)
            await self.db.run(jobs.release, self.run_id, [(job.id, job.token)])
            return
        crashed = isinstance(exc, errors.WorkerCrashed)
        if crashed and job.crashes + 1 >= s.poison_after:
            exc = errors.Poison(f"killed {job.crashes + 1} extraction processes: {exc.message}")
        final = isinstance(exc, errors.PermanentError) or job.attempts + 1 >= s.max_attempts
        next_at = 0.0
        if not final:
            delay = retry_delay(job.attempts + 1, s.retry_base, s.retry_max, exc.retry_after)
            next_at = now + delay
            if exc.retry_after:
                self.host_gate.pause_until(time.monotonic() + exc.retry_after)
                await self.db.run(_cooldown, self.host, now + exc.retry_after, exc.message, now)
        ok = await self.db.run(
            jobs.set_outcome,
            job.id,
            job.token,
            self.run_id,
            kind=exc.kind,
            message=exc.message,
            now=now,
            final=final,
            next_attempt_at=next_at,
            crashed=crashed,
        )
        if not ok:
            return
        if final:
            meter.failed += 1
            self.failed += 1
            self.failures[exc.kind] += 1
        else:
            meter.retried += 1


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


def _open_breaker(conn: Any, host: str, reason: str, now: float) -> None:
    conn.execute(
        "INSERT INTO hosts (host, breaker_open, reason, updated_at) VALUES (?, 1, ?, ?) "
        "ON CONFLICT(host) DO UPDATE SET breaker_open = 1, reason = ?, updated_at = ?",
        (host, reason, now, reason, now),
    )


def _cooldown(conn: Any, host: str, until: float, reason: str, now: float) -> None:
    conn.execute(
        "INSERT INTO hosts (host, cooldown_until, reason, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(host) DO UPDATE SET cooldown_until = max(coalesce(cooldown_until, 0), ?), "
        "reason = ?, updated_at = ?",
        (host, until, reason, now, until, reason, now),
    )


def _host_state(conn: Any, host: str) -> tuple[float | None, bool, str] | None:
    row = conn.execute(
        "SELECT cooldown_until, breaker_open, reason FROM hosts WHERE host = ?", (host,)
    ).fetchone()
    return None if row is None else (row[0], bool(row[1]), row[2] or "")


def _close_breaker(conn: Any, host: str, now: float) -> None:
    conn.execute("UPDATE hosts SET breaker_open = 0, updated_at = ? WHERE host = ?", (now, host))

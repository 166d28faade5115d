"""The stages of one job: download -> extract -> outcome, each behind its gate.

`StageWork` is the part of the Runner that processes one claimed job; the Runner (pipeline.py)
owns the run's life cycle, the feeder and the workers. Every checkpoint goes through the
database thread and is fenced by the job's lease token; file work goes to the I/O pool; PDF work
to the extraction processes. Failures are classified here: retry later, fail for good, open the
host's breaker, or quarantine a poison PDF.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rpa import errors, hosts, jobs
from rpa.config import Settings
from rpa.db import DbThread
from rpa.download import Downloader
from rpa.gates import Gate, RateGate
from rpa.jobs import Job
from rpa.metrics import Rate, Window
from rpa.pool import ExtractPool
from rpa.retry import retry_delay
from rpa.snapshot import StageSnapshot
from rpa.storage import Layout

__all__ = ["STAGES", "StageMeter", "StageWork"]

STAGES = ("download", "extract", "outcome")
_DOWNLOAD_FIELDS = (
    "pdf_path", "pdf_bytes", "pdf_sha256", "final_url", "http_status", "download_seconds"
)  # fmt: skip


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


class StageWork:
    """Processing of one claimed job. Mixed into Runner, which provides these attributes."""

    settings: Settings
    run_id: str
    db: DbThread
    io: ThreadPoolExecutor
    layout: Layout
    pool: ExtractPool
    downloader: Downloader
    prefetch_gate: Gate
    download_gate: Gate
    extract_gate: Gate
    host_gate: RateGate
    host: str
    meters: dict[str, StageMeter]
    papers: Rate
    pages: Rate
    bytes: Rate
    done: int
    failed: int
    retried: int
    taken: int
    failures: Counter[str]
    slowest: list[tuple[str, float]]
    messages: list[str]
    breaker_open: bool
    _attempt_rows: list[tuple[Any, ...]]

    # ---- one job --------------------------------------------------------------------------

    async def _process(self, job: Job) -> None:
        stage_of = {"queued": "download", "downloaded": "extract", "extracted": "outcome"}
        meter_name = stage_of[job.stage]
        start = time.perf_counter()
        current: Job | None = job
        try:
            if job.stage in ("queued", "downloaded"):
                # The prefetch gate bounds the papers between download and extracted: with
                # 200 workers and nothing else, every worker's PDF would be fetched at once
                # at start (CPU the loop needs, disk nobody needs yet).
                async with self.prefetch_gate:
                    if job.stage == "queued":
                        current = await self._stage_download(job)
                    if current is not None and current.stage == "downloaded":
                        meter_name = "extract"
                        current = await self._stage_extract(
                            current, verify=job.stage == "downloaded"
                        )
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

    @contextlib.contextmanager
    def _running(
        self, meter: StageMeter, job: Job, stage: str, started: float, wait: float
    ) -> Iterator[float]:
        """One attempt at a stage's work, inside its gate: counted as running, and recorded
        as an error attempt if it raises a JobError. Yields the perf_counter start."""
        meter.running += 1
        t0 = time.perf_counter()
        try:
            yield t0
        except errors.JobError as exc:
            self._attempt(job, stage, started, wait, time.perf_counter() - t0, "error", exc.kind)
            raise
        finally:
            meter.running -= 1

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
                with self._running(meter, job, "download", started, wait):
                    result = await self.downloader.fetch(url, dest)
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
            with self._running(meter, job, "extract", started, wait) as t0:
                result = await self.pool.extract(pdf_path, str(text_path))
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
                await self.db.run(hosts.open_breaker, self.host, exc.message, now)
            await self.db.run(jobs.release, self.run_id, [(job.id, job.token)])
            self.taken -= 1  # back to `queued` as it was
            return
        crashed = isinstance(exc, errors.WorkerCrashed)
        if crashed and job.crashes + 1 >= s.poison_after:
            exc = errors.Poison(f"killed {job.crashes + 1} extraction processes: {exc.message}")
        final = isinstance(exc, errors.PermanentError) or job.attempts + 1 >= s.max_attempts
        next_at = 0.0
        if not final:
            delay = retry_delay(job.attempts + 1, s.retry_base, s.retry_max, exc.retry_after)
            next_at = now + delay
        if exc.retry_after:  # the host's cooldown binds every job, this one's last try or not
            self.host_gate.pause_until(time.monotonic() + exc.retry_after)
            await self.db.run(
                hosts.set_cooldown, self.host, now + exc.retry_after, exc.message, now
            )
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
            self.retried += 1

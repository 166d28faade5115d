"""The work on one paper: download -> extract -> outcome, each behind its gate.

`JobProcessor` is a component with its own state: it is given the queue, the source, the
extraction pool, the gates, the output layout and the run's tally, and can be built and tested
without a whole run. Every checkpoint goes through the queue and is fenced by the job's lease
token; file work goes to the I/O pool; PDF work to the extraction processes.

Whatever goes wrong while one paper is worked on ends that paper's attempt, explained, and the
run goes on: a JobError as it is, any other exception through `rpa.classify` (a bug is
`internal`, no space anywhere is `disk_full`); what it means (charge the paper, give it back,
hold it for a host that refused us, pause its host) is the failure policy's verdict
(rpa.run.policy), carried out by rpa.run.failure. Only a failure to record the failure (the
database itself broken) ends the run, as `RunCrashed`. A download removed under rpa (--out's
files deleted) is downloaded again, once, uncounted and said (`_fetch`, `_work`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rpa import errors
from rpa.classify import classify
from rpa.config import Settings
from rpa.extract.pool import ExtractPool
from rpa.extract.protocol import PDF_MISSING, PaperTask
from rpa.extract.record import outcome_record
from rpa.gates import Gate
from rpa.hosts.health import HostHealth
from rpa.layout import Layout
from rpa.notices import Notices
from rpa.queue import jobs
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import Attempt, Completion, Job
from rpa.run import policy
from rpa.run.completer import Completer
from rpa.run.disk import DiskGuard
from rpa.run.failure import FailureRecorder
from rpa.run.metadata import MetadataService
from rpa.run.publish import discard, private_name, publish_record, stage_record
from rpa.run.tally import StageMeter, Tally
from rpa.sources.base import Download, Source, Vanished
from rpa.sources.publish import keep_download
from rpa.sources.stored import adopt_pdf

__all__ = ["JobGates", "JobProcessor"]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _rebuilt(result: dict[str, object]) -> errors.JobError:
    """The JobError a failed paper task sent back as plain data (its folder too: the disk
    guard watches the folder a write failed in)."""
    error = errors.error_for_kind(str(result.get("kind")), str(result.get("message", "")))
    if isinstance(error, errors.ConditionError) and result.get("folder"):
        error.folder = str(result["folder"])
    return error


#: the stage a claimed job's next step belongs to, by its checkpoint
_NEXT_STAGE = {"queued": "download", "downloaded": "extract", "extracted": "outcome"}


@dataclass(frozen=True, slots=True)
class JobGates:
    """The gates one paper passes: prefetch (downloaded ahead of extraction, at most),
    download (at once; a source off the network passes it by) and extract (at once)."""

    prefetch: Gate
    download: Gate
    extract: Gate


class JobProcessor:
    """Processes claimed jobs for one run."""

    def __init__(
        self,
        *,
        settings: Settings,
        run_id: str,
        queue: AsyncQueue,
        source: Source,
        pool: ExtractPool,
        gates: JobGates,
        hosts: HostHealth,
        layout: Layout,
        io: Executor,
        tally: Tally,
        notices: Notices,
        stopping: Callable[[], bool] = lambda: False,
        completer: Completer,
        metadata: MetadataService | None = None,
        disk: DiskGuard | None = None,
    ) -> None:
        self.settings = settings
        self.run_id = run_id
        self.queue = queue
        self.source = source
        self.pool = pool
        self.gates = gates
        self.hosts = hosts
        self.layout = layout
        self.io = io
        self.tally = tally
        self.notices = notices
        self.completer = completer
        self.metadata = metadata
        self.max_bytes = int(settings.max_pdf_mb * 1024 * 1024)
        self.vouch = ""  # the feeder's (Feeder.run): until when its leases surely hold
        self.failures = FailureRecorder(
            settings=settings, run_id=run_id, queue=queue, hosts=hosts, tally=tally,
            notices=notices, network=source.network, stopping=stopping, disk=disk,
        )  # fmt: skip

    async def _in_io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    # ---- one job --------------------------------------------------------------------------

    async def process(self, job: Job) -> None:
        """Take `job` as far as it goes. Raises only CancelledError and RunCrashed."""
        stage = _NEXT_STAGE[job.stage]
        start = time.perf_counter()
        # Its metadata is asked for now, batched with every paper claimed meanwhile, so that it
        # is there when the extraction process writes the record.
        meta = asyncio.ensure_future(self.metadata.get(job.id)) if self.metadata else None
        try:
            if job.stage == "extracted":  # an earlier version's checkpoint: its record only
                await self._outcome(job, total=0.0)
                return
            # The prefetch gate bounds the papers between download and done: with 200
            # workers and nothing else, every worker's PDF would be fetched at once at start
            # (CPU the loop needs, disk nobody needs yet).
            async with self.gates.prefetch:
                found = await self._bytes(job)
                if found is not None:
                    stage = "extract"
                    await self._work(job, found, start, meta)
        except errors.StayedAway:
            raise  # the run's condition, not this paper's: the run stops (rpa.run.feeder)
        except Exception as exc:
            await self.failures.fail(job, classify(exc, f"the {stage} stage"), stage)
        finally:
            self.tally.let_go(job.id)
            if meta is not None and not meta.done():
                meta.cancel()  # (the request itself stays: rpa.run.metadata shields it)
            elif meta is not None and not meta.cancelled():
                meta.exception()  # looked at: the API's stop is the run's, said once

    def _attempt(
        self, job: Job, stage: str, started: float, wait: float, took: float,
        outcome: str = "ok", kind: str | None = None,
    ) -> None:  # fmt: skip
        self.tally.attempt(Attempt(job.id, self.run_id, stage, started, wait, took, outcome, kind))

    @contextlib.contextmanager
    def _running(
        self, meter: StageMeter, job: Job, stage: str, started: float, wait: float,
        turn: list[float] | None = None,
    ) -> Iterator[float]:  # fmt: skip
        """One attempt at a stage's work, inside its gate: counted as running, and recorded
        as an error attempt if it raises. Yields the perf_counter start. `turn`: filled with
        the perf_counter time the work itself began, if later (a wait in the extraction pool
        for a run alone): the time before it is recorded as a wait."""
        meter.running += 1
        t0 = time.perf_counter()
        try:
            yield t0
        except Exception as exc:
            kind = classify(exc).kind
            began = turn[0] if turn else t0
            took = time.perf_counter() - began
            self._attempt(job, stage, started, wait + began - t0, took, "error", kind)
            raise
        finally:
            meter.running -= 1

    async def _checkpoint(self, ok: bool, what: str, job: Job) -> bool:
        if not ok:
            self.notices.add(f"lease lost before the {what} checkpoint: {job.id}")
        return ok

    async def _bytes(self, job: Job) -> Download | None:
        """Where `job`'s PDF is: downloaded now, found by its source, or checkpointed by an
        earlier run (its extraction process checks it: rpa.extract.paper)."""
        if job.stage == "downloaded":
            return Download(job.pdf_path or "", job.pdf_bytes or 0, job.pdf_sha256,
                            job.final_url or "", job.http_status or 0,
                            job.download_seconds or 0.0, check="verify")  # fmt: skip
        return await self._download(job)

    async def _download(self, job: Job) -> Download:
        meter = self.tally.meters["download"]
        dest = self.layout.pdf_path(job.id)
        started = time.time()
        # A PDF at its final name from an interrupted run (a network source writes there).
        # A first claim (token 1) has had no earlier run: no trip to the I/O pool to look.
        earlier = self.source.network and job.token > 1
        adopted = await self._in_io(adopt_pdf, dest) if earlier else None
        if adopted is not None:
            # A complete file from an interrupted run: final names only ever hold whole PDFs.
            size, sha256 = adopted
            return Download(str(dest), size, sha256, job.final_url or "", job.http_status or 0,
                            0.0, check="verify")  # fmt: skip
        # a network download goes to a private name, published by its extraction process
        private = private_name(dest, self.run_id) if self.source.network else dest
        gate = self.gates.download if self.source.network else None
        async with gate if gate is not None else contextlib.nullcontext(0.0) as wait:
            with self._running(meter, job, "download", started, wait):
                result = await self._fetch(job, private)
        if self.source.network:
            self.failures.misses.served()  # (a file's or a tar member's: once it is done)
            self.hosts.answered(urlsplit(result.final_url).hostname)
            self.hosts.paper_fetched(job.id)
        wait += result.gate_wait
        meter.done += 1
        meter.durations.add(result.seconds)
        self.tally.bytes.add(result.bytes)
        self._attempt(job, "download", started, wait, result.seconds)
        return result

    async def _fetch(self, job: Job, private: Path) -> Download:
        """The source's fetch. A download removed while written (--out's files deleted) is
        downloaded again, once, uncounted; removed again at once, a counted `io_error`."""
        try:
            return await self.source.fetch(job.id, private)
        except Vanished:
            self.notices.add(f"{job.id}: download removed while written, downloading again")
        return await self.source.fetch(job.id, private)

    async def _work(
        self, job: Job, found: Download, start: float, meta: asyncio.Future[Any] | None
    ) -> None:
        """The paper's whole work on its bytes, in an extraction process (rpa.extract.paper),
        then its completion (in a batch: rpa.run.completer). A PDF gone or changed before
        its check (or removed while checked, before its final name) is downloaded again,
        once, uncounted; gone again at once, a counted `io_error` (`_run_task`)."""
        result, took = await self._run_task(job, found, meta)
        if result.get("kind") == PDF_MISSING:
            self.notices.add(f"{job.id}: stored PDF missing or changed, downloading again")
            await self.queue.run(jobs.back_to_queued, self.run_id, job.lease, time.time())
            queued = dataclasses.replace(job, stage="queued", pdf_path=None)
            try:
                found = await self._download(queued)
            except errors.JobError as exc:  # its host's or its own, as any download's
                await self.failures.fail(job, exc, "download")
                return
            result, took = await self._run_task(job, found, meta, again=True)
        if not result.get("ok"):
            await self.failures.fail(job, _rebuilt(result), str(result.get("stage") or "extract"))
            return
        row: dict[str, Any] = result["row"]  # type: ignore[assignment]
        completion = Completion(
            lease=job.lease, outcome_path=str(self.layout.outcome_path(job.id)), row=row,
            pdf_path=_text(result["pdf_path"]), pdf_bytes=int(result["pdf_bytes"]),  # type: ignore[call-overload]
            pdf_sha256=str(result["pdf_sha256"]), final_url=found.final_url or None,
            http_status=found.status or None, download_seconds=found.seconds,
            text_path=str(self.layout.text_path(job.id)), extract_seconds=took,
        )  # fmt: skip
        meter = self.tally.meters["outcome"]
        started = time.time()
        with self._running(meter, job, "outcome", started, 0.0) as t0:
            ok = await self.completer.complete(completion, Path(str(result["record_private"])))
        if not await self._checkpoint(ok, "outcome", job):
            return
        took = time.perf_counter() - t0 + float(result.get("record_seconds", 0.0))  # type: ignore[arg-type]
        meter.done += 1
        meter.durations.add(took)
        self.failures.misses.served()
        self._attempt(job, "outcome", started, 0.0, took)
        self.tally.finished(job.id, time.perf_counter() - start)
        self.tally.checked(job.id, _text(result.get("stamp_mismatch")))

    async def _run_task(
        self, job: Job, found: Download, meta: asyncio.Future[Any] | None, again: bool = False
    ) -> tuple[dict[str, object], float]:
        """One run of the paper's work in the extraction pool, behind the extract gate, alone
        if the failure policy says so (`policy.runs_alone`); its attempt recorded, a failure
        of any stage (the download's check too) as an error row, except a PDF found gone,
        which is downloaded again uncounted; gone `again`, it is an `io_error`.
        (result, seconds of the extraction)."""
        meter = self.tally.meters["extract"]
        metadata = await meta if meta is not None else None
        known = dataclasses.replace(
            job, final_url=found.final_url or None, http_status=found.status or None,
            download_seconds=found.seconds,
        )  # fmt: skip
        if found.check == "" or found.check == "verify":  # its size and sha256 are known
            known = dataclasses.replace(known, pdf_bytes=found.bytes, pdf_sha256=found.sha256)
        task = PaperTask(
            job=known, run_id=self.run_id, extractor=self.settings.extractor, pdf=found.path,
            check=found.check or "verify", text_path=str(self.layout.text_path(job.id)),
            outcome_path=str(self.layout.outcome_path(job.id)), max_bytes=self.max_bytes,
            publish_to=str(self.layout.pdf_path(job.id)), first=job.token == 1,
            vouch=self.vouch,
            folder=found.folder, metadata=metadata, keep_pdf=self.settings.keep_pdf,
        )  # fmt: skip
        started = time.time()
        turn: list[float] = []  # when the pool gave it its turn (after a wait for one alone)
        handed = False
        try:
            async with self.gates.extract as wait:
                with self._running(meter, job, "extract", started, wait, turn) as t0:
                    handed = True
                    result = await self.pool.work(
                        task, alone=policy.runs_alone(job),
                        on_turn=lambda: turn.append(time.perf_counter()),
                    )  # fmt: skip
        except asyncio.CancelledError:
            if not handed and found.check == "download":  # the run stops: keep its bytes
                keep = functools.partial(
                    keep_download, Path(found.path), Path(task.publish_to or found.path),
                    self.max_bytes, first=task.first, vouch=self.vouch,
                )  # fmt: skip
                await asyncio.shield(self._in_io(keep))
            raise
        t1 = turn[0] if turn else t0
        wait += t1 - t0
        took = float(result.get("seconds", 0.0))  # type: ignore[arg-type]
        if not result.get("ok"):
            if again and result.get("kind") == PDF_MISSING:
                gone = f"the PDF vanished again: {result.get('message')}"
                result = {**result, "kind": errors.TransientIo.kind, "message": gone}
            if result.get("kind") != PDF_MISSING:
                stage, kind = str(result.get("stage")), str(result["kind"])
                self._attempt(job, stage, started, wait, took, "error", kind)
            return result, took
        meter.done += 1
        meter.durations.add(took)
        self.tally.pages.add(float(str(result.get("pages", 0))))
        if found.check == "local" or found.check == "tar":
            self.tally.bytes.add(float(str(result.get("pdf_bytes", 0))))
        self._attempt(job, "extract", started, wait, took)
        return result, took

    async def _outcome(self, job: Job, total: float) -> None:
        meter = self.tally.meters["outcome"]
        # arXiv's metadata (batched by the metadata stage; from its checkpoint when stored)
        metadata = await self.metadata.get(job.id) if self.metadata is not None else None
        started = time.time()
        record = outcome_record(job, self.run_id, metadata)
        path = self.layout.outcome_path(job.id)
        with self._running(meter, job, "outcome", started, 0.0) as t0:
            # the JSON is made and written in the I/O pool, never on the loop, under a
            # private name: only a committed `complete` renames it into place
            private = await self._in_io(stage_record, path, record, self.run_id)
        took = time.perf_counter() - t0
        # A completion whose commit happened but whose reply was lost is confirmed, not taken
        # for a lost lease (rpa.queue.aio). If `complete` raises, it may have committed: the
        # record stays under its private name, for a start-up to rename if the queue says
        # this run completed the job.
        ok = await self.queue.run_fenced(
            jobs.complete, jobs.completed, self.run_id, job.lease, record, str(path), time.time()
        )
        if ok:  # committed: the rename happens even if this worker is cancelled meanwhile
            await asyncio.shield(self._in_io(publish_record, private, path))
        else:
            await self._in_io(discard, private)
        if not await self._checkpoint(ok, "outcome", job):
            return
        meter.done += 1
        meter.durations.add(took)
        self._attempt(job, "outcome", started, 0.0, took)
        self.tally.finished(job.id, total)
        self.tally.checked(job.id, (record.get("checks") or {}).get("stamp_mismatch"))

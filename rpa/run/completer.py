"""Completions committed in batches: one transaction for many papers, each fenced as before.

    worker ─ complete(c) ─▶ pending ─▶ run(): wait LINGER (LINGER_BUSY while papers wait
                                        for the extraction) or BATCH items ─▶ syncfs(--out)
                                        ─▶ one transaction (jobs.complete_many: each job
                                           behind its own fence)
                                      ◀─ True/False per job; the committed records renamed
                                         into place, the others' removed (one I/O trip)

The extraction processes write a paper's text and record without an fsync each (an fsync
blocks the process, and its core idles): one syncfs of --out's file system per batch, before
the batch commits, makes every file of the batch durable, so no committed job points at a file
a power cut could tear. A paper's worker waits for its own answer. The batch commits whatever
the worker does meanwhile (cancelled, say): a committed completion always gets its record
renamed into place here, never by the worker; a batch whose reply was lost with the
connection is confirmed job by job (rpa.queue.aio.run_fenced_many). Should the run end
between a commit and the renames, the next start-up (or this run's end) repairs them
(rpa.run.publish). When the run stops, `drain` commits what is pending before the run's side
tasks end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from rpa.files import sync_filesystem
from rpa.queue import jobs
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import Completion
from rpa.run.publish import discard, publish_record

__all__ = ["BATCH", "ENOUGH", "LINGER", "LINGER_BUSY", "LINGER_BUSY_LOCAL", "Completer"]

#: the most completions one transaction commits
BATCH = 128
#: completions that end a batch's wait at once: a fast pipeline's papers (hundreds a second)
#: do not each wait the whole linger, holding their workers and prefetch slots (at 100 ms,
#: the benchmark's free extraction made 530 papers/s 420 from a tar)
ENOUGH = 16
#: seconds a completion waits for others to share its transaction
LINGER = 0.004
#: ... and at most, while papers wait for the extraction anyway (a longer wait idles no core)
LINGER_BUSY = 0.05
#: ... the same for papers that are not downloaded (a tar, a folder: see `_linger`)
LINGER_BUSY_LOCAL = 0.1


@dataclass(slots=True)
class _Pending:
    completion: Completion
    private: Path
    answer: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _publish_all(done: Sequence[tuple[Path, Path]], lost: Sequence[Path]) -> None:
    """Rename the committed records into place, remove the others. Blocking."""
    for private, final in done:
        publish_record(private, final)
    for private in lost:
        discard(private)


class Completer:
    """The run's completions, in batches (see the module's doc)."""

    def __init__(
        self, queue: AsyncQueue, io: Executor, run_id: str, out: Path,
        saturated: Callable[[], bool] = lambda: False, *, downloads: bool = True,
    ) -> None:  # fmt: skip
        """`saturated`: are papers waiting for the extraction (the workers holding their
        answers then idle no core, and a batch may wait up to LINGER_BUSY, LINGER_BUSY_LOCAL
        where no paper is `downloads`ed)."""
        self.queue = queue
        self.saturated = saturated
        self.busy = LINGER_BUSY if downloads else LINGER_BUSY_LOCAL
        self.out = out
        self.io = io
        self.run_id = run_id
        self._pending: list[_Pending] = []
        self._ready = asyncio.Event()
        self._enough = asyncio.Event()  # ENOUGH completions wait: no need to linger
        self._idle = asyncio.Event()
        self._idle.set()
        #: transactions committed, completions in them (for the run's statistics)
        self.batches = self.completions = 0

    async def complete(self, completion: Completion, private: Path) -> bool:
        """Commit `completion` (its record staged at `private`) in the next batch: True if
        this run's lease held and the job is done (its record renamed into place)."""
        pending = _Pending(completion, private)
        self._pending.append(pending)
        self._ready.set()
        if len(self._pending) >= ENOUGH:
            self._enough.set()
        return await pending.answer

    async def run(self) -> None:
        """Commit batches for as long as the run lasts (one of the run's side tasks)."""
        while True:
            await self._ready.wait()
            await self._linger()
            await self._commit_next()

    async def _linger(self) -> None:
        """Let the papers finishing now join the batch: LINGER, or LINGER_BUSY while papers
        wait for the extraction anyway, or until ENOUGH have joined. At 60 papers a second
        (pdfium on 2 cores) a 25 ms wait made batches of 2-3: each batch is three trips to
        the threads (a syncfs, the transaction, the renames). Longer waits cost the main
        process less CPU and the loop more lag: over HTTP (1,280 papers, 3 runs each),
        25 ms: 2.7 ms of user CPU a paper, lag p99 3.5 ms; 50 ms: 2.3, 4.2; 100 ms: 2.0, 4.6
        (5.3 at worst: a batch's papers free their prefetch slots at once, and their next
        downloads arrive together). A paper's outcome stage shows the wait (its p50 ~30 ms).
        From a tar or a folder no download follows a batch: 100 ms, the main process's CPU a
        paper from a tar 1.8 -> 1.4 ms (with the other changes of 691a2c2), the lag p99
        unchanged (~2 ms)."""
        seconds = self.linger_seconds()
        if seconds > 0:
            self._enough.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._enough.wait()

    def linger_seconds(self) -> float:
        """How long the next batch may wait for more completions (0: it does not wait)."""
        if len(self._pending) >= ENOUGH:
            return 0.0
        return self.busy if self.saturated() else LINGER

    async def drain(self) -> None:
        """Commit whatever is pending (the workers have stopped)."""
        while self._pending:
            await self._commit_next()
        await self._idle.wait()

    async def _commit_next(self) -> None:
        batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
        if not self._pending:
            self._ready.clear()
        if not batch:
            return
        self._idle.clear()
        try:
            await self._commit(batch)
        finally:
            self._idle.set()

    async def _commit(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.io, sync_filesystem, self.out)
            made = await self.queue.run_fenced_many(
                jobs.complete_many,
                jobs.completed_many,
                self.run_id,
                [p.completion for p in batch],
                time.time(),
            )
        except Exception as exc:  # each worker hears of it (the database stayed away)
            for p in batch:
                if not p.answer.done():
                    p.answer.set_exception(exc)
            return
        except asyncio.CancelledError:  # the run ends: its start-up repairs what committed
            for p in batch:
                p.answer.cancel()
            raise
        self.batches += 1
        self.completions += sum(made)
        pairs = list(zip(batch, made, strict=True))
        done = [(p.private, Path(p.completion.outcome_path)) for p, ok in pairs if ok]
        lost = [p.private for p, ok in pairs if not ok]
        # committed: renamed even if this task is cancelled meanwhile
        await asyncio.shield(loop.run_in_executor(self.io, _publish_all, done, lost))
        for p, ok in pairs:
            if not p.answer.done():
                p.answer.set_result(ok)

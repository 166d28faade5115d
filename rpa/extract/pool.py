"""The extraction pool: N worker processes that the event loop drives without ever blocking.

    extract() ──▶ idle queue ──▶ WorkerProcess: one process, two pipes
                                  task pipe    ──▶ child: recv ─▶ extract_pdf ─▶ write a frame
                                  result pipe  ◀── read by a loop reader callback (non-blocking)

Why not ProcessPoolExecutor: a per-document timeout must really stop a runaway parse, by
killing that one process and starting another while the other extractions go on;
ProcessPoolExecutor cannot kill one worker (a dead worker breaks the whole pool).

This module is the parent's side: which process takes a paper (a paper can be run alone, in a
fresh process: `extract(alone=True)`, rpa.extract.solo), what the end of its extraction means,
the statistics, and the memory governor's hooks (`shed`, `pids`, `memory_pressure`; `rss_bytes`
is re-exported for it). Its processes (started, replaced, stopped) are `rpa.extract.fleet`'s,
one process's handle is `rpa.extract.process`, the child's side `rpa.extract.worker`, the
pipes' messages `rpa.extract.protocol`, mode="thread" (whose timeout cannot stop a parse)
`rpa.extract.threads`.

Each worker is a plain `multiprocessing` process ("forkserver", else "spawn"; never "fork":
the parent has threads). Nothing blocks the loop thread: processes are started and reaped in
threads, results arrive through `loop.add_reader` (no thread per call) as length-prefixed
pickles read with non-blocking `os.read`; on the loop we only `send` a tiny task or `kill`.
Any end of an extraction other than a result (timeout, death, memory cap, the caller
cancelled) kills that process and starts a replacement: no worker is reused in doubt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Literal

from rpa.errors import ConfigError, ExtractTimeout, MemoryCapExceeded, MemoryPressure, WorkerCrashed
from rpa.extract import EXTRACTORS
from rpa.extract.fleet import ProcessFleet
from rpa.extract.process import ProcessDied, WorkerProcess
from rpa.extract.protocol import Task
from rpa.extract.solo import SoloGate
from rpa.extract.statistics import PoolStatistics
from rpa.extract.threads import ThreadExtraction
from rpa.extract.worker import rss_bytes

__all__ = [
    "DEFAULT_MAX_MB",
    "DEFAULT_NICE",
    "DEFAULT_TIMEOUT",
    "ExtractPool",
    "PoolStatistics",
    "rss_bytes",
]

DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_MB = 2048
DEFAULT_NICE = 10
#: seconds a failed extraction waits for its process's replacement before raising
REPLACE_WAIT = 5.0
#: processes a paper may see die before they receive it, before it is charged for it
NOT_STARTED_RETRIES = 3


class _NotStarted(Exception):
    """Internal: the process died before it received the task (not the paper's fault)."""


class ExtractPool:
    """N extraction processes (or threads), each document under a timeout that really stops it.

    Use as `async with ExtractPool(n) as pool: result = await pool.extract(pdf, txt)`. The
    result is `extract_pdf`'s dict; `extract` raises ExtractTimeout, WorkerCrashed or
    MemoryCapExceeded, each after the process concerned has been replaced. Every `extract`
    call must be over (or cancelled) before the `async with` block ends.
    """

    def __init__(
        self,
        workers: int,
        *,
        mode: Literal["process", "thread"] = "process",
        timeout: float = DEFAULT_TIMEOUT,
        max_mb: int | None = DEFAULT_MAX_MB,
        nice: int = DEFAULT_NICE,
        extractor: str = "pypdf",
        recycle_mb: int | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"extraction workers must be at least 1, not {workers}")
        if mode not in ("process", "thread"):
            raise ConfigError(f"extraction pool mode must be 'process' or 'thread', not {mode!r}")
        if timeout <= 0:
            raise ConfigError(f"extraction timeout must be positive, not {timeout}")
        if extractor not in EXTRACTORS:
            raise ConfigError(f"unknown extractor {extractor!r}: one of {', '.join(EXTRACTORS)}")
        self._threads = ThreadExtraction(workers, extractor) if mode == "thread" else None
        self._size = workers
        self._timeout = timeout
        self._max_mb = max_mb or None
        self._extractor = extractor
        self._recycle_mb = recycle_mb or None
        self._fleet = ProcessFleet(workers, nice, self._max_mb)
        self._crashed = self._timed_out = self._recycled = 0
        self._solo = SoloGate()
        self._pressure = self._pressure_seen = False  # memory pressure now / in a run alone

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> ExtractPool:
        if self._extractor == "pdfium":
            import importlib.util

            if importlib.util.find_spec("pypdfium2") is None:
                raise ConfigError("--extractor pdfium needs the rpa[pdfium] extra (pypdfium2)")
        if self._threads is not None:
            self._threads.start()
            return self
        await self._fleet.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._threads is not None:
            self._threads.stop()
            return
        await self._fleet.close()

    # ------------------------------------------------------------------ extraction

    async def extract(
        self,
        pdf_path: str,
        text_path: str,
        *,
        # Not a caller-side asyncio.timeout: only the pool can kill the process, replace it
        # and say ExtractTimeout (a caller's cancellation also kills, but says nothing).
        timeout: float | None = None,  # noqa: ASYNC109
        run_id: str = "",
        alone: bool = False,
        on_turn: Callable[[], object] | None = None,
    ) -> dict[str, object]:
        """Extract one PDF in a worker (see `work`); its text's temporary file carries
        `run_id`."""
        task: Task = (pdf_path, text_path, self._extractor, run_id)
        return await self.work(task, timeout=timeout, alone=alone, on_turn=on_turn)

    async def work(
        self,
        task: Task,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (see `extract`)
        alone: bool = False,
        on_turn: Callable[[], object] | None = None,
    ) -> dict[str, object]:
        """Run `task` (a PDF's extraction, or a paper's whole work: rpa.extract.paper) in a
        worker; `timeout` overrides the pool's for this call. `alone`: run it alone, in a
        fresh process (see the module's doc); its ExtractTimeout or WorkerCrashed then says
        `alone`. `on_turn` is called when its turn has come (a wait for a run alone is over)."""
        limit = self._timeout if timeout is None else timeout
        async with self._solo.exclusive() if alone else self._solo.shared():
            self._pressure_seen = self._pressure
            if on_turn is not None:
                on_turn()
            try:
                if self._threads is not None:
                    return await self._threads.extract(task, limit)
                return await (self._extract_alone if alone else self._extract_shared)(task, limit)
            except (ExtractTimeout, WorkerCrashed) as exc:
                exc.alone = alone and not self._pressure_seen
                raise

    async def _extract_shared(self, task: Task, limit: float) -> dict[str, object]:
        """A process that dies before it has received the paper (an idle crash the pool had
        not seen yet) is not the paper's fault: the paper goes to another process."""
        for _ in range(NOT_STARTED_RETRIES):
            try:
                return await self._extract_once(task, limit)
            except _NotStarted:
                continue
        self._crashed += 1
        raise WorkerCrashed(
            f"{NOT_STARTED_RETRIES} extraction processes in a row died before they received "
            "the paper (the machine may be out of memory or processes)"
        )

    async def _extract_alone(self, task: Task, limit: float) -> dict[str, object]:
        """One extraction in a process started for it and stopped after it (never reused):
        the pool's own processes wait idle meanwhile."""
        if not self._fleet.running:
            raise RuntimeError("the extraction pool is not running (use `async with`)")
        worker = await self._fleet.start_worker()
        try:
            result = await self._run(worker, task, limit)
        except _NotStarted:
            self._crashed += 1
            raise WorkerCrashed(
                "a fresh extraction process died before it received the paper"
            ) from None
        finally:
            await self._fleet.stop_one(worker)
        result.pop("rss_mb", None)
        return result

    def memory_pressure(self, on: bool) -> None:
        """The memory governor's word: memory is over --memory-pause (or back under resume).
        A solo run that met pressure does not say `alone` (its failure may be the machine's)."""
        self._pressure = on
        self._pressure_seen |= on

    async def _extract_once(self, task: Task, limit: float) -> dict[str, object]:
        if not self._fleet.running:
            raise RuntimeError("the extraction pool is not running (use `async with`)")
        worker = await self._fleet.take()
        try:
            result = await self._run(worker, task, limit)
        except (ExtractTimeout, WorkerCrashed, MemoryCapExceeded, MemoryPressure, _NotStarted):
            # Kill and replace; tell the caller once the pool is whole again (or soon anyway).
            await asyncio.wait({self._fleet.retire(worker)}, timeout=REPLACE_WAIT)
            raise
        except BaseException:
            self._fleet.retire(worker)  # cancelled mid-parse: the process state is unknown
            raise
        rss = result.pop("rss_mb", 0)
        if self._recycle_mb and isinstance(rss, float | int) and rss > self._recycle_mb:
            # It has grown (memory is rarely given back between files): a fresh process
            # takes the next paper (Celery's max-memory-per-child).
            self._recycled += 1
            self._fleet.retire(worker)
            return result
        self._fleet.give_back(worker)
        return result

    def shed(self, pid: int) -> bool:
        """Kill the busy process `pid` to save memory (the memory governor): its paper fails
        as MemoryPressure, transient and not counted towards poison. False if it was not
        one of ours, or not busy."""
        for worker in self._fleet.workers:
            if worker.pid == pid and worker.busy and not (worker.dead or worker.retired):
                worker.shed = True
                worker.kill()
                return True
        return False

    async def _run(self, worker: WorkerProcess, task: Task, limit: float) -> dict[str, object]:
        waiter: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        worker.waiter, worker.busy, worker.started = waiter, True, False
        try:
            try:
                worker.tasks.send(task)
            except (OSError, ValueError):
                raise ProcessDied(started=False) from None
            async with asyncio.timeout(limit):
                result = await waiter
            if result.get("kind") == "memory_cap":
                # Its heap may sit near the cap, fragmented: the process is replaced too.
                raise MemoryCapExceeded(f"{result.get('message')} (cap {self._max_mb} MiB)")
            return result
        except TimeoutError:
            self._timed_out += 1
            raise ExtractTimeout(
                f"extraction ran past {limit:g} s; its process ({worker.pid}) was killed"
            ) from None
        except ProcessDied as died:
            if worker.shed:
                raise MemoryPressure(
                    f"its extraction process ({worker.pid}) was killed for memory (the memory "
                    "governor); it is retried when memory allows"
                ) from None
            if not died.started:
                raise _NotStarted() from None
            if self._extractor == "pdfium" and self._max_mb and await worker.aborted():
                raise MemoryCapExceeded(
                    f"PDFium aborted, its answer to an allocation refused by the memory cap "
                    f"(cap {self._max_mb} MiB)"
                ) from None
            self._crashed += 1
            raise WorkerCrashed(
                f"the extraction process ({worker.pid}) died mid-parse "
                "(killed, crashed or out of memory)"
            ) from None
        finally:
            worker.waiter, worker.busy = None, False

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> PoolStatistics:
        """A snapshot for the progress table (cheap: no syscalls)."""
        if self._threads is not None:
            threads = self._threads
            alive = self._size if threads.running else 0
            busy, timed_out = threads.busy, threads.timed_out
            return PoolStatistics("thread", self._size, alive, busy, busy, 0, 0, 0, 0, timed_out)
        workers = self._fleet.workers
        return PoolStatistics(
            mode="process",
            workers=self._size,
            alive=len(self._fleet.usable()),
            busy=sum(w.busy for w in workers),
            parsing=sum(w.busy and w.started for w in workers),
            started=self._fleet.started,
            replaced=self._fleet.replaced,
            recycled=self._recycled,
            crashed=self._crashed,
            timed_out=self._timed_out,
        )

    def pids(self) -> list[int]:
        """Process ids of the usable workers, oldest first (empty in thread mode)."""
        return [w.pid for w in self._fleet.usable()]

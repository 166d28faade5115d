"""The extraction pool: N worker processes that the event loop drives without ever blocking.

    extract() ──▶ idle queue ──▶ _Worker: one process, two pipes
                                  task pipe    ──▶ child: recv ─▶ extract_pdf ─▶ write a frame
                                  result pipe  ◀── read by a loop reader callback (non-blocking)

Why not ProcessPoolExecutor: a per-document timeout must really stop a runaway parse, by
killing that one process and starting another while the other extractions go on;
ProcessPoolExecutor cannot kill one worker (a dead worker breaks the whole pool).

Each worker is a plain `multiprocessing` process ("forkserver", else "spawn"; never "fork":
the parent has threads). Nothing blocks the loop thread: processes are started and reaped in
threads, results arrive through `loop.add_reader` (no thread per call) as length-prefixed
pickles read with non-blocking `os.read`; on the loop we only `send` a tiny task or `kill`.
Any end of an extraction other than a result (timeout, death, memory cap, the caller
cancelled) kills that process and starts a replacement: no worker is reused in doubt.

mode="thread" runs `extract_pdf` in a ThreadPoolExecutor instead. Its timeout raises
ExtractTimeout but CANNOT stop the thread: the parse runs on and holds its slot until done.
There max_mb and nice do not apply, and a crash in a C extension ends the whole program.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import resource
import signal
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Literal

from rpa.errors import (
    ConfigError,
    ExtractTimeout,
    MemoryCapExceeded,
    MemoryPressure,
    WorkerCrashed,
)
from rpa.extract import EXTRACTORS

__all__ = [
    "DEFAULT_MAX_MB",
    "DEFAULT_NICE",
    "DEFAULT_TIMEOUT",
    "ExtractPool",
    "PoolStatistics",
    "rss_bytes",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_MB = 2048
DEFAULT_NICE = 10
#: seconds a stopping worker gets to exit on its own before SIGKILL
STOP_GRACE = 1.0
#: seconds a failed extraction waits for its process's replacement before raising
REPLACE_WAIT = 5.0
#: processes a paper may see die before they receive it, before it is charged for it
NOT_STARTED_RETRIES = 3
#: each extraction process's /proc/self/oom_score_adj: the kernel's first choice of victim
OOM_SCORE_ADJ = 1000
_FRAME = struct.Struct("!Q")  # result frame header: payload length
#: the empty frame a worker sends when it has received a task
_ACK = _FRAME.pack(0)


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of the pool for the progress table."""

    workers: int  # configured size
    alive: int  # usable processes (threads in thread mode) now
    busy: int  # extractions in flight
    parsing: int  # of those, the ones whose process has received its paper
    started: int  # processes started in total, replacements included
    replaced: int  # processes started to replace a killed, dead or recycled one
    recycled: int  # processes replaced for having grown past recycle_mb
    crashed: int  # extractions whose process died under them (WorkerCrashed)
    timed_out: int  # extractions that ran past the timeout (ExtractTimeout)


# ------------------------------------------------------------------------ the child side


def _exit_with_parent() -> None:
    """End this process when rpa ends, however it ends (kill -9 included).

    Only the parent enforces --extract-timeout, so an orphan would parse on, unbounded. A daemon
    thread waits on the parent's sentinel (a pipe that closes when the parent dies; no GIL held
    while waiting) and exits at once. `parent_process()` is rpa itself under spawn and
    forkserver alike.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="rpa-parent-watch", daemon=True).start()


def _child_main(tasks: Connection, results: Connection, nice: int, max_mb: int | None) -> None:
    """Worker loop: receive (pdf, text, extractor), extract, send a frame back; None stops."""
    # Ctrl-C, and a SIGTERM sent to the whole process group (`timeout`, systemd, kill -TERM
    # -PGID), are the parent's to handle: it stops gracefully and then stops us. Were we to
    # die of it, each death would count against the paper we were working on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_with_parent()
    with contextlib.suppress(OSError):
        os.nice(nice)  # extraction must never starve the event loop's core
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as fh:
        # Should the kernel's OOM killer have to act, it takes an extraction process (its
        # paper is retried as a crash), never rpa, which would end the run for every paper.
        fh.write(str(OOM_SCORE_ADJ))
    if max_mb:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = max_mb * 1024 * 1024
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    fd = results.fileno()
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if task is None:
            return
        try:
            os.write(fd, _ACK)  # "I have it": a death from now on is this paper's doing
        except OSError:
            return
        result = _extract_pdf()(*task)
        result["rss_mb"] = rss_bytes(os.getpid()) / 2**20  # for the parent's recycle rule
        payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        data = memoryview(_FRAME.pack(len(payload)) + payload)
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            return


def rss_bytes(pid: int) -> int:
    """Resident bytes of process `pid`; 0 for none, a zombie or pid 0."""
    if pid <= 0:
        return 0
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _extract_pdf() -> Callable[..., dict[str, Any]]:
    """rpa.extract.pdf.extract_pdf, imported where it runs: the extraction processes (preloaded
    by the fork server) or, in thread mode, the pool's constructor (before the loop runs). The
    main process of a process-mode run never imports pypdf (~55 ms of its start-up)."""
    from rpa.extract.pdf import extract_pdf

    return extract_pdf


def _context() -> BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        # Import pypdf once in the server; each worker forks with it already loaded.
        ctx.set_forkserver_preload(["rpa.extract.pool", "rpa.extract.pdf"])
        return ctx
    return multiprocessing.get_context("spawn")


# ----------------------------------------------------------------------- the async side


class _ProcessDied(Exception):
    """Internal: the result pipe hit EOF."""

    def __init__(self, started: bool = True) -> None:
        super().__init__()
        #: had the process received the task? If not, the paper is not to blame
        self.started = started


class _NotStarted(Exception):
    """Internal: the process died before it received the task (not the paper's fault)."""


class _Worker:
    """One extraction process and the parent's ends of its pipes."""

    def __init__(self, process: BaseProcess, tasks: Connection, results: Connection) -> None:
        self.process = process
        self.pid = process.pid or 0
        self.tasks = tasks
        self.results = results
        self.buffer = bytearray()
        self.waiter: asyncio.Future[dict[str, object]] | None = None
        self.busy = False
        self.dead = False  # its pipe hit EOF
        self.started = False  # it acknowledged the task in hand
        self.shed = False  # killed by the memory governor
        self.retired: asyncio.Task[None] | None = None  # killed; the replacement task

    def kill(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.process.kill()

    def reap(self, grace: float = 0.0) -> None:
        """Blocking (run in a thread): wait up to `grace`, kill, wait, close."""
        self.process.join(grace)
        if self.process.exitcode is None:
            self.kill()
            self.process.join(5.0)
        with contextlib.suppress(ValueError):
            self.process.close()
        self.tasks.close()
        self.results.close()


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
        if mode == "thread":
            _extract_pdf()  # its import (pypdf) now, not on the loop at the first paper
        self._size = workers
        self._mode = mode
        self._timeout = timeout
        self._max_mb = max_mb or None
        self._nice = nice
        self._extractor = extractor
        self._recycle_mb = recycle_mb or None
        self._ctx: BaseContext | None = None
        self._workers: list[_Worker] = []
        self._idle: asyncio.Queue[_Worker] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._threads_busy = 0
        self._closing = False
        self._started = self._replaced = self._crashed = self._timed_out = 0
        self._recycled = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> ExtractPool:
        if self._extractor == "pdfium":
            import importlib.util

            if importlib.util.find_spec("pypdfium2") is None:
                raise ConfigError("--extractor pdfium needs the rpa[pdfium] extra (pypdfium2)")
        self._closing = False
        if self._mode == "thread":
            self._executor = ThreadPoolExecutor(self._size, thread_name_prefix="rpa-extract")
            self._slots = asyncio.Semaphore(self._size)
            return self
        self._ctx = _context()
        self._idle = asyncio.Queue()
        started = await asyncio.gather(
            *(self._start_worker() for _ in range(self._size)), return_exceptions=True
        )
        failed = [r for r in started if isinstance(r, BaseException)]
        if failed:
            await self.__aexit__(None, None, None)
            raise failed[0]
        for worker in started:
            assert isinstance(worker, _Worker)
            self._idle.put_nowait(worker)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        if self._executor is not None:
            # Running threads cannot be stopped; queued ones are dropped. Do not wait.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            return
        # Shielded: a second Ctrl-C must not leave processes behind.
        await asyncio.shield(asyncio.ensure_future(self._stop_all()))

    async def _stop_all(self) -> None:
        if self._tasks:  # replacements in flight see _closing and stop short
            await asyncio.gather(*self._tasks, return_exceptions=True)
        workers, self._workers = self._workers, []
        for worker in workers:
            self._drop_reader(worker)
            try:
                if worker.busy or worker.dead:
                    raise OSError
                worker.tasks.send(None)  # idle: asks it to exit
            except (OSError, ValueError):
                worker.kill()
        await asyncio.gather(*(asyncio.to_thread(w.reap, STOP_GRACE) for w in workers))

    async def _start_worker(self) -> _Worker:
        assert self._ctx is not None
        tasks_r, tasks_w = self._ctx.Pipe(duplex=False)
        results_r, results_w = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=_child_main,
            args=(tasks_r, results_w, self._nice, self._max_mb),
            name="rpa-extract",
            daemon=True,  # multiprocessing's exit hook ends them if we never get to
        )
        start = asyncio.ensure_future(asyncio.to_thread(process.start))
        try:
            await asyncio.shield(start)
        except BaseException:
            # Cancelled (or failed) mid-start: the thread may still start it; then kill it.
            start.add_done_callback(lambda f: f.cancelled() or f.exception() or process.kill())
            for conn in (tasks_w, results_r):
                conn.close()
            raise
        finally:
            # Our copies of the child's ends: closed, so the result pipe reports EOF exactly
            # when the child has gone.
            tasks_r.close()
            results_w.close()
        os.set_blocking(results_r.fileno(), False)
        worker = _Worker(process, tasks_w, results_r)
        self._workers.append(worker)
        self._started += 1
        asyncio.get_running_loop().add_reader(results_r.fileno(), self._on_readable, worker)
        return worker

    async def _replace(self, old: _Worker) -> None:
        self._drop_reader(old)
        await asyncio.to_thread(old.reap)
        if old in self._workers:
            self._workers.remove(old)
        delay = 0.5
        while not self._closing:
            try:
                new = await self._start_worker()
            except Exception as exc:  # EAGAIN, ENOMEM...: try again, the pool must not shrink
                log.warning("cannot start an extraction process (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._replaced += 1
            assert self._idle is not None
            self._idle.put_nowait(new)
            return

    def _retire(self, worker: _Worker) -> asyncio.Task[None]:
        """Kill a worker now and start its replacement in a pool-owned task."""
        if worker.retired is None:
            worker.kill()
            task = asyncio.create_task(self._replace(worker))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            worker.retired = task
        return worker.retired

    def _drop_reader(self, worker: _Worker) -> None:
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            asyncio.get_running_loop().remove_reader(worker.results.fileno())

    def _on_readable(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.results.fileno(), 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # EOF: the process has gone
            self._drop_reader(worker)
            worker.dead = True
            if worker.waiter is not None and not worker.waiter.done():
                worker.waiter.set_exception(_ProcessDied(started=worker.started))
            elif not worker.busy and not self._closing:
                self._retire(worker)  # died while idle: replace it before anyone picks it
            return
        worker.buffer += data
        while len(worker.buffer) >= _FRAME.size:
            (size,) = _FRAME.unpack_from(worker.buffer)
            if len(worker.buffer) < _FRAME.size + size:
                break
            payload = bytes(worker.buffer[_FRAME.size : _FRAME.size + size])
            del worker.buffer[: _FRAME.size + size]
            if size == 0:
                worker.started = True
                continue
            if worker.waiter is not None and not worker.waiter.done():
                worker.waiter.set_result(pickle.loads(payload))

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
    ) -> dict[str, object]:
        """Extract one PDF in a worker; `timeout` overrides the pool's for this call; the
        text's temporary file carries `run_id`. A process that dies before it has received
        the paper (an idle crash the pool had not seen yet) is not the paper's fault: the
        paper goes to another process."""
        limit = self._timeout if timeout is None else timeout
        if self._mode == "thread":
            return await self._extract_in_thread(pdf_path, text_path, limit, run_id)
        task = (pdf_path, text_path, self._extractor, run_id)
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

    async def _extract_once(
        self, task: tuple[str, str, str, str], limit: float
    ) -> dict[str, object]:
        if self._idle is None or self._closing:
            raise RuntimeError("the extraction pool is not running (use `async with`)")
        worker = await self._idle.get()
        while worker.dead or worker.retired:  # died while idle: its replacement is queued
            worker = await self._idle.get()
        try:
            result = await self._run(worker, task, limit)
            if result.get("kind") == "memory_cap":
                # Its heap may sit near the cap, fragmented: recycle the process too.
                raise MemoryCapExceeded(f"{result.get('message')} (cap {self._max_mb} MiB)")
        except (ExtractTimeout, WorkerCrashed, MemoryCapExceeded, MemoryPressure, _NotStarted):
            # Kill and replace; tell the caller once the pool is whole again (or soon anyway).
            await asyncio.wait({self._retire(worker)}, timeout=REPLACE_WAIT)
            raise
        except BaseException:
            self._retire(worker)  # cancelled mid-parse: the process state is unknown
            raise
        rss = result.pop("rss_mb", 0)
        if self._recycle_mb and isinstance(rss, float | int) and rss > self._recycle_mb:
            # It has grown (memory is rarely given back between files): a fresh process
            # takes the next paper (Celery's max-memory-per-child).
            self._recycled += 1
            self._retire(worker)
            return result
        self._idle.put_nowait(worker)
        return result

    def shed(self, pid: int) -> bool:
        """Kill the busy process `pid` to save memory (the memory governor): its paper fails
        as MemoryPressure, transient and not counted towards poison. False if it was not
        one of ours, or not busy."""
        for worker in self._workers:
            if worker.pid == pid and worker.busy and not (worker.dead or worker.retired):
                worker.shed = True
                worker.kill()
                return True
        return False

    async def _run(
        self, worker: _Worker, task: tuple[str, str, str, str], limit: float
    ) -> dict[str, object]:
        waiter: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        worker.waiter, worker.busy, worker.started = waiter, True, False
        try:
            try:
                worker.tasks.send(task)
            except (OSError, ValueError):
                raise _ProcessDied(started=False) from None
            async with asyncio.timeout(limit):
                return await waiter
        except TimeoutError:
            self._timed_out += 1
            raise ExtractTimeout(
                f"extraction ran past {limit:g} s; its process ({worker.pid}) was killed"
            ) from None
        except _ProcessDied as died:
            if worker.shed:
                raise MemoryPressure(
                    f"its extraction process ({worker.pid}) was killed for memory (the memory "
                    "governor); it is retried when memory allows"
                ) from None
            if not died.started:
                raise _NotStarted() from None
            self._crashed += 1
            raise WorkerCrashed(
                f"the extraction process ({worker.pid}) died mid-parse "
                "(killed, crashed or out of memory)"
            ) from None
        finally:
            worker.waiter, worker.busy = None, False

    async def _extract_in_thread(
        self, pdf_path: str, text_path: str, limit: float, run_id: str
    ) -> dict[str, object]:
        if self._executor is None or self._slots is None:
            raise RuntimeError("the extraction pool is not running (use `async with`)")
        loop = asyncio.get_running_loop()
        await self._slots.acquire()  # held until the thread really finishes, timeout or not
        self._threads_busy += 1

        def finished(_: Future[dict[str, object]]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed by then
                loop.call_soon_threadsafe(self._thread_finished)

        try:
            work = self._executor.submit(
                _extract_pdf(), pdf_path, text_path, self._extractor, run_id
            )
        except RuntimeError:
            self._thread_finished()
            raise
        work.add_done_callback(finished)
        try:
            async with asyncio.timeout(limit):
                result = await asyncio.wrap_future(work)
        except TimeoutError:
            self._timed_out += 1
            raise ExtractTimeout(
                f"extraction ran past {limit:g} s (thread mode: the parse runs on)"
            ) from None
        if result.get("kind") == "memory_cap":
            raise MemoryCapExceeded(str(result.get("message")))
        return result

    def _thread_finished(self) -> None:
        self._threads_busy -= 1
        if self._slots is not None:
            self._slots.release()

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> PoolStatistics:
        """A snapshot for the progress table (cheap: no syscalls)."""
        if self._mode == "thread":
            alive = self._size if self._executor is not None else 0
            busy = self._threads_busy
            return PoolStatistics(self._size, alive, busy, busy, 0, 0, 0, 0, self._timed_out)
        usable = [w for w in self._workers if not (w.dead or w.retired)]
        return PoolStatistics(
            workers=self._size,
            alive=len(usable),
            busy=sum(w.busy for w in self._workers),
            parsing=sum(w.busy and w.started for w in self._workers),
            started=self._started,
            replaced=self._replaced,
            recycled=self._recycled,
            crashed=self._crashed,
            timed_out=self._timed_out,
        )

    def pids(self) -> list[int]:
        """Process ids of the usable workers, oldest first (empty in thread mode)."""
        return [w.pid for w in self._workers if not (w.dead or w.retired)]

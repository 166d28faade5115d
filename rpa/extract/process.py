"""The parent's handle on one extraction process: start it, read its pipe, kill it, reap it.

ExtractPool (rpa.extract.pool) and its fleet (rpa.extract.fleet) decide when; this module
does it, without blocking the event loop: the process is started and reaped in threads, and its
result pipe is read with non-blocking `os.read` when the loop says it is readable (`receive`).
The process itself runs `rpa.extract.worker.child_main`; the messages are
`rpa.extract.protocol`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess

from rpa.extract.protocol import decode_result, split_frames
from rpa.extract.worker import child_main

__all__ = ["ProcessDied", "WorkerProcess"]


class ProcessDied(Exception):
    """The result pipe hit EOF while a task was in hand."""

    def __init__(self, started: bool = True) -> None:
        super().__init__()
        #: had the process received the task? If not, the paper is not to blame
        self.started = started


class WorkerProcess:
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

    @classmethod
    async def start(cls, ctx: BaseContext, nice: int, max_mb: int | None) -> WorkerProcess:
        """A started process (started in a thread) whose result pipe does not block."""
        tasks_r, tasks_w = ctx.Pipe(duplex=False)
        results_r, results_w = ctx.Pipe(duplex=False)
        process = ctx.Process(  # type: ignore[attr-defined]
            target=child_main,
            args=(tasks_r, results_w, nice, max_mb),
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
        return cls(process, tasks_w, results_r)

    def receive(self) -> bool:
        """Read what has arrived on the result pipe (the loop said it is readable): an ACK
        marks the task started, a result goes to the waiter. False at EOF: the process has
        gone (the waiter, if any, gets ProcessDied)."""
        try:
            data = os.read(self.results.fileno(), 1 << 16)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            self.dead = True
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(ProcessDied(started=self.started))
            return False
        self.buffer += data
        for payload in split_frames(self.buffer):
            if not payload:  # the ACK
                self.started = True
            elif self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(decode_result(payload))
        return True

    async def aborted(self) -> bool:
        """Did the process end by SIGABRT (its exit code within a second, from a thread)?
        PDFium calls abort() when an allocation fails (FX_OutOfMemoryTerminate): under
        RLIMIT_AS that is the memory cap, where pypdf gets a MemoryError."""
        await asyncio.to_thread(self.process.join, 1.0)
        return self.process.exitcode == -signal.SIGABRT

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

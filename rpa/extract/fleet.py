"""The extraction pool's processes: N kept alive, each one replaced once it is retired.

    open()          start N processes (in threads), all idle
    take()          the next idle process (one that died while idle is skipped: its
                    replacement is queued)
    retire(w)       kill it now; a replacement starts in a fleet-owned task and joins the idle
    start_worker()  one more process (the pool's run alone), `stop_one` when it is done
    close()         ask the idle ones to exit, kill the busy ones, reap them all

ExtractPool (rpa.extract.pool) decides which process takes a paper and when one is retired;
this module keeps the count whole, without blocking the loop: processes are started and reaped
in threads, and each result pipe is watched with `loop.add_reader`. A process found dead while
idle is retired before anyone picks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from multiprocessing.context import BaseContext

from rpa.extract.process import WorkerProcess
from rpa.extract.protocol import STOP
from rpa.extract.worker import context

__all__ = ["ProcessFleet"]

log = logging.getLogger(__name__)

#: seconds a stopping worker gets to exit on its own before SIGKILL
STOP_GRACE = 1.0


class ProcessFleet:
    """`size` extraction processes, their idle queue and their replacements."""

    def __init__(self, size: int, nice: int, max_mb: int | None) -> None:
        self.size = size
        self._nice = nice
        self._max_mb = max_mb
        self._ctx: BaseContext | None = None
        self.workers: list[WorkerProcess] = []
        self._idle: asyncio.Queue[WorkerProcess] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.started = self.replaced = 0

    @property
    def running(self) -> bool:
        return self._idle is not None and not self.closing

    def usable(self) -> list[WorkerProcess]:
        """The processes neither dead nor retired, oldest first."""
        return [w for w in self.workers if not (w.dead or w.retired)]

    async def open(self) -> None:
        self.closing = False
        self._ctx = context()
        self._idle = asyncio.Queue()
        started = await asyncio.gather(
            *(self.start_worker() for _ in range(self.size)), return_exceptions=True
        )
        failed = [r for r in started if isinstance(r, BaseException)]
        if failed:
            await self.close()
            raise failed[0]
        for worker in started:
            assert isinstance(worker, WorkerProcess)
            self._idle.put_nowait(worker)

    async def close(self) -> None:
        self.closing = True
        # Shielded: a second Ctrl-C must not leave processes behind.
        await asyncio.shield(asyncio.ensure_future(self._stop_all()))

    async def _stop_all(self) -> None:
        if self._tasks:  # replacements in flight see `closing` and stop short
            await asyncio.gather(*self._tasks, return_exceptions=True)
        workers, self.workers = self.workers, []
        for worker in workers:
            self._drop_reader(worker)
            try:
                if worker.busy or worker.dead:
                    raise OSError
                worker.tasks.send(STOP)  # idle: asks it to exit
            except (OSError, ValueError):
                worker.kill()
        await asyncio.gather(*(asyncio.to_thread(w.reap, STOP_GRACE) for w in workers))

    async def take(self) -> WorkerProcess:
        assert self._idle is not None
        worker = await self._idle.get()
        while worker.dead or worker.retired:  # died while idle: its replacement is queued
            worker = await self._idle.get()
        return worker

    def give_back(self, worker: WorkerProcess) -> None:
        assert self._idle is not None
        self._idle.put_nowait(worker)

    async def start_worker(self) -> WorkerProcess:
        assert self._ctx is not None
        worker = await WorkerProcess.start(self._ctx, self._nice, self._max_mb)
        self.workers.append(worker)
        self.started += 1
        asyncio.get_running_loop().add_reader(worker.results.fileno(), self._on_readable, worker)
        return worker

    async def stop_one(self, worker: WorkerProcess) -> None:
        """Kill and reap a process `start_worker` gave (a cancellation still reaps it)."""
        self._drop_reader(worker)
        if worker in self.workers:  # (unless the fleet's close took it already)
            self.workers.remove(worker)
        worker.kill()
        await asyncio.shield(asyncio.to_thread(worker.reap))

    async def _replace(self, old: WorkerProcess) -> None:
        self._drop_reader(old)
        await asyncio.to_thread(old.reap)
        if old in self.workers:
            self.workers.remove(old)
        delay = 0.5
        while not self.closing:
            try:
                new = await self.start_worker()
            except Exception as exc:  # EAGAIN, ENOMEM...: try again, the pool must not shrink
                log.warning("cannot start an extraction process (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.replaced += 1
            self.give_back(new)
            return

    def retire(self, worker: WorkerProcess) -> asyncio.Task[None]:
        """Kill a worker now and start its replacement in a fleet-owned task."""
        if worker.retired is None:
            worker.kill()
            task = asyncio.create_task(self._replace(worker))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            worker.retired = task
        return worker.retired

    def _drop_reader(self, worker: WorkerProcess) -> None:
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            asyncio.get_running_loop().remove_reader(worker.results.fileno())

    def _on_readable(self, worker: WorkerProcess) -> None:
        if worker.receive():
            return
        self._drop_reader(worker)  # EOF: the process has gone
        if not worker.busy and not self.closing:
            self.retire(worker)  # died while idle: replace it before anyone picks it

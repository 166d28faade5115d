"""ExtractPool's thread mode (--extract-pool=thread): `extract_pdf` in a ThreadPoolExecutor.

Its timeout raises ExtractTimeout but CANNOT stop the thread: the parse runs on and holds its
slot until done. There max_mb and nice do not apply, and a crash in a C extension ends the
whole program.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future, ThreadPoolExecutor

from rpa.errors import ExtractTimeout, MemoryCapExceeded
from rpa.extract.protocol import Task
from rpa.extract.worker import load_extractor, run_task

__all__ = ["ThreadExtraction"]


class ThreadExtraction:
    """`size` extraction threads; a slot is held until its thread really finishes."""

    def __init__(self, size: int, extractor: str) -> None:
        self.size = size
        self.extractor = extractor
        load_extractor()  # its import (pypdf) now, not on the loop
        from rpa.extract import paper  # noqa: F401  (likewise)

        self.busy = 0  # threads running a parse (timed-out ones included)
        self.timed_out = 0
        self._executor: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None

    @property
    def running(self) -> bool:
        return self._executor is not None

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="rpa-extract")
        self._slots = asyncio.Semaphore(self.size)

    def stop(self) -> None:
        """Running threads cannot be stopped; queued ones are dropped. Does not wait."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def extract(self, task: Task, limit: float) -> dict[str, object]:
        if self._executor is None or self._slots is None:
            raise RuntimeError("the extraction pool is not running (use `async with`)")
        loop = asyncio.get_running_loop()
        await self._slots.acquire()  # held until the thread really finishes, timeout or not
        self.busy += 1

        def finished(_: Future[dict[str, object]]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed by then
                loop.call_soon_threadsafe(self._finished)

        try:
            work = self._executor.submit(run_task, task)
        except RuntimeError:
            self._finished()
            raise
        work.add_done_callback(finished)
        try:
            async with asyncio.timeout(limit):
                result = await asyncio.wrap_future(work)
        except TimeoutError:
            self.timed_out += 1
            raise ExtractTimeout(
                f"extraction ran past {limit:g} s (thread mode: the parse runs on)"
            ) from None
        if result.get("kind") == "memory_cap":
            raise MemoryCapExceeded(str(result.get("message")))
        return result

    def _finished(self) -> None:
        self.busy -= 1
        if self._slots is not None:
            self._slots.release()

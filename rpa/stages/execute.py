"""How a user stage is called, by its kind.

- async: awaited on the run's loop, one step at a time through `Stepped`, which times every
  step: a step that holds the loop past BLOCKED_AFTER (a `time.sleep`, a sync HTTP call, CPU
  work in an `async def`) is reported with the stage's name, so the loop-lag watchdog names
  the culprit instead of only measuring the lag.
- thread: threads of the stage's own (`StageThreads`, daemon threads, as many as its
  concurrency; never the loop's default executor, which the run's other work shares). Python
  cannot stop a thread: a call past its timeout fails (`timeout`) and is given up, but its
  thread runs on, and the call keeps its slot of the stage's gate until the thread returns
  (`free` is called then), so given-up calls never pile up past the stage's concurrency. A
  daemon thread does not keep rpa from exiting at the end of the run.
- process: processes of the stage's own, one per call in flight (rpa.stages.procs): a call
  past its timeout kills its process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from rpa import errors
from rpa.stages.paper import Paper
from rpa.stages.procs import ProcessSlots
from rpa.stages.spec import StageSpec

__all__ = ["BLOCKED_AFTER", "Caller", "Stepped", "load_call", "make_caller"]

#: a step of an async stage longer than this blocked the loop (the live table's lag is
#: shown in ms; 50 ms is 5 probe intervals)
BLOCKED_AFTER = 0.05


def load_call(spec: StageSpec) -> Callable[[Paper], Any]:
    """Import the stage's function and check that its kind fits it."""
    module_name, _, attr = spec.call.partition(":")
    if os.getcwd() not in sys.path:  # `module` may live beside the user (as uvicorn allows)
        sys.path.insert(0, os.getcwd())
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise errors.ConfigError(f"stage {spec.name}: cannot load {spec.call}: {exc}") from None
    is_async = inspect.iscoroutinefunction(fn)
    if spec.kind == "async" and not is_async:
        raise errors.ConfigError(
            f"stage {spec.name}: {spec.call} is not an async def: use kind thread or process"
        )
    if spec.kind != "async" and is_async:
        raise errors.ConfigError(f"stage {spec.name}: {spec.call} is an async def: kind async")
    if not callable(fn):
        raise errors.ConfigError(f"stage {spec.name}: {spec.call} is not callable")
    return fn  # type: ignore[no-any-return]


class Stepped:
    """Await `coro` step by step, calling `on_block(seconds)` after a step that held the
    loop `limit` seconds or more."""

    __slots__ = ("_coro", "_limit", "_on_block")

    def __init__(
        self, coro: Coroutine[Any, Any, Any], on_block: Callable[[float], None], limit: float
    ) -> None:
        self._coro = coro
        self._on_block = on_block
        self._limit = limit

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        value: Any = None
        thrown: BaseException | None = None
        while True:
            t0 = time.perf_counter()
            try:
                step = coro.send(value) if thrown is None else coro.throw(thrown)
            except StopIteration as stop:
                self._took(t0)
                return stop.value
            except BaseException:
                self._took(t0)
                raise
            self._took(t0)
            try:
                value, thrown = (yield step), None
            except BaseException as exc:  # a cancellation: passed on into the stage
                value, thrown = None, exc

    def _took(self, t0: float) -> None:
        took = time.perf_counter() - t0
        if took >= self._limit:
            self._on_block(took)


class StageThreads:
    """A thread stage's daemon threads, started as calls need them, at most `size`."""

    def __init__(self, name: str, size: int) -> None:
        self._name = name
        self._size = size
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = 0
        self._free = 0  # threads with no call in hand or on the way to them
        self._lock = threading.Lock()
        self.abandoned = 0  # calls given up whose thread still runs (on the loop only)

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            task()
            with self._lock:
                self._free += 1

    def submit(self, task: Callable[[], None]) -> None:
        """Run `task` in a thread that has nothing else in hand (a new one if none is free
        and there are fewer than `size`): a call never waits behind another."""
        with self._lock:
            start = self._free == 0 and self._threads < self._size
            if start:
                self._threads += 1
            elif self._free:
                self._free -= 1
        if start:
            threading.Thread(target=self._work, name=f"rpa-stage-{self._name}", daemon=True).start()
        self._tasks.put(task)

    async def call(
        self, fn: Callable[[Paper], Any], paper: Paper, limit: float, free: Callable[[], None]
    ) -> Any:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if not answer.done():
                (answer.set_result if ok else answer.set_exception)(value)

        def task() -> None:
            try:
                ok, value = True, fn(paper)
            except BaseException as exc:  # handed to the loop: the lane judges it
                ok, value = False, exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over
                loop.call_soon_threadsafe(settle, ok, value)

        self.submit(task)
        abandoned = False
        try:
            async with asyncio.timeout(limit):
                return await asyncio.shield(answer)
        except BaseException:
            if not answer.done():  # past its timeout, or the run stops: it runs on
                abandoned = True
                self.abandoned += 1
                answer.add_done_callback(lambda _: self._returned(free))
            raise
        finally:
            if not abandoned:
                free()

    def _returned(self, free: Callable[[], None]) -> None:
        self.abandoned -= 1
        free()

    def close(self) -> None:
        for _ in range(self._threads):
            self._tasks.put(None)  # idle ones end; busy ones end after their call


class Caller:
    """Calls one stage's function on one paper, by its kind."""

    def __init__(self, spec: StageSpec, max_mb: int, nice: int, recycle_mb: int = 0) -> None:
        self.spec = spec
        self.fn = load_call(spec)
        self.threads: StageThreads | None = None
        self.procs: ProcessSlots | None = None
        if spec.kind == "thread":
            self.threads = StageThreads(spec.name, spec.concurrency)
        elif spec.kind == "process":
            self.procs = ProcessSlots(spec, max_mb, nice, recycle_mb)

    @property
    def abandoned(self) -> int:
        """Calls given up (past their timeout) whose thread still runs, holding a slot."""
        return self.threads.abandoned if self.threads is not None else 0

    async def call(
        self, paper: Paper, on_block: Callable[[float], None], free: Callable[[], None]
    ) -> Any:
        """The stage's answer for `paper`, within its timeout (TimeoutError past it). `free`
        is called once, when the call's slot is free: at its end, or (a thread stage's call
        given up) when its thread returns."""
        if self.threads is not None:
            return await self.threads.call(self.fn, paper, self.spec.timeout, free)
        try:
            if self.procs is not None:
                return await self.procs.call(paper)
            async with asyncio.timeout(self.spec.timeout):
                return await Stepped(self.fn(paper), on_block, BLOCKED_AFTER)
        finally:
            free()

    def close(self) -> None:
        if self.threads is not None:
            self.threads.close()
        if self.procs is not None:
            self.procs.close()


def make_caller(spec: StageSpec, max_mb: int, nice: int, recycle_mb: int = 0) -> Caller:
    return Caller(spec, max_mb, nice, recycle_mb)

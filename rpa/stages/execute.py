"""How a user stage is called, by its kind.

- async: awaited on the run's loop, one step at a time through `Stepped`, which times every
  step: a step that holds the loop past BLOCKED_AFTER (a `time.sleep`, a sync HTTP call, CPU
  work in an `async def`) is reported with the stage's name, so the loop-lag watchdog names
  the culprit instead of only measuring the lag.
- thread: a ThreadPoolExecutor of the stage's own, sized to its concurrency (never the loop's
  default executor, which the run's other work shares).
- process: a process pool of the stage's own (forkserver, else spawn; never fork: the parent
  has threads), each process capped by --extract-max-mb (RLIMIT_AS), niced like extraction,
  deaf to Ctrl-C. A call past the stage's timeout kills the pool's processes (the pool is
  made anew); the other papers in it then end with WorkerCrashed(alone=False), retried
  uncounted. A pool broken with one paper inside charges that paper (`alone`).

Weaker than extraction's own pool (rpa.extract.pool): no recycling by RSS, no memory
governor shedding, and a timeout takes the pool's other calls down with it (retried
uncounted). A thread stage past its timeout is abandoned, not stopped: its thread stays busy
until the call returns (Python cannot kill a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import multiprocessing
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Generator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from rpa import errors
from rpa.stages.paper import Paper
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


class Caller:
    """Calls one stage's function on one paper, by its kind."""

    def __init__(self, spec: StageSpec, settings_max_mb: int, nice: int) -> None:
        self.spec = spec
        self.fn = load_call(spec)
        self._max_mb = settings_max_mb
        self._nice = nice
        self._threads: ThreadPoolExecutor | None = None
        self._procs: ProcessPoolExecutor | None = None
        self._in_procs = 0
        if spec.kind == "thread":
            self._threads = ThreadPoolExecutor(spec.concurrency, f"rpa-stage-{spec.name}")
        elif spec.kind == "process":
            self._procs = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        return ProcessPoolExecutor(
            self.spec.concurrency, mp_context=ctx, initializer=_child_start,
            initargs=(self._nice, self._max_mb),
        )  # fmt: skip

    async def call(self, paper: Paper, on_block: Callable[[float], None]) -> Any:
        """The stage's answer for `paper`, within its timeout (TimeoutError past it)."""
        if self._threads is not None:
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self.spec.timeout):
                return await loop.run_in_executor(self._threads, self.fn, paper)
        if self._procs is not None:
            return await self._in_process(paper)
        async with asyncio.timeout(self.spec.timeout):
            return await Stepped(self.fn(paper), on_block, BLOCKED_AFTER)

    async def _in_process(self, paper: Paper) -> Any:
        pool = self._procs
        assert pool is not None
        loop = asyncio.get_running_loop()
        self._in_procs += 1
        alone = self._in_procs == 1
        try:
            future = loop.run_in_executor(pool, _run_in_child, self.spec.call, paper)
            try:
                async with asyncio.timeout(self.spec.timeout):
                    return await future
            except TimeoutError:
                self._kill(pool)
                raise
            except BrokenProcessPool:
                self._kill(pool)
                crashed = errors.WorkerCrashed(f"stage {self.spec.name}: its process died")
                crashed.alone = alone
                raise crashed from None
        finally:
            self._in_procs -= 1

    def _kill(self, pool: ProcessPoolExecutor) -> None:
        """Kill the pool's processes (a call past its timeout cannot be stopped otherwise)
        and start a new pool for the calls to come."""
        if pool is not self._procs:
            return  # killed already
        # ProcessPoolExecutor offers no kill before Python 3.14: its process table
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(OSError, AttributeError):
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        self._procs = self._new_pool()

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        if self._procs is not None:
            self._kill(self._procs)
            self._procs.shutdown(wait=False, cancel_futures=True)


def make_caller(spec: StageSpec, max_mb: int, nice: int) -> Caller:
    return Caller(spec, max_mb, nice)


# ---- in the stage's processes ------------------------------------------------------------

_LOADED: dict[str, Callable[[Paper], Any]] = {}


def _child_start(nice: int, max_mb: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    with contextlib.suppress(OSError):
        os.nice(nice)
    if max_mb:
        with contextlib.suppress(ValueError, OSError):
            limit = max_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _run_in_child(call: str, paper: Paper) -> Any:
    fn = _LOADED.get(call)
    if fn is None:
        module_name, _, attr = call.partition(":")
        fn = _LOADED[call] = getattr(importlib.import_module(module_name), attr)
    return fn(paper)

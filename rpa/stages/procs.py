"""A process stage's processes: one process per call in flight, so a call that must be
stopped costs only itself.

Each process is a one-worker ProcessPoolExecutor of the stage's own (forkserver, else spawn;
never fork: the parent has threads), kept while it is sound and used for one call at a time;
there are never more than the stage's gate lets in. Each is set up as an extraction process
is: deaf to Ctrl-C and SIGTERM (the parent stops them), gone with the parent (kill -9
included), niced by --extract-nice, the kernel OOM killer's first choice (oom_score_adj
1000), and its address space capped by --extract-max-mb (RLIMIT_AS).

- A call past the stage's timeout: its process is killed and dropped; no other call notices.
- A MemoryError in the stage (the cap): `memory_cap`, charged to the paper, permanent; its
  process is dropped (a fresh one takes the next call).
- A process that dies under a call: `worker_crashed`, charged (`alone`) unless the memory
  governor said memory was short meanwhile; killed by the governor (`shed`): `memory_pressure`,
  not charged.
- A process whose RSS after a call is over --extract-recycle-mb is replaced, as extraction's.

A new process is started in a thread (a fork server's answer can take milliseconds): the
loop never waits for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from rpa import errors
from rpa.extract.worker import start_up
from rpa.stages.paper import Paper
from rpa.stages.spec import StageSpec

__all__ = ["ProcessSlots"]


class _Proc:
    """One process (a one-worker executor) and what befell it."""

    __slots__ = ("executor", "pressure", "shed")

    def __init__(self, executor: ProcessPoolExecutor) -> None:
        self.executor = executor
        self.shed = False  # killed by the memory governor
        self.pressure = False  # memory was short while it worked

    def pid(self) -> int:
        processes = getattr(self.executor, "_processes", None) or {}
        return next(iter(processes), 0)

    def kill(self) -> None:
        # ProcessPoolExecutor offers no kill before Python 3.14: its process table
        for process in list((getattr(self.executor, "_processes", None) or {}).values()):
            with contextlib.suppress(OSError, AttributeError, ValueError):
                process.kill()
        self.executor.shutdown(wait=False, cancel_futures=True)


class ProcessSlots:
    """The processes of one process stage."""

    def __init__(self, spec: StageSpec, max_mb: int, nice: int, recycle_mb: int) -> None:
        self.spec = spec
        self._max_mb = max_mb
        self._nice = nice
        self._recycle_mb = recycle_mb
        self._idle: list[_Proc] = []
        self._busy: set[_Proc] = set()
        self._pressure = False
        self.replaced = 0  # processes dropped (a timeout, a crash, the cap, recycled)

    def _new(self) -> _Proc:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        return _Proc(
            ProcessPoolExecutor(
                1, mp_context=ctx, initializer=start_up, initargs=(self._nice, self._max_mb)
            )
        )

    async def call(self, paper: Paper) -> Any:
        """The stage's answer for `paper` from one of its processes, within its timeout."""
        proc = self._idle.pop() if self._idle else None
        fresh = proc is None
        proc = proc or self._new()
        self._busy.add(proc)  # (close() kills it, whatever happens next)
        proc.pressure = self._pressure
        sound = False
        try:
            if fresh:  # the executor starts its process at the first submit: in a thread
                start = asyncio.ensure_future(
                    asyncio.to_thread(proc.executor.submit, _run, self.spec.call, paper)
                )
                try:
                    submit = await asyncio.shield(start)
                except asyncio.CancelledError:  # a stop: kill what the thread starts
                    start.add_done_callback(lambda _: proc.kill())
                    raise
            else:
                submit = proc.executor.submit(_run, self.spec.call, paper)
            async with asyncio.timeout(self.spec.timeout):
                status, value, rss_mb = await asyncio.wrap_future(submit)
            if status == "memory_cap":
                raise errors.MemoryCapExceeded(
                    f"stage {self.spec.name}: MemoryError past --extract-max-mb "
                    f"{self._max_mb} MB: {value}"
                )
            sound = not (self._recycle_mb and rss_mb > self._recycle_mb)
            return value
        except BrokenProcessPool:
            if proc.shed:
                raise errors.MemoryPressure(
                    f"stage {self.spec.name}: its process was killed by the memory governor"
                ) from None
            crashed = errors.WorkerCrashed(f"stage {self.spec.name}: its process died")
            crashed.alone = not proc.pressure
            raise crashed from None
        finally:  # a timeout, a cancellation (a stop), a crash: this process goes
            self._busy.discard(proc)
            if sound:
                self._idle.append(proc)
            else:
                self.replaced += 1
                proc.kill()

    def memory_pressure(self, on: bool) -> None:
        """The memory governor's word (a crash meanwhile is not the paper's alone)."""
        self._pressure = on
        if on:
            for proc in self._busy:
                proc.pressure = True

    def pids(self) -> list[int]:
        """The processes at work now (the memory governor's candidates)."""
        return [pid for pid in (p.pid() for p in self._busy) if pid]

    def shed(self, pid: int) -> bool:
        """Kill the busy process `pid` (the memory governor): its paper goes back uncounted."""
        for proc in self._busy:
            if proc.pid() == pid:
                proc.shed = True
                proc.kill()
                return True
        return False

    def close(self) -> None:
        for proc in [*self._idle, *self._busy]:
            proc.kill()
        self._idle.clear()


# ---- in the stage's processes ------------------------------------------------------------

_LOADED: dict[str, Callable[[Paper], Any]] = {}


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _run(call: str, paper: Paper) -> tuple[str, Any, float]:
    """(status, the stage's answer or what ran short, this process's RSS in MB now)."""
    fn = _LOADED.get(call)
    if fn is None:
        module_name, _, attr = call.partition(":")
        fn = _LOADED[call] = getattr(importlib.import_module(module_name), attr)
    try:
        value = fn(paper)
        status = "ok"
    except MemoryError as exc:
        value, status = f"{type(exc).__name__}: {exc}", "memory_cap"
    return status, value, _rss_mb()

"""Run the real `rpa` CLI in this process and report what only the main process can see.

    python -m bench.rpa_main REPORT.json -- run ids.txt --workers 200 ...

The command line is rpa's own (`rpa.cli.main`), unchanged. Two things are added around it,
neither of which changes what rpa does:

* `rpa.run.runner.Runner` (which the CLI imports when a run starts) is replaced by a
  subclass that remembers the instance and takes the main
  process's CPU time (getrusage RUSAGE_SELF) when its `run()` starts and ends, so the
  run-phase CPU excludes interpreter start-up and imports;
* a sampler thread reads /proc/self/task/<tid>/stat every 0.5 s to split the main process's
  CPU by thread (the event loop's thread, the database thread, the I/O pool...).

The report holds the run's summary, every event-loop lag sample (from rpa's own LagProbe) and
those CPU figures; `bench.measure` around this process adds the extraction processes' CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["ThreadCpu"]

_TICK = os.sysconf("SC_CLK_TCK")


def _thread_cpu(tid: int) -> float | None:
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def _group(name: str) -> str:
    """Thread name -> a group: rpa-db_0 -> rpa-db, asyncio_3 -> asyncio (to_thread)..."""
    for prefix in ("rpa-db", "rpa-io", "rpa-extract", "asyncio", "bench-sampler"):
        if name.startswith(prefix):
            return prefix
    return "event loop (MainThread)" if name == "MainThread" else "other"


class ThreadCpu(threading.Thread):
    """Samples the CPU time of this process's threads; keeps the last value of each."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.interval = interval
        self.last: dict[int, tuple[str, float]] = {}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        for thread in threading.enumerate():
            tid = thread.native_id
            if tid is None:
                continue
            cpu = _thread_cpu(tid)
            if cpu is not None:
                self.last[tid] = (thread.name, cpu)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.sample()
        groups: dict[str, float] = {}
        for name, cpu in self.last.values():
            groups[_group(name)] = groups.get(_group(name), 0.0) + cpu
        return groups


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _lag_report(samples: list[float], interval: float, skip: float) -> dict[str, Any]:
    """Lag percentiles after the first `skip` seconds, and the worst spikes with their time."""
    times = []
    clock = 0.0
    for lag in samples:
        clock += interval + lag
        times.append(clock)
    kept = [(t, lag) for t, lag in zip(times, samples, strict=True) if t > skip]
    values = sorted(lag for _, lag in kept)

    def pct(q: float) -> float:
        if not values:
            return 0.0
        return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]

    worst = sorted(kept, key=lambda x: -x[1])[:8]
    # Where in the run the slow wake-ups fall: counts of samples > 5 ms per 5 s of the run.
    buckets: dict[int, int] = {}
    for t, lag in kept:
        if lag > 0.005:
            buckets[int(t // 5) * 5] = buckets.get(int(t // 5) * 5, 0) + 1
    return {
        "count": len(values),
        "p50": pct(0.5),
        "p99": pct(0.99),
        "max": values[-1] if values else 0.0,
        "over_5ms": sum(v > 0.005 for v in values),
        "over_50ms": sum(v > 0.05 for v in values),
        "worst": [(round(t, 2), round(lag * 1000, 2)) for t, lag in worst],
        "over_5ms_by_5s": sorted(buckets.items()),
    }


def _watch_slow_callbacks(limit: float, found: list[tuple[float, float, str]]) -> None:
    """Time every callback the event loop runs; keep those over `limit` s (with a name).

    Opt-in (BENCH_SLOW_CALLBACKS=seconds): a callback that runs long is what makes the loop
    lag, so this names the code behind each spike. Costs ~1 us per callback.
    """
    import asyncio.events

    original = asyncio.events.Handle._run
    start = time.monotonic()

    def describe(handle: asyncio.events.Handle) -> str:
        callback = getattr(handle, "_callback", None)
        task = getattr(callback, "__self__", None)
        if isinstance(task, asyncio.Task):
            coro = task.get_coro()
            frame = getattr(coro, "cr_frame", None)
            where = f" at {frame.f_code.co_qualname}:{frame.f_lineno}" if frame else ""
            return f"task {task.get_name()} {getattr(coro, '__qualname__', coro)}{where}"
        return repr(handle)[:160]

    def timed(handle: asyncio.events.Handle) -> None:
        t0 = time.perf_counter()
        original(handle)
        took = time.perf_counter() - t0
        if took > limit:
            found.append(
                (round(time.monotonic() - start, 2), round(took * 1000, 1), describe(handle))
            )

    asyncio.events.Handle._run = timed  # type: ignore[method-assign, assignment]


def _watch_gc(found: list[tuple[float, int, float]]) -> None:
    """Opt-in (BENCH_GC=1): every garbage collection, (seconds in, generation, ms)."""
    import gc

    start = time.monotonic()
    began: list[float] = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            took = (time.perf_counter() - began[0]) * 1000
            found.append((round(time.monotonic() - start, 2), info["generation"], round(took, 2)))

    gc.callbacks.append(callback)


def main() -> int:
    report_path = Path(sys.argv[1])
    args = sys.argv[sys.argv.index("--") + 1 :]
    start = time.monotonic()
    import rpa.cli
    import rpa.run.runner
    from bench.probe import RecordingProbe

    captured: dict[str, Any] = {}

    class BenchRunner(rpa.run.runner.Runner):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            self.probe = RecordingProbe()
            captured["runner"] = self

        async def run(self) -> rpa.run.runner.RunSummary:
            captured["cpu0"], captured["t0"] = _cpu(), time.monotonic()
            try:
                return await super().run()
            finally:
                captured["cpu1"], captured["t1"] = _cpu(), time.monotonic()

    # The CLI imports Runner from rpa.run.runner when the command runs.
    rpa.run.runner.Runner = BenchRunner  # type: ignore[misc]
    slow: list[tuple[float, float, str]] = []
    gc_pauses: list[tuple[float, int, float]] = []
    if os.environ.get("BENCH_GC"):
        _watch_gc(gc_pauses)
    if os.environ.get("BENCH_SLOW_CALLBACKS"):
        _watch_slow_callbacks(float(os.environ["BENCH_SLOW_CALLBACKS"]), slow)
    sampler = ThreadCpu()
    sampler.start()
    sys.argv = ["rpa", *args]
    code = 0
    try:
        rpa.cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    threads = sampler.stop()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    report: dict[str, Any] = {
        "exit_code": code,
        "process_wall": time.monotonic() - start,
        "process_cpu": ru.ru_utime + ru.ru_stime,
        "maxrss_mb": ru.ru_maxrss / 1024,
        "threads_cpu": threads,
        "slow_callbacks": sorted(slow, key=lambda x: -x[1])[:40],
        "slow_callback_count": len(slow),
        "gc_pauses": sorted(gc_pauses, key=lambda x: -x[2])[:20],
        "gc_count": len(gc_pauses),
    }
    runner = captured.get("runner")
    if runner is not None and "t1" in captured:
        probe = runner.probe
        report.update(
            run_wall=captured["t1"] - captured["t0"],
            run_cpu=captured["cpu1"] - captured["cpu0"],
            done=runner.tally.done,
            failed=runner.tally.failed,
            failures=dict(runner.tally.failures),
            pages=runner.tally.pages.total,
            bytes=runner.tally.bytes.total,
            lag=_lag_report(probe.all_samples, probe.interval, skip=1.0),
            db_calls=runner.queue.gate.statistics().entered,
            db_busy=runner.queue.busy_seconds,
            pool=dataclasses.asdict(runner.pool.statistics()),
        )
    report_path.write_text(json.dumps(report))
    return code


if __name__ == "__main__":
    sys.exit(main())

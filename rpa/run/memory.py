"""The memory governor: pause, shed and recycle before the machine (its OOM killer) does it.

A thread of its own samples memory in use against the limit that binds, every 250 ms (every
50 ms while over --memory-pause, where a parse can grow past the kill line between samples):

- the cgroup's, when rpa runs inside one with a limit (v2: `memory.max` and `memory.current`;
  v1: `memory.limit_in_bytes` and `memory.usage_in_bytes`, the smallest limit up the tree),
  counting its working set as the kubelet does: usage less the page cache the kernel can drop
  at once (`inactive_file`);
- else the machine's: `MemTotal` less `MemAvailable` (/proc/meminfo).

On the loop, one callback per sample decides (Dask's and Ray's thresholds, as fractions):

- at `--memory-pause` (0.80) no new extraction starts and the prefetch gate lets no new download
  begin (both narrowed to one: a gate with nothing inside still lets one in, so the run never
  deadlocks); what is in flight finishes. Below `--memory-resume` (0.70) work resumes;
- at `--memory-kill` (0.95) the extraction process with the largest RSS is killed; its paper goes
  back to the queue as `memory_pressure` (transient, no attempt counted, not counted towards
  poison), and the extract gate is narrowed by one until the pressure has stayed low for `CALM`
  seconds.

The user's stages (rpa.stages) are governed too, through `also`: a pause narrows each stage's
gate to one as it does the extract gate, and a process stage's processes are candidates to shed
with the extraction processes (a shed call goes back uncounted).

Should the kernel's OOM killer still have to act (a parse that grows faster than one sample), it
takes an extraction process, never rpa itself: each one sets its `oom_score_adj` to 1000 (see
rpa.extract.worker). Its paper is retried alone, uncounted (rpa.run.policy): a death is charged
only when the paper was alone in a fresh process and the pool was told of no pressure
(`ExtractPool.memory_pressure`, called at every decision here).

Every change is said, with the figures that caused it, and counted for the summary. An exception
no reading should raise (a bug in the sampler or in its decision) is said once, by which
exception and where (rpa.run.tasks.describe), and sampling goes on: see `_bug` for why the run
is not stopped for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rpa.extract.pool import ExtractPool, rss_bytes
from rpa.gates import Gate
from rpa.machine import CGROUP_ROOT, cgroup_folder
from rpa.notices import Notices
from rpa.run.snapshot import MemorySnapshot
from rpa.run.tasks import describe
from rpa.units import gib

__all__ = ["Governed", "MemoryGovernor", "MemoryReading", "read_memory"]

#: seconds between samples
INTERVAL = 0.25
#: seconds between samples while over the pause line
INTERVAL_HIGH = 0.05
#: seconds the pressure must stay below the pause line before a narrowed extract gate widens
CALM = 30.0
_UNLIMITED = 1 << 60
_CGROUP = CGROUP_ROOT


class _LoopClosed(Exception):
    """The run's loop is closed: the sampling thread ends."""


@dataclass(frozen=True, slots=True)
class MemoryReading:
    used: int  # bytes
    limit: int  # bytes
    source: str  # "cgroup" | "machine"

    @property
    def fraction(self) -> float:
        return self.used / self.limit if self.limit else 0.0


def _int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text in ("", "max") else int(text)


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_paths() -> tuple[Path | None, Path | None]:
    """(the v2 cgroup folder, the v1 memory cgroup folder) of this process, where present."""
    return cgroup_folder(""), cgroup_folder("memory")


def cgroup_memory() -> tuple[int, int] | None:
    """(working set, limit) of this process's memory cgroup, if a limit binds it."""
    v2, v1 = _cgroup_paths()
    if v1 is not None and (v1 / "memory.usage_in_bytes").exists():
        limit = _stat(v1 / "memory.stat", "hierarchical_memory_limit") or (
            _int(v1 / "memory.limit_in_bytes") or _UNLIMITED
        )
        if limit < _UNLIMITED:
            usage = _int(v1 / "memory.usage_in_bytes") or 0
            return max(0, usage - _stat(v1 / "memory.stat", "total_inactive_file")), limit
    if v2 is not None and (v2 / "memory.current").exists():
        limits = []
        folder = v2
        while folder != _CGROUP.parent and _CGROUP in (folder, *folder.parents):
            value = _int(folder / "memory.max")
            if value is not None:
                limits.append(value)
            folder = folder.parent
        if limits:
            usage = _int(v2 / "memory.current") or 0
            return max(0, usage - _stat(v2 / "memory.stat", "inactive_file")), min(limits)
    return None


def machine_memory() -> tuple[int, int]:
    """(in use, total) for the whole machine, from /proc/meminfo."""
    info: dict[str, int] = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        info[name] = int(rest.split()[0]) * 1024
    total = info["MemTotal"]
    return total - info.get("MemAvailable", info.get("MemFree", 0)), total


def read_memory() -> MemoryReading:
    """Memory in use against the limit that binds: the cgroup's, else the machine's."""
    machine_used, total = machine_memory()
    group = cgroup_memory()
    if group is not None and group[1] < total:
        return MemoryReading(group[0], group[1], "cgroup")
    return MemoryReading(machine_used, total, "machine")


class Governed(Protocol):
    """Work beside extraction that the governor pauses and may shed (the user's stages)."""

    def memory_pressure(self, on: bool) -> None: ...
    def pids(self) -> list[int]: ...
    def shed(self, pid: int) -> bool: ...


class MemoryGovernor:
    """Watches memory for one run and acts on its gates and its extraction pool."""

    def __init__(
        self,
        *,
        pause: float,
        resume: float,
        kill: float,
        prefetch: Gate,
        extract: Gate,
        pool: ExtractPool,
        notices: Notices,
        reader: Callable[[], MemoryReading] = read_memory,
        interval: float = INTERVAL,
        calm: float = CALM,
    ) -> None:
        self.pause, self.resume, self.kill = pause, resume, kill
        self.prefetch, self.extract = prefetch, extract
        self.pool = pool
        self.notices = notices
        self.reader = reader
        self.interval = interval
        self.calm = calm
        self.state = "ok"
        self.reading: MemoryReading | None = None
        self.pauses = 0
        self.shed = 0
        self._paused_since: float | None = None
        self._paused_total = 0.0
        self._narrowed = 0  # how many steps the extract gate is narrowed by, after a shed
        self._last_high = 0.0
        self._pids: list[int] = []
        self._last_shed = 0  # pid of the process last killed for memory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ramp: asyncio.Future[None] | None = None
        self._others: list[Governed] = []

    def also(self, other: Governed) -> None:
        """Govern `other` too: paused with extraction, its processes shed as extraction's."""
        self._others.append(other)

    # ---- the sampling thread --------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        def sample() -> None:
            wait = self.interval
            while not self._stop.wait(wait):
                try:
                    wait = self._sample(loop)
                except _LoopClosed:  # the run is over
                    return
                except Exception as exc:  # a bug: said once, by name; sampling goes on
                    wait = self.interval
                    with contextlib.suppress(RuntimeError):  # (the loop closed: the run is over)
                        loop.call_soon_threadsafe(self._bug, exc)

        self._thread = threading.Thread(target=sample, name="rpa-memory", daemon=True)
        self._thread.start()

    def _sample(self, loop: asyncio.AbstractEventLoop) -> float:
        """Take one reading and hand it to the loop; the seconds until the next."""
        try:
            reading = self.reader()
        except (OSError, ValueError, KeyError):  # a file of /proc or the cgroup changing
            return self.interval
        high = reading.fraction >= self.pause
        wait = min(self.interval, INTERVAL_HIGH) if high else self.interval
        if self._last_shed and not rss_bytes(self._last_shed):
            self._last_shed = 0  # it has let its memory go (and its pid may be reused)
        largest = None
        if reading.fraction >= self.kill and not self._last_shed:
            # (not while the process last killed still holds memory: this reading
            # counts it, and a second kill would be for nothing)
            sizes = [(rss_bytes(pid), pid) for pid in list(self._pids)]
            largest = max(sizes) if sizes else None
        try:
            loop.call_soon_threadsafe(self._decide, reading, largest)
        except RuntimeError as exc:  # the loop is closed: the run is over
            raise _LoopClosed from exc
        return wait

    def _bug(self, exc: BaseException) -> None:
        """An exception no reading should raise (a bug in the sampler or its decision): said
        once, by name, where the run's messages go. A demanding user's overnight run is not
        stopped for it: the governor is a safeguard beside the work, the kernel's OOM killer
        still takes an extraction process first (its paper retried uncounted), and the next
        sample may well succeed; the user is told that memory is not governed while samples
        fail, and where, to report it."""
        self.notices.add(
            f"the memory sampler failed: {describe(exc)}; it goes on sampling, but memory "
            "is not governed while its samples fail",
            key="memory-sampler-bug",
        )

    def stop(self) -> None:
        self._stop.set()
        if self._ramp is not None:
            self._ramp.cancel()
        if self.state != "ok" and self._paused_since is not None:
            self._paused_total += time.monotonic() - self._paused_since
            self._paused_since = None

    # ---- on the loop -----------------------------------------------------------------------

    def _figures(self, r: MemoryReading) -> str:
        return f"{gib(r.used)} GiB of {gib(r.limit)} GiB ({r.source}, {r.fraction:.0%})"

    def _decide(self, reading: MemoryReading, largest: tuple[int, int] | None) -> None:
        """`_on_reading`, on the loop; a bug in it is said as the sampler's (a callback that
        raised would only reach the loop's exception handler: a traceback on stderr)."""
        try:
            self._on_reading(reading, largest)
        except Exception as exc:
            self._bug(exc)

    def _on_reading(self, reading: MemoryReading, largest: tuple[int, int] | None) -> None:
        """One sample; `largest` is (RSS, pid) of the largest extraction process, when over
        the kill line."""
        if self._stop.is_set():  # a sample that arrived after stop(): the run is ending
            return
        now = time.monotonic()
        self.reading = reading
        self._pids = self.pool.pids() + [p for o in self._others for p in o.pids()]
        f = reading.fraction
        if f >= self.pause:
            self._last_high = now
        if f >= self.kill and largest is not None and self._shed(largest[1]):
            self._last_shed = largest[1]
            self.shed += 1
            self._narrowed += 1
            self._enter("shedding", now)
            self.notices.add(
                f"memory at {self._figures(reading)}, over --memory-kill {self.kill:.0%}: "
                f"killed the largest extraction or stage process (pid {largest[1]}, "
                f"{largest[0] / 2**20:.0f} MiB); its paper goes back to the queue"
            )
        elif f >= self.pause and self.state == "ok":
            self._enter("paused", now)
            self.pauses += 1
            self.notices.add(
                f"memory at {self._figures(reading)}, over --memory-pause {self.pause:.0%}: "
                "no new extraction, download or stage call starts until it is under "
                f"--memory-resume {self.resume:.0%}"
            )
        elif f < self.resume and self.state != "ok":
            self.state = "ok"
            if self._paused_since is not None:
                self._paused_total += now - self._paused_since
                self._paused_since = None
            self.notices.add(f"memory at {self._figures(reading)}: work resumes")
        if self._narrowed and now - self._last_high >= self.calm:
            self._narrowed -= 1  # calm for a while: widen one step
            self._last_high = now
        self._apply()

    def _shed(self, pid: int) -> bool:
        return self.pool.shed(pid) or any(o.shed(pid) for o in self._others)

    def _ramp_done(self, _: asyncio.Future[None]) -> None:
        self._ramp = None

    def _enter(self, state: str, now: float) -> None:
        if self.state == "ok":
            self._paused_since = now
        self.state = state

    def _apply(self) -> None:
        self.pool.memory_pressure(self.state != "ok")
        for other in self._others:
            other.memory_pressure(self.state != "ok")
        if self.state == "ok":
            if self.prefetch.limit == 1 and self.prefetch.capacity > 1 and self._ramp is None:
                # Out of a pause: the downloads it held back start in a slow start, not all
                # in one instant (63 at once made a 29 ms loop iteration).
                self._ramp = asyncio.ensure_future(self.prefetch.ramp())
                self._ramp.add_done_callback(self._ramp_done)
            self.extract.set_limit(self.extract.capacity - self._narrowed)
        else:
            if self._ramp is not None:
                self._ramp.cancel()
            # none new while in flight; with nothing in flight one may still go (no deadlock)
            self.prefetch.set_limit(1)
            self.extract.set_limit(1)

    def snapshot(self) -> MemorySnapshot:
        r = self.reading
        paused = self._paused_total
        if self._paused_since is not None:
            paused += time.monotonic() - self._paused_since
        return MemorySnapshot(
            used=r.used if r else 0,
            limit=r.limit if r else 0,
            source=r.source if r else "machine",
            state=self.state,
            pauses=self.pauses,
            paused_seconds=paused,
            shed=self.shed,
            recycled=self.pool.statistics().recycled,
            extract_limit=self.extract.limit,
        )

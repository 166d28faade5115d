"""`--processes N`: N conductor processes on one queue, one live table, one summary.

One event loop conducts ~300 papers a second over HTTP and ~900 from a tar or a folder
(docs/benchmarks.md); a host with more cores than that keeps busy wants more loops. The queue
already lets several rpa processes share it (leases, fenced completions, one politeness budget
in the queue). A group is that, started and watched by one command:

    rpa run ... --processes N     prepare the queue here (IDs, tars, settings), then start N
      │                           `rpa resume` processes, each with its share of the
      │                           extraction processes, workers and downloads
      ├─ process 1 ── its loop, gates, extraction processes ─┐
      ├─ ...                                                 ├─ the one queue
      └─ process N ──────────────────────────────────────────┘
      each writes its snapshot every quarter second and its summary at its end to a private
      file (RPA_GROUP_REPORT); this process reads them, adds them up (rpa.run.merge) for the
      one live table and the one summary, and relays their stderr lines, each marked [k].

The processes run in their own process group: Ctrl-C (or a SIGTERM) here is passed on to each
of them, so they stop as one run does (a second Ctrl-C, passed on too, stops them at once). A
process that dies without its summary (kill -9) is named in the summary; its leases are taken
over by the others when its heartbeat is found stale (each waits for the jobs other runs hold
before it ends), and the run is `crashed` (exit 1) only if work it held is left for the next
`rpa resume`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pickle
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rpa.config import ENV_PREFIX, Resolved, Settings
from rpa.files import atomic_write
from rpa.queue import open_store, reads
from rpa.run.merge import merge_snapshots, merge_summaries, merge_windows
from rpa.run.signals import catch_stops, release_stops
from rpa.run.snapshot import ELSEWHERE, RunSnapshot, RunSummary

__all__ = ["ENV_REPORT", "READ_INTERVAL", "ProcessGroup", "group_size", "report", "shares"]

#: the file prefix a group's process writes its reports to (no knob: set by the group)
ENV_REPORT = f"{ENV_PREFIX}GROUP_REPORT"
#: how many processes the group has (no knob: set by the group; see `group_size`)
ENV_SIZE = f"{ENV_PREFIX}GROUP_SIZE"
#: seconds between two reads of the processes' snapshots
READ_INTERVAL = 0.25


def report(what: RunSnapshot | RunSummary) -> None:
    """In a group's process: write its snapshot (or, at its end, its summary) where the group
    reads it. Blocking (small: a few KB); a no-op outside a group."""
    prefix = os.environ.get(ENV_REPORT)
    if prefix:
        suffix = ".summary" if isinstance(what, RunSummary) else ".snapshot"
        atomic_write(Path(prefix + suffix), pickle.dumps(what), sync=False)


def group_size() -> int:
    """In a group's process, how many processes the group has (1 outside a group): its
    claims share the queue's last jobs with that many runs at least, registered yet or not
    (rpa.queue.jobs.claim's `share`)."""
    try:
        return max(1, int(os.environ.get(ENV_SIZE, "1")))
    except ValueError:
        return 1


def shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` shares as even as can be, none below 1."""
    return [max(1, total // parts + (1 if k < total % parts else 0)) for k in range(parts)]


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ProcessGroup:
    """The group's side of `--processes N` (see the module's doc): `run()` and `snapshot()`
    as rpa.run.runner.Runner's, for the CLI to drive the same way."""

    def __init__(
        self, resolved: Resolved, run_id: str, *, say: Callable[[str], None] = print,
    ) -> None:  # fmt: skip
        self.settings: Settings = resolved.settings
        self.resolved = resolved
        self.run_id = run_id
        self.say = say
        self.count = self.settings.processes
        self.started = time.time()
        self._t0 = time.perf_counter()
        self._folder = Path(tempfile.mkdtemp(prefix="rpa-group-"))
        self._snaps: dict[int, RunSnapshot] = {}
        self._procs: list[asyncio.subprocess.Process] = []
        self._interrupts = 0

    # ---- what each process is given ------------------------------------------------------

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "rpa", "resume", "--db", self.settings.db]
        if self.resolved.config_path is not None:
            argv += ["--config", str(self.resolved.config_path)]
        return argv

    def _env(self, k: int) -> dict[str, str]:
        s = self.settings
        # the stages are the queue's (prepared here): a process names none of its own
        env = {key: v for key, v in os.environ.items() if not key.startswith("RPA_STAGE")}
        for name, origin in self.resolved.origins.items():  # flags: as the environment's
            if origin.startswith("--"):
                env[f"{ENV_PREFIX}{name.upper()}"] = _env_value(getattr(s, name))
        split = {
            "extract_workers": s.extract_workers_resolved,
            "workers": s.workers,
            "download_concurrency": s.download_concurrency,
            "prefetch": s.prefetch,
        }
        if s.extract_concurrency:
            split["extract_concurrency"] = s.extract_concurrency
        if s.max_connections:
            split["max_connections"] = s.max_connections
        for name, total in split.items():
            env[f"{ENV_PREFIX}{name.upper()}"] = str(shares(total, self.count)[k])
        env[f"{ENV_PREFIX}PROCESSES"] = "1"
        env[f"{ENV_PREFIX}PROGRESS"] = "false"
        env[f"{ENV_PREFIX}LOG_FORMAT"] = "text"
        env[ENV_REPORT] = str(self._folder / f"p{k + 1}")
        env[ENV_SIZE] = str(self.count)
        return env

    # ---- the run -------------------------------------------------------------------------

    async def run(self) -> RunSummary:
        """Start the processes, watch them until the last has ended; the group's summary."""
        catch_stops(self._pass_on)
        try:
            for k in range(self.count):
                self._procs.append(await asyncio.create_subprocess_exec(
                    *self._argv(), env=self._env(k), stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,  # Ctrl-C reaches them through this process
                ))  # fmt: skip
            async with asyncio.TaskGroup() as tasks:
                watcher = tasks.create_task(self._watch())
                for k, proc in enumerate(self._procs):
                    tasks.create_task(self._relay(k, proc))
                codes = [await proc.wait() for proc in self._procs]
                watcher.cancel()
            return await asyncio.to_thread(self._summary, codes)
        finally:
            release_stops()
            for proc in self._procs:  # this process is leaving: so do they
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)

    def _pass_on(self, sig: signal.Signals) -> None:
        self._interrupts += 1
        for proc in self._procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    async def _relay(self, k: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            text = line.decode("utf-8", "replace").rstrip()
            if text and self._own([text]):  # (not what it says of its siblings)
                self.say(f"[{k + 1}] {text}")

    async def _watch(self) -> None:
        while True:
            self._snaps.update(await asyncio.to_thread(self._read, ".snapshot"))
            await asyncio.sleep(READ_INTERVAL)

    def _read(self, suffix: str) -> dict[int, Any]:
        """Each process's latest report of that kind (blocking: files of a few KB)."""
        found: dict[int, Any] = {}
        for k in range(self.count):
            with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError):
                found[k] = pickle.loads((self._folder / f"p{k + 1}{suffix}").read_bytes())
        return found

    def snapshot(self) -> RunSnapshot | None:
        """The group's figures now (None until a process has reported)."""
        snaps = [self._snaps[k] for k in sorted(self._snaps)]
        if not snaps:
            return None
        snaps.sort(key=lambda s: s.elapsed)
        merged = merge_snapshots(snaps, self.label, time.perf_counter() - self._t0)
        return dataclasses.replace(merged, messages=self._own(merged.messages))

    @property
    def label(self) -> str:
        """The group as its table and summary name it (each process is a run of its own)."""
        return f"{self.run_id} ({self.count} processes)"

    def _own(self, messages: list[str]) -> list[str]:
        """Without the processes' waits for each other's jobs (a process out of work waits
        for its siblings' leases: rpa resume's wait for other runs' jobs), nor what each
        process's end said of jobs 'in another live run': its siblings' (`_summary` says the
        group's own)."""
        siblings = [s.run_id for s in self._snaps.values()]
        return [
            m for m in messages
            if not any(r in m for r in siblings) and not m.endswith(ELSEWHERE)
        ]  # fmt: skip

    def _summary(self, codes: list[int]) -> RunSummary:
        """Blocking: the reports' files and the queue's totals at the end."""
        summaries = self._read(".summary")
        lost = [
            f"process {k + 1} (pid {proc.pid}) ended with "
            + (f"signal {-code}" if code < 0 else f"exit code {code}")
            + " and no summary"
            for k, (proc, code) in enumerate(zip(self._procs, codes, strict=True))
            if k not in summaries and code != 0
        ]
        parts = [summaries[k] for k in sorted(summaries)]
        store = open_store(self.settings.db)
        try:
            # the group's processes have ended, and released what they held: what is held
            # now is other runs' (or a lost process's, whose leases expire)
            totals, held = reads.end_of_run_totals(store, "")
        finally:
            store.close()
        wall = time.perf_counter() - self._t0
        if parts:
            merged = merge_summaries(parts, self.label, wall, lost)
            merged = dataclasses.replace(merged, messages=self._own(merged.messages))
        else:  # none had work left (the others took it all) or none could say
            merged = RunSummary(self.label, "finished", 0, 0, totals, wall, merge_windows(()),
                                {}, {}, [], [], lost)  # fmt: skip
        status = merged.status
        left = totals.remaining - merged.held_elsewhere
        if lost and left > 0 and status in ("finished", "interrupted"):
            status = "crashed"  # work is left that the lost process held (else: the others did it)
        crash = merged.crash or (lost[0] if lost and status == "crashed" else None)
        messages = merged.messages + ([f"{held} jobs {ELSEWHERE}"] if held > 0 else [])
        return dataclasses.replace(
            merged, totals=totals, status=status, crash=crash, held_elsewhere=max(0, held),
            messages=messages,
        )  # fmt: skip

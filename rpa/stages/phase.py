"""The run's stage phase: the user's stages over every done paper, beside the paper pipeline.

It is fed twice: when the run starts, each lane claims the done papers whose checkpoint for
its stage is missing, due for a retry, of another version or held by a dead run; during the
run, the tally's `finished` hook (a paper just became done) wakes the lanes. The runner then
`drain`s it once the feeder has ended: the run does not end before every lane has nothing
left (done, failed for good, or only retries not yet due... which it waits for, as the feeder
waits for papers' retries) or a stop. On a stop, in-flight calls get --grace seconds; what is
still running is cancelled and given back (`release_run`), due at once for the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from rpa.config import Settings
from rpa.gates import GateStatistics
from rpa.notices import Notices
from rpa.queue.aio import AsyncQueue
from rpa.run.tally import Tally
from rpa.stages import records, store
from rpa.stages.execute import make_caller
from rpa.stages.lane import Lane
from rpa.stages.procs import ProcessSlots
from rpa.stages.spec import StageSpec

__all__ = ["StagePhase"]


class StagePhase:
    """Every user stage of the run (none: it does nothing)."""

    def __init__(
        self,
        stages: tuple[StageSpec, ...],
        settings: Settings,
        run_id: str,
        queue: AsyncQueue,
        io: Executor,
        tally: Tally,
        notices: Notices,
    ) -> None:
        self._s = settings
        self._run_id = run_id
        self._queue = queue
        self._io = io
        self.closed = False
        self._pressure = False
        self._notices = notices
        versions = {s.name: s.version for s in stages}
        self.lanes = [
            Lane(
                s,
                settings=settings,
                run_id=run_id,
                queue=queue,
                io=io,
                tally=tally,
                notices=notices,
                versions=versions,
            )
            for s in stages
        ]
        by_name = {lane.name: lane for lane in self.lanes}
        for lane in self.lanes:
            for name, _ in lane.needs:
                by_name[name].downstream.append(lane)
        self._first = [lane for lane in self.lanes if not lane.needs]
        if self.lanes:
            tally.on_finished.append(self.finished)

    def gates(self) -> list[GateStatistics]:
        """Each stage's gate (and rate gate), for the live table."""
        return [g for lane in self.lanes for g in lane.statistics()]

    # ---- the memory governor's hooks (rpa.run.memory) -------------------------------------

    def memory_pressure(self, on: bool) -> None:
        """Over --memory-pause: no new stage call starts (each gate narrowed to one, as the
        extract gate); back under --memory-resume: the gates open again."""
        for lane in self.lanes:
            lane.gate.set_limit(1 if on else lane.gate.capacity)
            if lane.caller is not None and lane.caller.procs is not None:
                lane.caller.procs.memory_pressure(on)
            if not on and self._pressure:
                lane.poke()
        self._pressure = on

    def pids(self) -> list[int]:
        """The process stages' processes at work (candidates to shed)."""
        return [pid for p in self._procs() for pid in p.pids()]

    def shed(self, pid: int) -> bool:
        """Kill process `pid` of a process stage: its paper goes back uncounted."""
        return any(p.shed(pid) for p in self._procs())

    def _procs(self) -> list[ProcessSlots]:
        return [x.caller.procs for x in self.lanes if x.caller and x.caller.procs is not None]

    def finished(self, job_id: str) -> None:
        """A paper became done in this run: the stages that start at `outcome` may take it."""
        for lane in self._first:
            lane.poke()

    def _may_end(self, lane: Lane) -> bool:
        """No new work can come to `lane`: the feed ended, and so did every stage it needs."""
        by_name = {x.name: x for x in self.lanes}
        return self.closed and all(by_name[n].ended for n, _ in lane.needs)

    async def run(self, stopping: Callable[[], bool]) -> None:
        """Every lane, until each has nothing left (after `drain`) or the run stops. First,
        the records a killed run may have left without their stages' results are rewritten
        from the queue (rpa.stages.records)."""
        try:
            repaired = await records.repair(self._queue, self._io, Path(self._s.out), self._run_id)
        except OSError as exc:  # --out unreadable: the disk guard says more; the next start
            repaired = 0
            self._notices.add(f"could not repair the stages' outcome records: {exc}")
        if repaired:
            self._notices.add(
                f"rewrote {repaired} outcome records a stopped run left without their stages' "
                "latest results (the queue had them)"
            )
        if not self.lanes:
            return
        loop = asyncio.get_running_loop()
        for lane in self.lanes:  # the user's module is imported off the loop
            lane.caller = await loop.run_in_executor(
                self._io, make_caller, lane.spec, self._s.extract_max_mb,
                self._s.extract_nice, self._s.extract_recycle_mb,
            )  # fmt: skip
        try:
            async with asyncio.TaskGroup() as tg:
                for lane in self.lanes:
                    tg.create_task(lane.run(stopping, self._may_end), name=f"stage {lane.name}")
        except BaseExceptionGroup as group:  # the first lane's error, said as itself
            raise group.exceptions[0] from None
        finally:
            await self._settle(stopping())

    async def _settle(self, stopping: bool) -> None:
        """In-flight calls: let them end (--grace on a stop), then cancel and give back."""
        tasks = {t for lane in self.lanes for t in lane.in_flight.values()}
        if tasks:
            await asyncio.wait(tasks, timeout=self._s.grace if stopping else None)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self.lanes:
            if lane.caller is not None:
                lane.caller.close()
        with contextlib.suppress(Exception):  # the database is gone: the next run finds it dead
            await asyncio.shield(self._queue.run(store.release_run, self._run_id))

    async def drain(self, task: asyncio.Task[None]) -> None:
        """The feed has ended: let the lanes finish what is left, then return."""
        self.closed = True
        for lane in self.lanes:
            lane.poke()
        await task

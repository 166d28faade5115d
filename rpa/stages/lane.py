"""One user stage's lane in a run: claim done papers for it, call it, checkpoint the answer.

A lane claims at most as many papers as its gate has room for (one while it probes a
service that was out), so no claimed paper waits long on the gate; each paper is a task that
enters the gate, takes a slot of the stage's fleet-wide rate (rpa.hosts.fleet, its `host`
named `stage:<name>`), calls the stage (rpa.stages.execute), then writes the result (fenced,
rpa.stages.store) and the paper's record with `stages.<name>` merged (noted first, then
rewritten atomically, in the I/O pool: rpa.stages.records). A given-up thread keeps its gate
slot until it returns; the memory governor may narrow the gate (rpa.stages.phase). A failure
goes through rpa.stages.policy: retried with the run's backoff, failed for good, or (the
stage's service is out) the paper goes back uncounted and the lane pauses, then lets one
paper through as a probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from rpa import errors
from rpa.config import Settings
from rpa.gates import Gate, GateStatistics
from rpa.hosts.fleet import FleetRateGate
from rpa.notices import Notices
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import Attempt
from rpa.run.backoff import retry_delay
from rpa.run.tally import StageMeter, Tally
from rpa.stages import records, store
from rpa.stages.execute import Caller
from rpa.stages.paper import Paper
from rpa.stages.policy import judge
from rpa.stages.spec import StageSpec

__all__ = ["Lane"]

#: papers claimed per query at most
MAX_CLAIM = 64
#: the longest a lane sleeps before it looks again (new papers wake it sooner)
POLL = 2.0
#: seconds between claims from the first done paper again (new ones come after the cursor)
RESCAN = 10.0


class Lane:
    """The run's work for one stage."""

    def __init__(
        self,
        spec: StageSpec,
        *,
        settings: Settings,
        run_id: str,
        queue: AsyncQueue,
        io: Executor,
        tally: Tally,
        notices: Notices,
        versions: dict[str, str],
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self._s = settings
        self._run_id = run_id
        self._queue = queue
        self._io = io
        self._tally = tally
        self._notices = notices
        self.needs = [(n, versions[n]) for n in spec.needs]
        self.gate = Gate(f"stage {spec.name}", spec.concurrency)
        limit = spec.rate_limit
        self.rate = None
        if limit is not None:
            self.rate = FleetRateGate(
                f"stage:{spec.name}", limit[0], limit[1], queue=queue, holder=run_id,
                hold=spec.timeout + 30.0,
            )  # fmt: skip
            self.rate.name = f"stage {spec.name} rate"
        self.meter = tally.meters.setdefault(spec.name, StageMeter(spec.name))
        self.caller: Caller | None = None
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.ended = False
        self.dirty = True  # something may have become claimable since the last empty claim
        self._wake: asyncio.Event | None = None
        self._cursor = 0
        self._scanned = time.monotonic()  # the last claim from the start
        self._paused_until = 0.0  # monotonic
        self._pause_streak = 0
        self._probing = False
        #: paper -> (outage give-backs that count, the lane's successes at the last one)
        self._strikes: dict[str, tuple[int, int]] = {}
        self._successes = 0
        self.blocked = 0  # steps that blocked the loop
        self.downstream: list[Lane] = []  # the stages that run after this one

    def statistics(self) -> list[GateStatistics]:
        gates = [self.gate.statistics()]
        if self.rate is not None:
            gates.append(self.rate.statistics())
        return gates

    def room(self) -> int:
        """Papers to claim now: what the gate lets in (one while probing; the memory governor
        may narrow it), less the calls in hand and the given-up calls whose thread still
        runs (they keep their slot)."""
        limit = 1 if self._probing else self.gate.limit
        abandoned = self.caller.abandoned if self.caller is not None else 0
        return limit - len(self.in_flight) - abandoned

    def poke(self) -> None:
        """New work may be claimable (a paper done, an earlier stage done, the feed ended)."""
        self.dirty = True
        if self._wake is not None:
            self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.0)):
                await self._wake.wait()

    async def run(self, stopping: Callable[[], bool], may_end: Callable[[Lane], bool]) -> None:
        """Until nothing is left for this stage (`may_end`: no new work can come) or a stop."""
        self._wake = asyncio.Event()
        try:
            while not stopping():
                pause = self._paused_until - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(min(pause, POLL))  # a pause is not cut short by news
                    continue
                room = self.room()
                if room <= 0:
                    await self._sleep(POLL)
                    continue
                self.dirty = False
                claimed = await self._queue.run(
                    store.claim, self.name, self.spec.version, self.needs, self._run_id,
                    self._cursor, min(room, MAX_CLAIM), time.time(),
                )  # fmt: skip
                if claimed:
                    self._cursor = claimed[-1].seq
                    for c in claimed:
                        task = asyncio.create_task(
                            self._one(c), name=f"stage {self.name} {c.job_id}"
                        )
                        self.in_flight[c.job_id] = task
                        task.add_done_callback(functools.partial(self._ended, c.job_id))
                    continue
                if self._cursor and (may_end(self) or time.monotonic() - self._scanned > RESCAN):
                    # from the start again: a paper retried late is done with a low seq (a
                    # scan from the start costs O(done papers): not at every new paper)
                    self._cursor = 0
                    self._scanned = time.monotonic()
                    continue
                if self.in_flight or self.dirty:
                    await self._sleep(POLL if not self.dirty else 0)
                    continue
                if may_end(self):
                    due = await self._queue.run(
                        store.next_due, [(self.name, self.spec.version)], self._run_id,
                        time.time(),
                    )  # fmt: skip
                    if due is None:
                        return
                    await self._sleep(min(due - time.time(), POLL))
                else:
                    await self._sleep(POLL)
        finally:
            self.ended = True

    def _ended(self, job_id: str, _task: object = None) -> None:
        self.in_flight.pop(job_id, None)
        if self._wake is not None:
            self._wake.set()

    async def _one(self, c: store.Claimed) -> None:
        paper = Paper(
            id=c.job_id,
            pdf_path=Path(c.pdf_path) if c.pdf_path else None,
            text_path=Path(c.text_path) if c.text_path else None,
            outcome_path=Path(c.outcome_path) if c.outcome_path else None,
            record=c.record,
            results=c.results,
        )
        started = time.time()
        t_wait = time.perf_counter()
        assert self.caller is not None
        result: Any = None
        failure: BaseException | None = None
        await self.gate.acquire()
        held = [True]  # the slot, given back by `free` (once; later, for a given-up thread)
        calling = False  # the call owns `free` from then on

        def free() -> None:
            if held[0]:
                held[0] = False
                self.gate.release()
                if self._wake is not None:
                    self._wake.set()

        try:
            if self.rate is not None:
                await self.rate.acquire()
            waited = time.perf_counter() - t_wait
            self.meter.running += 1
            t0 = time.perf_counter()
            try:
                calling = True
                result = await self.caller.call(paper, lambda s: self._blocked(c.job_id, s), free)
                if not isinstance(result, dict):
                    raise errors.InternalError(
                        f"stage {self.name} returned {type(result).__name__}, not a dict"
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = exc
            finally:
                self.meter.running -= 1
                if self.rate is not None:
                    await self.rate.answered()
        except BaseException:
            if not calling:
                free()
            raise
        if isinstance(failure, TimeoutError) and self.caller.abandoned:
            self._notices.add(
                f"stage {self.name}: a call ran past its {self.spec.timeout:g}s timeout (paper "
                f"{c.job_id}); Python cannot stop a thread: it runs on and keeps one of the "
                f"stage's {self.spec.concurrency} slots until it returns ({self.caller.abandoned} "
                "such now)",
                key=f"abandoned {self.name}",
            )
        took = time.perf_counter() - t0
        if failure is None:
            try:
                await self._done(c, result, took)
                outcome, kind = "ok", None
            except errors.InternalError as exc:  # not JSON-serialisable (store.complete)
                outcome, kind = await self._failed(c, exc)
        else:
            outcome, kind = await self._failed(c, failure)
        self._tally.attempts.append(
            Attempt(c.job_id, self._run_id, self.name, started, waited, took, outcome, kind)
        )

    async def _done(self, c: store.Claimed, result: dict[str, Any], took: float) -> None:
        loop = asyncio.get_running_loop()
        note = None
        if c.outcome_path:  # noted first: a kill after the commit leaves the note to repair
            out = Path(self._s.out)
            note = await loop.run_in_executor(self._io, records.mark, out, self._run_id, c.job_id)
        try:
            record = await self._queue.run(
                store.complete, c.job_id, self.name, self._run_id, c.token, result, took,
                time.time(),
            )  # fmt: skip
        except errors.InternalError:  # not JSON-serialisable: nothing was committed
            await loop.run_in_executor(self._io, records.unmark, note)
            raise
        if record is None:
            await loop.run_in_executor(self._io, records.unmark, note)
            self._notices.add(f"{c.job_id}: stage {self.name}: another run took it; not written")
            return
        if c.outcome_path:
            path = Path(c.outcome_path)
            try:
                await records.settle(
                    self._queue, self._io, path, c.job_id, record, self._run_id, note
                )
            except OSError as exc:  # the queue holds it (export reads it there): say, go on
                self._notices.add(
                    f"{c.job_id}: stage {self.name}: record not rewritten (the next run "
                    f"repairs it): {exc}"
                )
        self.meter.done += 1
        self.meter.durations.add(took)
        self._successes += 1
        self._strikes.pop(c.job_id, None)
        if self._pause_streak or self._probing:
            self._notices.add(f"stage {self.name}: its service answers again; resuming")
            self._notices.forget(f"stage-pause {self.name}")
        self._pause_streak = 0
        self._probing = False
        for lane in self.downstream:
            lane.poke()

    async def _failed(self, c: store.Claimed, exc: BaseException) -> tuple[str, str]:
        now = time.time()
        # an outage give-back strikes the paper only if the stage worked for others since its
        # last one: a long outage (every paper refused) charges nobody
        strikes, seen = self._strikes.get(c.job_id, (0, -1))
        v = judge(exc, self.name, c.attempts, self._s, now, strikes=strikes)
        err = v.error
        next_at = v.next_at
        if v.action == "pause":
            if seen != self._successes:
                self._strikes[c.job_id] = (strikes + 1, self._successes)
            self._pause_streak += 1
            seconds = err.retry_after or retry_delay(
                self._pause_streak, self._s.retry_base, self._s.retry_max
            )
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
            self._probing = True
            next_at = now + seconds
            self._notices.add(
                f"stage {self.name}: its service is out ({err.message}); paused {seconds:.0f}s, "
                "no paper charged",
                key=f"stage-pause {self.name}",
            )
        final, counted = v.action == "fail", v.counted and v.action != "pause"
        await self._queue.run(
            store.fail, c.job_id, self.name, self._run_id, c.token, final=final,
            counted=counted, next_at=next_at, kind=err.kind,
            message=err.message, now=now,
        )  # fmt: skip
        key, reason = f"{self.name}/{err.kind}", f"{c.job_id}: {err.message}"
        self._tally.last_seen[key] = reason  # the live table's failure kinds
        if final:
            self.meter.failed += 1
            self._tally.failures[key] += 1
            self._tally.reasons[key] = reason
            return "failed", err.kind
        if counted:
            self.meter.retried += 1
        else:  # its service out, or another condition: not charged (the summary says apart)
            self.meter.uncounted += 1
        self._tally.retries[key] += 1
        self.poke()
        return "retry", err.kind

    def _blocked(self, job_id: str, seconds: float) -> None:
        """A step of this (async) stage held the event loop `seconds`: name it."""
        self.blocked += 1
        self._notices.add(
            f"stage {self.name} blocked the event loop for {seconds * 1000:.0f} ms (paper "
            f'{job_id}): an async stage must await, never block; use kind = "thread" for '
            "sync code",
            key=f"blocked {self.name} {int(time.monotonic() // 30)}",
        )

"""The run's life cycle: build its parts, start, serve until nothing is left, record the end.

    feeder ──claims──▶ local queue ──▶ worker × N ──▶ JobProcessor (download ▸ the paper's work
       ▲                                            │   in an extraction process)
       └── AsyncQueue (database threads) ◀── completions in batches, each fenced by its lease

The parts each own one concern: the feeder and workers (rpa.run.feeder), the heartbeat
(rpa.run.heartbeat), host health (rpa.hosts.health), the disk guard (rpa.run.disk), the memory
governor (rpa.run.memory), the progress snapshot (rpa.run.progress), the work on one paper
(rpa.run.job) and what a failure means (rpa.run.policy). The runner builds them, runs them in
task groups (structured concurrency), turns signals into a stop, and says how the run ended:
`finished`, `interrupted` (a signal), `denied` (a host refused us), `unreachable` (the PDF
host never answered: a wrong --pdf-url), `declared_dead` (another run took its jobs) or
`crashed` (something outside one paper broke): never `finished` when it did not. Nothing
here blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import time
from collections.abc import Callable

import httpx

from rpa.config import Settings
from rpa.extract.pool import ExtractPool
from rpa.gates import Gate, GateStatistics
from rpa.hints import command_hint
from rpa.hosts.health import HostHealth
from rpa.layout import Layout
from rpa.metrics import LagProbe
from rpa.notices import Notices
from rpa.queue import reads, redact, runs
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import RunInfo, Totals, new_run_id
from rpa.run.clients import load_stack
from rpa.run.completer import Completer
from rpa.run.disk import DiskGuard
from rpa.run.feeder import Feeder
from rpa.run.heartbeat import Heartbeat, heartbeat_interval
from rpa.run.io_pool import io_pool
from rpa.run.job import JobGates, JobProcessor
from rpa.run.memory import MemoryGovernor
from rpa.run.metadata import MetadataService, metadata_service
from rpa.run.metrics_file import MetricsFile
from rpa.run.progress import Progress
from rpa.run.publish import prepare_out
from rpa.run.signals import catch_stops, release_stops
from rpa.run.snapshot import ELSEWHERE, RunSnapshot, RunSummary
from rpa.run.source import open_source
from rpa.run.tally import Tally
from rpa.run.tasks import describe_crash, start
from rpa.stages.phase import StagePhase
from rpa.stages.spec import StageSpec

__all__ = ["RunSummary", "Runner"]


class Runner:
    """Runs the queue in `settings.db` until nothing claimable is left (or it is told to stop).
    `notices.on_new` may print each notice as it comes (when no live table shows them)."""

    def __init__(
        self,
        settings: Settings,
        *,
        command: str = "run",
        run_id: str | None = None,
        notices: Notices | None = None,
        write_metrics: Callable[[RunSnapshot], None] | None = None,
        stages: tuple[StageSpec, ...] = (),
    ) -> None:
        """`write_metrics` writes --metrics-file from a snapshot (blocking: it runs in the
        I/O pool every few seconds and at the end); the CLI gives it, so that the run never
        reaches the display."""
        self.settings = settings
        self.command = command
        self.run_id = run_id or new_run_id()
        self.layout = Layout(settings.out)
        self.notices = notices or Notices()
        self.queue = AsyncQueue(
            settings.db, wait=settings.db_wait, lock_timeout=settings.db_lock_timeout,
            notices=self.notices,
        )  # fmt: skip
        self.io = io_pool()
        extract = Gate("extract", settings.extract_concurrency_resolved)
        self.gates = JobGates(prefetch=Gate("prefetch", settings.prefetch),
                              download=Gate("download", settings.download_concurrency),
                              extract=extract)  # fmt: skip
        load_stack(settings)  # (the HTTP stack's imports, before the loop runs)
        self.hosts = HostHealth(
            settings, queue=self.queue, run_id=self.run_id, notices=self.notices
        )
        self.pool = ExtractPool(
            settings.extract_workers_resolved,
            mode=settings.extract_pool,
            timeout=settings.extract_timeout,
            max_mb=settings.extract_max_mb or None,
            nice=settings.extract_nice,
            extractor=settings.extractor,
            recycle_mb=settings.extract_recycle_mb,
        )
        self.governor = MemoryGovernor(
            pause=settings.memory_pause,
            resume=settings.memory_resume,
            kill=settings.memory_kill,
            prefetch=self.gates.prefetch,
            extract=self.gates.extract,
            pool=self.pool,
            notices=self.notices,
        )
        self.probe = LagProbe()
        self.tally = Tally()
        self.stages = StagePhase(
            stages, settings, self.run_id, self.queue, self.io, self.tally, self.notices
        )
        self.governor.also(self.stages)
        self.disk = DiskGuard(self.layout.root, settings.out, settings.min_free_mb, self.io)
        self.feeder = Feeder(
            settings=settings,
            run_id=self.run_id,
            queue=self.queue,
            hosts=self.hosts,
            disk=self.disk,
            tally=self.tally,
            notices=self.notices,
            on_crash=self._on_crash,
        )
        self.heartbeat = Heartbeat(
            settings=settings,
            run_id=self.run_id,
            queue=self.queue,
            held=self.feeder.held,
            hosts=self.hosts,
            disk=self.disk,
            tally=self.tally,
            notices=self.notices,
            on_totals=self._set_totals,
            on_reclaimed=self.feeder.wake,
            on_lost=self.feeder.lose,
            on_dead=self._on_dead,
            wait=lambda: self.progress.wait(),
        )
        self.hosts.on_back.append(self.feeder.wake)
        self.progress = Progress(
            run_id=self.run_id,
            workers=settings.workers,
            gates=self.gates,
            network=settings.network,
            more_gates=self._more_gates,
            hosts=self.hosts,
            pool=self.pool,
            feeder=self.feeder,
            disk=self.disk,
            governor=self.governor,
            tally=self.tally,
            notices=self.notices,
            probe=lambda: self.probe,
            outage=self.queue.outage,
        )
        self._metrics = write_metrics and MetricsFile(
            write_metrics, self.snapshot, self.io, self.notices
        )
        self.held_elsewhere = self._signals = 0
        self._crash: str | None = None
        self._dead: str | None = None
        self._unreachable: str | None = None
        self.metadata: MetadataService | None = None

    def _more_gates(self) -> list[GateStatistics]:
        """The gates the run opens as it starts: the metadata API's, the database's."""
        gates = []
        if self.metadata is not None and self.metadata.gate is not None:
            gates.append(self.metadata.gate.statistics())
        gates.append(self.queue.gate.statistics())
        return gates + self.stages.gates()

    def _set_totals(self, totals: Totals) -> None:
        self.progress.set_totals(totals)

    def _on_crash(self, reason: str) -> None:
        self._crash = self._crash or reason

    def _on_dead(self, reason: str) -> None:
        """Another run found this one dead and took its jobs: stop, writing nothing."""
        self._dead = self._dead or reason
        self.feeder.held.revoke()  # its extraction processes replace no file from now on
        self.notices.add(f"declared dead: {self._dead}; stopping, writing nothing", key="dead")
        self.stop()
        self.feeder.cancel_workers()

    def snapshot(self) -> RunSnapshot:
        """The run's progress now, for the live table and the log lines."""
        return self.progress.snapshot()

    # ---- the run --------------------------------------------------------------------------
    async def run(self) -> RunSummary:
        """Process the queue. Raises DatabaseError (or ConfigError) if the run cannot start;
        any later failure ends the run as `crashed`, said in the summary."""
        # the extraction processes start while the queue is prepared: no core idles at the start
        warm = asyncio.ensure_future(self.pool.__aenter__())
        try:
            await self.queue.open(create=False)
            await self._start()
            await warm
        except BaseException:
            if (await asyncio.gather(warm, return_exceptions=True))[0] is self.pool:
                await self.pool.__aexit__(None, None, None)
            await self.queue.close()
            self.io.shutdown(wait=False)
            raise
        status = "finished"
        try:
            await self._serve()
            if self._crash:
                status = "crashed"
            elif self._unreachable:
                status = "unreachable"
            elif self._signals or self.feeder.stayed_away:
                status = "interrupted"
            elif await self.hosts.refused_us():
                status = "denied"
        except asyncio.CancelledError:
            status = "interrupted"
        except Exception as exc:  # outside any one paper: the run cannot go on
            status = "interrupted" if self.queue.gave_up else "crashed"
            if not self.queue.gave_up:
                self._crash = self._crash or describe_crash(exc)  # which task, what, where
        finally:
            release_stops()
            await self._finish(status)
            self.notices.withdraw("stopping")  # stopped: the summary says `interrupted`
            status = "declared_dead" if self._dead else status
        if self._metrics is not None:
            await self._metrics.write()
        await self.queue.close()
        self.io.shutdown(wait=False)
        return self._summary(status)

    async def _start(self) -> None:
        s = self.settings
        await self.heartbeat.reclaim()
        live = await self.queue.run(runs.live_runs)
        await prepare_out(self.queue, self.layout, live, self.io)
        # the disk guard holds from the first claim, not from the first heartbeat
        await self.disk.check()
        info = RunInfo(
            id=self.run_id,
            command=self.command,
            started_at=0.0,  # its first beat, by the database's clock: Heartbeat.register
            heartbeat_seconds=heartbeat_interval(s),
            settings_json=json.dumps(dataclasses.asdict(s), default=str),
        )
        await self.heartbeat.register(info)
        await self.hosts.restore()
        self._set_totals(await self.queue.run(reads.totals, time.time()))

    async def _serve(self) -> None:
        s = self.settings
        catch_stops(self._on_signal)
        async with contextlib.AsyncExitStack() as stack:
            source, probe_client = await open_source(
                s, queue=self.queue, io=self.io, hosts=self.hosts, run_id=self.run_id,
                stack=stack,
            )  # fmt: skip
            stack.push_async_exit(self.pool.__aexit__)  # (entered by `run`)
            self.metadata = metadata_service(
                s, queue=self.queue, io=self.io, notices=self.notices, hosts=self.hosts
            )
            self.governor.start(asyncio.get_running_loop())
            stack.callback(self.governor.stop)
            done = Completer(self.queue, self.io, self.run_id, self.layout.root,
                             self.gates.extract.has_waiters, downloads=s.network)  # fmt: skip
            processor = JobProcessor(
                completer=done,
                settings=s,
                run_id=self.run_id,
                queue=self.queue,
                source=source,
                pool=self.pool,
                gates=self.gates,
                hosts=self.hosts,
                layout=self.layout,
                io=self.io,
                tally=self.tally,
                notices=self.notices,
                stopping=lambda: self.feeder.stopping,
                metadata=self.metadata,
                disk=self.disk,
            )
            await self._run_tasks(processor, probe_client)

    async def _finish(self, status: str) -> None:
        """Record how the run ended, as far as the database lets us."""
        try:
            await self.heartbeat.flush_attempts()
            if not await self.queue.run(runs.end_run, self.run_id, status):
                self._on_dead("another run found it dead")  # said once
            totals, self.held_elsewhere = await self.queue.run(reads.end_of_run_totals, self.run_id)
            self._set_totals(totals)
            # a run found dead while this one ran left private files: repair and remove them
            live = await self.queue.run(runs.live_runs)
            await prepare_out(self.queue, self.layout, live, self.io)
        except Exception as exc:  # the database itself broke: say so, keep what we know
            reason = f"{type(exc).__name__}: {exc}"
            if not self.queue.gave_up:  # the database stayed away: interrupted, said already
                self._crash = self._crash or reason
            self.notices.add(f"could not record the end of the run: {reason}")
        if self.held_elsewhere:
            self.notices.add(f"{self.held_elsewhere} jobs {ELSEWHERE}")

    async def _run_tasks(
        self, processor: JobProcessor, probe_client: httpx.AsyncClient | None
    ) -> None:
        async with asyncio.TaskGroup() as background:
            side = [
                start(background, "lag-probe", self.probe.run()),
                start(background, "heartbeat", self.heartbeat.run()),
                start(background, "slow-start", self.gates.download.ramp()),
            ]
            if self._metrics is not None:
                side.append(start(background, "metrics-file", self._metrics.run()))
            if self.metadata is not None:
                side.append(start(background, "metadata", self.metadata.run()))
            if probe_client is not None:
                side.append(start(background, "host-probes", self._watch_hosts(probe_client)))
            side.append(start(background, "completions", processor.completer.run()))
            stages = start(background, "stages", self.stages.run(lambda: self.feeder.stopping))
            try:
                await self.feeder.run(processor)
                await processor.completer.drain()  # the workers are done: nothing is added
                await self.stages.drain(stages)  # the user's stages over what is done
            finally:
                stages.cancel()
                for task in side:
                    task.cancel()

    async def _watch_hosts(self, client: httpx.AsyncClient) -> None:
        """Probe hosts that are down; stop the run if one was never there (a wrong port)."""
        await self.hosts.watch(client)
        reason = self.hosts.outages.unreachable
        if reason is not None:
            self._unreachable = reason
            fix = command_hint(
                f"resume --db {redact(self.settings.db)} --reconfigure --pdf-url URL"
            )
            self.notices.add(
                f"{reason}: it never answered in this run, so no paper was charged. Check "
                f"--pdf-url (and the network): `{fix}` sets it."
            )
            self.stop()
            self.feeder.cancel_workers()

    def _summary(self, status: str) -> RunSummary:
        return RunSummary(
            run_id=self.run_id,
            status=status,
            done=self.tally.done,
            failed=self.tally.failed,
            totals=self.progress.fresh_totals(),  # the last read, moved on by this run
            wall_seconds=time.monotonic() - self.progress.started,
            lag=self.probe.summary(),
            failures=dict(self.tally.failures),
            reasons=dict(self.tally.reasons),
            slowest=self.tally.top_slowest(),
            stages=[m.snapshot() for m in self.tally.meters.values()],
            messages=self.notices.recent(10),
            held_elsewhere=self.held_elsewhere,
            crash=self._crash,
            memory=self.governor.snapshot(),
            stamp_mismatches=self.tally.stamp_mismatches,
            stamp_examples=list(self.tally.stamp_examples),
        )

    # ---- signals (rpa.run.signals) ---------------------------------------------------------

    def _on_signal(self, _sig: signal.Signals) -> None:
        """First signal: stop claiming, let in-flight work finish for --grace seconds.
        Second: stop at once. Handlers only set state and schedule; the tasks do the rest."""
        self._signals += 1
        self.stop()
        if self._signals == 1:
            self.notices.add(
                f"stopping: finishing in-flight work for up to {self.settings.grace:g}s "
                "(Ctrl-C again to stop now)", key="stopping",
            )  # fmt: skip
            self.feeder.stop_within(
                self.settings.grace, lambda: self.tally.progress(self.hosts.gates.waiting)
            )
        else:
            self.feeder.cancel_workers()

    def stop(self) -> None:
        """Stop claiming new work; workers finish what they hold."""
        self.feeder.stop()

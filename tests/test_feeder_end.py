"""When the feeder may end: only when nothing is due and nobody holds a lease, read in that
order so that leases reclaimed between the reads are seen (a real SQLite queue, the real
host health, disk guard and tally; the job's work is a stand-in that completes it)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rpa.config import Settings
from rpa.hosts.health import HostHealth
from rpa.notices import Notices
from rpa.queue import jobs, open_store, runs
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import Job, RunInfo
from rpa.run.disk import DiskGuard
from rpa.run.feeder import Feeder
from rpa.run.tally import Tally

LIVE = "live-run"


class ReclaimAfterDueRead(AsyncQueue):
    """The real queue, but the live run's heartbeat reclaims the dead run's leases right after
    the feeder's first read of what is due: the interleaving CI met once (the heartbeat's
    reclaim landing between the feeder's two reads), which two threads cannot be made to
    produce on demand."""

    reclaimed = 0

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        result = await super().run(fn, *args, **kwargs)
        if fn is jobs.next_due and not self.reclaimed:
            found = await super().run(runs.reclaim_stale, None, by=LIVE)
            self.reclaimed = found.dead_leases
        return result


class Completes:
    """The job's work: complete it in the queue, behind its lease."""

    vouch: Any = None

    def __init__(self, queue: AsyncQueue) -> None:
        self.queue = queue
        self.done: list[str] = []

    async def process(self, job: Job) -> None:
        record = {"id": job.id, "run_id": LIVE}
        assert await self.queue.run(jobs.complete, LIVE, job.lease, record, "x", 1.0)
        self.done.append(job.id)


def test_jobs_reclaimed_between_the_feeders_reads_are_done_before_it_ends(
    tmp_path: Path,
) -> None:
    """CI caught `rpa resume` ending 'finished' with a dead run's 10 jobs left (exit 1): it
    read "nothing due" while the dead run held them, its heartbeat reclaimed them, and it then
    read "nobody holds a lease" and ended."""
    db = tmp_path / "rpa.db"
    store = open_store(db)
    store.enqueue(["ext:a", "ext:b"], 0.0)
    runs.register_run(store, RunInfo("dead-run", "run", 0.0, 5.0, "{}"))
    assert len(jobs.claim(store, "dead-run", 2, 3600)) == 2  # leases that outlive the test
    runs.register_run(store, RunInfo(LIVE, "resume", time.time(), 5.0, "{}"))
    store.close()

    async def go() -> tuple[list[str], int]:
        settings = Settings(workers=2)
        queue = ReclaimAfterDueRead(db)
        await queue.open()
        notices = Notices()
        with ThreadPoolExecutor(1) as io:
            feeder = Feeder(
                settings=settings,
                run_id=LIVE,
                queue=queue,
                hosts=HostHealth(settings, queue=queue, run_id=LIVE, notices=notices),
                disk=DiskGuard(tmp_path, tmp_path / "out", 0.0, io),
                tally=Tally(),
                notices=notices,
                on_crash=lambda why: None,
            )
            work = Completes(queue)
            await asyncio.wait_for(feeder.run(work), 30)  # type: ignore[arg-type]
        await queue.close()
        return sorted(work.done), queue.reclaimed

    done, reclaimed = asyncio.run(go())
    assert reclaimed == 2
    assert done == ["ext:a", "ext:b"]

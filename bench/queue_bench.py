"""Queue figures: claim+complete per second, enqueueing 1,000,000 IDs, status on 1,000,000 jobs.

    python -m bench.queue_bench claim REPORT.json DB --jobs N
    python -m bench.queue_bench ids IDS_FILE --count N
    python -m bench.queue_bench enqueue REPORT.json DB IDS_FILE
    python -m bench.queue_bench populate DB
    python -m bench.queue_bench status REPORT.json DB

* claim: N jobs; (a) direct: `jobs.claim` 256 at a time, then `jobs.complete`
  per job (one transaction each, as the pipeline does), on one connection; (b) pipeline-shaped: 200
  coroutines driving the full job lifecycle (claim, checkpoint downloaded, checkpoint
  extracted, complete) through rpa's `AsyncQueue`, so the thread hop is included.
* enqueue: `rpa.enqueue.enqueue_file`, the function `rpa run` calls first, on a fresh database.
* populate: turns the enqueued database into a queue in the middle of a long run (60 % done,
  1 % failed, 200 leased, retries scheduled, 3 attempt rows per done job, a few runs), so
  `rpa status` has real work; `status` times `reads.status` in process, with a
  cProfile of where it spends its time (the CLI's wall time is measured by the caller).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import Any

from rpa.queue import jobs, open_store, reads, runs
from rpa.queue.aio import AsyncQueue
from rpa.queue.enqueue import enqueue_file
from rpa.queue.model import Downloaded, Extracted, Job, RunInfo
from rpa.queue.sqlite import connect

__all__ = ["write_ids"]

RECORD = {
    "title": "A paper",
    "abstract": "x" * 900,
    "page_count": 12,
    "word_count": 6000,
    "references": {"count": 30},
    "pdf": {"sha256": "0" * 64, "bytes": 800_000},
}
DOWNLOADED = Downloaded("/x.pdf", 800_000, "0" * 64, "http://x/pdf", 200, 0.1)
EXTRACTED = Extracted("/x.txt", {"ok": True, "pages": 12}, 1.0)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_ids(path: Path, count: int) -> None:
    """`count` distinct valid new-style arXiv IDs (YYMM.NNNNN from 1501 on), one a line."""
    with path.open("w") as fh:
        written = 0
        yymm = 1501
        while written < count:
            n = min(99_999, count - written)
            fh.write("".join(f"{yymm}.{i:05d}\n" for i in range(1, n + 1)))
            written += n
            yymm = yymm + 89 if yymm % 100 == 12 else yymm + 1


def _setup(db: str, count: int) -> None:
    store = open_store(db)
    now = time.time()
    store.enqueue([f"ext:job-{i}" for i in range(count)], now)
    runs.register_run(store, RunInfo("bench", "bench", now, 5.0, "{}"))
    store.close()


def _claim_direct(db: str, count: int) -> dict[str, Any]:
    _setup(db, count)
    store = open_store(db)
    done = 0
    start = time.perf_counter()
    while True:
        claimed = jobs.claim(store, "bench", 256, 120.0, time.time())
        if not claimed:
            break
        for job in claimed:
            jobs.complete(store, "bench", job.lease, RECORD, "x.json", time.time())
            done += 1
    wall = time.perf_counter() - start
    store.close()
    return {"jobs": done, "wall": wall, "per_second": done / wall}


async def _lifecycle(db: str, count: int, workers: int = 200) -> dict[str, Any]:
    """A job's three database writes (two checkpoints and completion) through AsyncQueue,
    from `workers` coroutines: the thread hop and the queue's gate are included."""
    _setup(db, count)
    aq = AsyncQueue(db)
    await aq.open()
    queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=512)
    done = [0]

    async def feeder() -> None:
        while True:
            claimed = await aq.run(jobs.claim, "bench", 256, 120.0, time.time())
            if not claimed:
                break
            for job in claimed:
                await queue.put(job)
        for _ in range(workers):
            await queue.put(None)

    async def worker() -> None:
        while (job := await queue.get()) is not None:
            lease = job.lease
            await aq.run(jobs.checkpoint_download, "bench", lease, DOWNLOADED, time.time())
            await aq.run(jobs.checkpoint_extract, "bench", lease, EXTRACTED, time.time())
            await aq.run(jobs.complete, "bench", lease, RECORD, "x.json", time.time())
            done[0] += 1

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(feeder())
        for _ in range(workers):
            tg.create_task(worker())
    wall = time.perf_counter() - start
    await aq.close()
    return {"jobs": done[0], "wall": wall, "per_second": done[0] / wall}


def _populate(db: Path) -> None:
    conn = connect(db)
    now = time.time()
    day = 86_400.0
    conn.executescript(
        f"""
        BEGIN;
        UPDATE jobs SET stage = 'done', attempts = 0, outcome_path = 'x.json',
            done_at = {now} - (1000000 - seq) * {day} / 1000000.0,
            updated_at = {now} - (1000000 - seq) * {day} / 1000000.0
            WHERE seq % 10 < 6;
        UPDATE jobs SET stage = 'failed', attempts = 5, error_kind = 'not_found',
            error_message = 'HTTP 404 Not Found', done_at = {now} - 3600
            WHERE seq % 100 = 99;
        UPDATE jobs SET attempts = 1, error_kind = 'http_transient',
            error_message = 'HTTP 503', next_attempt_at = {now} + 600
            WHERE seq % 1000 = 7 AND stage = 'queued';
        UPDATE jobs SET stage = 'downloaded', lease_owner = 'bench-live', lease_token = 1,
            lease_expires = {now} + 120
            WHERE seq IN (SELECT seq FROM jobs WHERE stage = 'queued' ORDER BY seq LIMIT 200);
        INSERT INTO attempts (job_id, run_id, stage, started_at, gate_wait, duration, outcome)
            SELECT id, 'bench-live', s.stage, done_at - 5, 0.01, 1.0, 'ok'
            FROM jobs, (SELECT 'download' AS stage UNION ALL SELECT 'extract'
                        UNION ALL SELECT 'outcome') AS s
            WHERE jobs.stage = 'done';
        INSERT INTO runs (id, command, pid, host, started_at, heartbeat_at, ended_at, status,
            done, failed, settings_json)
            VALUES ('bench-old', 'run', 1, 'elsewhere', {now} - 2 * {day}, {now} - {day},
                    {now} - {day}, 'finished', 1000, 10, '{{}}'),
                   ('bench-live', 'run', 1, 'elsewhere', {now} - {day}, {now}, NULL,
                    'running', 600000, 10000, '{{}}');
        COMMIT;
        """
    )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _status(db: str) -> dict[str, Any]:
    store = open_store(db, readonly=True)
    # warm the page cache once, as a second `rpa status` would find it
    reads.status(store, time.time())
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        data = reads.status(store, time.time())
        timings.append(time.perf_counter() - start)
    profile = cProfile.Profile()
    profile.enable()
    reads.status(store, time.time())
    profile.disable()
    store.close()
    stats = pstats.Stats(profile)
    top = []
    for (filename, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        if filename.endswith(("status.py", "store.py")) or name == "<method 'execute' of":
            top.append((name, round(row[3], 4)))
    top.sort(key=lambda x: -x[1])
    return {
        "seconds": sorted(timings)[1],
        "total": data["totals"]["total"],
        "profile": top[:8],
        "maxrss_mb": _rss_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.queue_bench")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("claim")
    p.add_argument("report", type=Path)
    p.add_argument("db", type=Path)
    p.add_argument("--jobs", type=int, default=20_000)
    p = sub.add_parser("ids")
    p.add_argument("path", type=Path)
    p.add_argument("--count", type=int, default=1_000_000)
    p = sub.add_parser("enqueue")
    p.add_argument("report", type=Path)
    p.add_argument("db", type=Path)
    p.add_argument("ids", type=Path)
    p = sub.add_parser("populate")
    p.add_argument("db", type=Path)
    p = sub.add_parser("status")
    p.add_argument("report", type=Path)
    p.add_argument("db", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "ids":
        write_ids(args.path, args.count)
        return 0
    if args.cmd == "populate":
        _populate(args.db)
        return 0
    report: dict[str, Any]
    if args.cmd == "claim":
        direct = _claim_direct(str(args.db.with_suffix(".direct.db")), args.jobs)
        lifecycle = asyncio.run(_lifecycle(str(args.db.with_suffix(".thread.db")), args.jobs))
        report = {"direct": direct, "lifecycle": lifecycle}
    elif args.cmd == "enqueue":
        base = _rss_mb()
        start = time.perf_counter()
        store = open_store(args.db)
        result = enqueue_file(store, args.ids)
        store.close()
        wall = time.perf_counter() - start
        report = {
            "seconds": wall,
            "new": result.new,
            "valid": result.valid,
            "maxrss_mb": _rss_mb(),
            "baseline_rss_mb": base,
        }
    else:
        report = _status(str(args.db))
    args.report.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

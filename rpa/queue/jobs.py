"""Jobs and their leases: claim, checkpoints, completion, failure, release, retries.

Every state change of a job is one transaction. A claim takes a lease (owner = run id, a fresh
fence token, an expiry by the database's clock: rpa.queue.clock); every later write names the
token it was given, so a worker whose lease was reclaimed (its run found dead, or the lease
expired and freed by another run) and perhaps handed to someone else cannot overwrite the
job: its write matches no row and it learns it has lost the job. A lease that expired but
that nobody took is still its holder's (a run never reclaims its own leases).

Functions of a `QueueStore` (called directly, or in a database thread by
`AsyncQueue.run(jobs.claim, ...)`). Every transaction that also writes the run's row
(`complete`, `fail`) takes the job rows first (see `rpa.queue.runs.heartbeat`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rpa.queue.fair import fair_limit
from rpa.queue.model import (
    ACTIVE_STAGES,
    HELD,
    Attempt,
    Completion,
    Downloaded,
    Extracted,
    Failure,
    Job,
    Lease,
)
from rpa.queue.runs import live_runs
from rpa.queue.sql import Params, Row, chunks
from rpa.queue.store import QueueStore

__all__ = [
    "MAX_MESSAGE",
    "back_to_queued",
    "checkpoint_download",
    "checkpoint_extract",
    "claim",
    "complete",
    "complete_many",
    "completed",
    "completed_by",
    "completed_many",
    "fail",
    "next_due",
    "record_attempts",
    "release",
    "result_row",
    "still_held",
]


#: the fence: the lease is still the writer's (the owner and the token the claim gave)
_FENCE = "id = ? AND lease_owner = ? AND lease_token = ?"
#: longest error message kept in the queue
MAX_MESSAGE = 2000


def _job(row: Row) -> Job:
    return Job(
        id=row["id"],
        token=row["lease_token"],
        stage=row["stage"],
        attempts=row["attempts"],
        crashes=row["crashes"],
        pdf_path=row["pdf_path"],
        pdf_bytes=row["pdf_bytes"],
        pdf_sha256=row["pdf_sha256"],
        extract=json.loads(row["extract_json"]) if row["extract_json"] else None,
        download_seconds=row["download_seconds"],
        extract_seconds=row["extract_seconds"],
        final_url=row["final_url"],
        http_status=row["http_status"],
        error_kind=row["error_kind"],
    )


def result_row(record: dict[str, Any]) -> dict[str, Any]:
    """The `results` columns of a key-outcome record."""
    stamp = record.get("arxiv_stamp")
    pdf = record.get("pdf") or {}
    return {
        "title": record.get("title"),
        "pages": record.get("page_count"),
        "words": record.get("word_count"),
        "references": (record.get("references") or {}).get("count"),
        "arxiv_stamp": json.dumps(stamp) if stamp else None,
        "sha256": pdf.get("sha256"),
        "bytes": pdf.get("bytes"),
        "outcome_json": json.dumps(record, ensure_ascii=False),
    }


def claim(
    store: QueueStore,
    run_id: str,
    limit: int,
    lease_seconds: float,
    now: float | None = None,
    stages: Sequence[str] | None = None,
    *,
    share: int = 0,
    holding: int = 0,
) -> list[Job]:
    """Lease up to `limit` claimable jobs (FIFO) to `run_id`, optionally only in `stages`;
    expiring `lease_seconds` from `now` (None: the database's clock). A run found dead
    (its row no longer `running`) claims nothing.

    `share` (0: off) shares the end of the queue with the other runs on it, `share` runs at
    least (a group's processes, some not registered yet): a run `holding` leases takes no
    more than brings it to a 1/R share of the jobs claimable or leased, R the live runs (or
    one job, while it holds none). A big queue's claims are not changed by it; its last jobs
    (or a small queue's) are spread over the runs, instead of all going to the first to ask
    while the others' cores stand idle."""
    wanted = tuple(stages or ACTIVE_STAGES)
    if not set(wanted) <= set(ACTIVE_STAGES):
        raise ValueError(f"not claimable stages: {wanted}")
    if share:
        runs = max(share, len(live_runs(store, now)))
        limit = fair_limit(store, limit, runs, holding, now, wanted) if runs > 1 else limit
        if limit <= 0:
            return []
    rows = store.backend.claim(run_id, limit, lease_seconds, now, wanted)
    # RETURNING gives no order: FIFO is the claim's order, by seq
    return [_job(r) for r in sorted(rows, key=lambda r: r["seq"])]


def _fenced(
    store: QueueStore, run_id: str, lease: Lease, now: float, sets: str, values: Params
) -> bool:
    with store.sql.transaction():
        changed = store.sql.execute(
            f"UPDATE jobs SET {sets}, updated_at = ? WHERE {_FENCE}",
            (*values, now, lease.job_id, run_id, lease.token),
        )
    return changed == 1


def checkpoint_download(
    store: QueueStore, run_id: str, lease: Lease, d: Downloaded, now: float
) -> bool:
    """Move a leased job to `downloaded`. False if the lease was lost (the fence)."""
    return _fenced(
        store,
        run_id,
        lease,
        now,
        "stage = 'downloaded', pdf_path = ?, pdf_bytes = ?, pdf_sha256 = ?, final_url = ?, "
        "http_status = ?, download_seconds = ?",
        (d.pdf_path, d.pdf_bytes, d.pdf_sha256, d.final_url, d.http_status,
         d.download_seconds),
    )  # fmt: skip


def checkpoint_extract(
    store: QueueStore, run_id: str, lease: Lease, e: Extracted, now: float
) -> bool:
    """Move a leased job to `extracted`, storing the extraction's result."""
    return _fenced(
        store,
        run_id,
        lease,
        now,
        "stage = 'extracted', text_path = ?, extract_json = ?, extract_seconds = ?",
        (e.text_path, json.dumps(e.result, ensure_ascii=False), e.extract_seconds),
    )


def back_to_queued(store: QueueStore, run_id: str, lease: Lease, now: float) -> bool:
    """The checkpointed PDF is gone or changed: the job starts over from its download."""
    return _fenced(store, run_id, lease, now, "stage = 'queued', pdf_path = NULL", ())


def complete(
    store: QueueStore,
    run_id: str,
    lease: Lease,
    record: dict[str, Any],
    outcome_path: str,
    now: float,
) -> bool:
    """Mark done and write the results row, in one transaction, behind the fence (job rows
    before the run's row: see `rpa.queue.runs.heartbeat`)."""
    row = result_row(record)
    with store.sql.transaction():
        changed = store.sql.execute(
            "UPDATE jobs SET stage = 'done', outcome_path = ?, lease_owner = NULL, "
            "lease_expires = NULL, error_kind = NULL, error_message = NULL, done_at = ?, "
            f"updated_at = ? WHERE {_FENCE}",
            (outcome_path, now, now, lease.job_id, run_id, lease.token),
        )
        if changed != 1:
            return False
        _insert_result(store, lease.job_id, run_id, row, now)
        store.sql.execute("UPDATE runs SET done = done + 1 WHERE id = ?", (run_id,))
    return True


def _insert_result(
    store: QueueStore, job_id: str, run_id: str, row: dict[str, Any], now: float
) -> None:
    store.sql.execute(
        'INSERT INTO results (id, run_id, title, pages, words, "references", '
        "arxiv_stamp, sha256, bytes, outcome_json, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
        "run_id = excluded.run_id, title = excluded.title, pages = excluded.pages, "
        'words = excluded.words, "references" = excluded."references", '
        "arxiv_stamp = excluded.arxiv_stamp, sha256 = excluded.sha256, "
        "bytes = excluded.bytes, outcome_json = excluded.outcome_json, "
        "created_at = excluded.created_at",
        (job_id, run_id, row["title"], row["pages"], row["words"], row["references"],
         row["arxiv_stamp"], row["sha256"], row["bytes"], row["outcome_json"], now),
    )  # fmt: skip


def complete_many(
    store: QueueStore, run_id: str, completions: Sequence[Completion], now: float
) -> list[bool]:
    """Mark each job done with its whole work (rpa.extract.paper) and write its results row,
    all in one transaction, each job behind its own fence: True where the lease held."""
    made: list[bool] = []
    with store.sql.transaction():
        for c in completions:
            changed = store.sql.execute(
                "UPDATE jobs SET stage = 'done', outcome_path = ?, pdf_path = ?, "
                "pdf_bytes = ?, pdf_sha256 = ?, final_url = ?, http_status = ?, "
                "download_seconds = ?, text_path = ?, extract_seconds = ?, "
                "lease_owner = NULL, lease_expires = NULL, error_kind = NULL, "
                f"error_message = NULL, done_at = ?, updated_at = ? WHERE {_FENCE}",
                (c.outcome_path, c.pdf_path, c.pdf_bytes, c.pdf_sha256, c.final_url,
                 c.http_status, c.download_seconds, c.text_path, c.extract_seconds, now, now,
                 c.lease.job_id, run_id, c.lease.token),
            )  # fmt: skip
            made.append(changed == 1)
            if changed == 1:
                _insert_result(store, c.lease.job_id, run_id, c.row, now)
        if any(made):
            store.sql.execute("UPDATE runs SET done = done + ? WHERE id = ?", (sum(made), run_id))
    return made


def completed_many(
    store: QueueStore, run_id: str, completions: Sequence[Completion], now: float
) -> list[bool]:
    """Which of `complete_many`'s completions committed (its reply lost with the
    connection): done at that very `now`, the results row this run's."""
    ids = [c.lease.job_id for c in completions]
    marks = ", ".join("?" * len(ids))
    rows = store.sql.rows(
        "SELECT jobs.id FROM jobs JOIN results ON results.id = jobs.id WHERE jobs.id IN "
        f"({marks}) AND jobs.stage = 'done' AND jobs.done_at = ? AND results.run_id = ?",
        (*ids, now, run_id),
    )
    done = {r["id"] for r in rows}
    return [i in done for i in ids]


def completed(
    store: QueueStore, run_id: str, lease: Lease, record: dict[str, Any], outcome_path: str,
    now: float,
) -> bool:  # fmt: skip
    """Did `complete` with these arguments commit (its reply lost with the connection)? The
    job is done at that very `now`, its results row this run's (rpa.queue.aio.run_fenced)."""
    row = store.sql.one(
        "SELECT 1 FROM jobs JOIN results ON results.id = jobs.id WHERE jobs.id = ? "
        "AND jobs.stage = 'done' AND jobs.done_at = ? AND results.run_id = ?",
        (lease.job_id, now, run_id),
    )
    return row is not None


def fail(store: QueueStore, run_id: str, lease: Lease, failure: Failure, now: float) -> bool:
    """End this attempt in failure: final -> stage `failed` (remembering the stage it
    failed at, for rpa.queue.retry); else back to the queue until its next attempt time.
    The lease is released either way: no worker holds a job while it waits."""
    final = int(failure.final)
    with store.sql.transaction():
        changed = store.sql.execute(
            "UPDATE jobs SET stage = CASE WHEN ? = 1 THEN 'failed' ELSE stage END, "
            "failed_stage = CASE WHEN ? = 1 THEN stage ELSE NULL END, "
            "attempts = attempts + ?, crashes = crashes + ?, error_kind = ?, "
            "error_message = ?, next_attempt_at = ?, lease_owner = NULL, "
            "lease_expires = NULL, updated_at = ?, "
            f"done_at = CASE WHEN ? = 1 THEN ? ELSE NULL END WHERE {_FENCE}",
            (final, final, int(failure.count_attempt), int(failure.crashed), failure.kind,
             failure.message[:MAX_MESSAGE], failure.next_attempt_at, now, final, now,
             lease.job_id, run_id, lease.token),
        )  # fmt: skip
        if changed == 1 and failure.final:
            store.sql.execute("UPDATE runs SET failed = failed + 1 WHERE id = ?", (run_id,))
    return changed == 1


def still_held(store: QueueStore, run_id: str, lease: Lease) -> bool:
    """Is the lease still the run's (the fence, read)? Asked before a file is published."""
    row = store.sql.one(
        f"SELECT 1 AS held FROM jobs WHERE {_FENCE}", (lease.job_id, run_id, lease.token)
    )
    return row is not None


def completed_by(store: QueueStore, ids: Sequence[str]) -> dict[str, str]:
    """The run whose `complete` committed each of the done jobs among `ids`."""
    found: dict[str, str] = {}
    for part in chunks(ids, 500):
        found.update(
            (r["id"], r["run_id"])
            for r in store.sql.rows(
                f"SELECT id, run_id FROM results WHERE id IN ({', '.join('?' * len(part))})",
                tuple(part),
            )
        )
    return found


def release(store: QueueStore, run_id: str, leases: Iterable[Lease]) -> int:
    """Give leases back without counting an attempt (shutdown, a host's breaker opened)."""
    count = 0
    with store.sql.transaction():
        for lease in leases:
            count += store.sql.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL "
                "WHERE id = ? AND lease_owner = ? AND lease_token = ?",
                (lease.job_id, run_id, lease.token),
            )
    return count


def next_due(store: QueueStore, now: float, stages: Sequence[str]) -> float | None:
    """Seconds until some unleased job in `stages` may be claimed; None if there is none (a
    job held for a host that refused us is not: it waits for the next run)."""
    marks = ", ".join("?" * len(stages))
    row = store.sql.one(
        "SELECT min(next_attempt_at) AS due, count(*) AS n FROM jobs "
        f"WHERE stage IN ({marks}) AND lease_owner IS NULL AND next_attempt_at < ?",
        (*stages, HELD),
    )
    if row is None or row["n"] == 0:
        return None
    return max(0.0, float(row["due"] or 0) - now)


def record_attempts(store: QueueStore, attempts: Sequence[Attempt]) -> None:
    if not attempts:
        return
    with store.sql.transaction():
        store.sql.executemany(
            "INSERT INTO attempts (job_id, run_id, stage, started_at, gate_wait, duration, "
            "outcome, error_kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (a.job_id, a.run_id, a.stage, a.started_at, a.gate_wait, a.duration,
                 a.outcome, a.error_kind)
                for a in attempts
            ],
        )  # fmt: skip

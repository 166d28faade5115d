"""The SQLite queue's schema, as numbered migrations (`PRAGMA user_version` is the number).

Each migration runs in its own transaction; a database made by an older rpa is brought up to
date by `rpa migrate` or the next `rpa run`/`resume`; one made by a newer rpa is refused.
PostgreSQL's schema (rpa.queue.postgres_schema) carries the same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from rpa.queue.model import QUEUE_SETTINGS, STAGE_RESULTS

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]


def _migration_1(db: Database) -> None:
    db.table("jobs").create(
        {
            "id": str,  # queue key: "2301.00001v2", "hep-th/9901001", "ext:slug"
            "seq": int,  # enqueue order: claims are FIFO
            "stage": str,  # queued | downloaded | extracted | done | failed
            "attempts": int,  # failed attempts so far (survives resume)
            "crashes": int,  # extraction processes this PDF killed (poison counting)
            "lease_owner": str,  # "<run_id>" while leased, NULL otherwise
            "lease_token": int,  # fence: bumped at every claim
            "lease_expires": float,
            "next_attempt_at": float,  # not claimable before this (retry backoff)
            "error_kind": str,
            "error_message": str,
            "pdf_path": str,
            "pdf_bytes": int,
            "pdf_sha256": str,
            "final_url": str,
            "http_status": int,
            "download_seconds": float,
            "text_path": str,
            "extract_json": str,  # the extraction worker's result, kept for the outcome stage
            "extract_seconds": float,
            "outcome_path": str,
            "created_at": float,
            "updated_at": float,
            "done_at": float,
        },
        pk="id",
        not_null={"seq", "stage", "attempts", "crashes", "lease_token", "next_attempt_at"},
        defaults={"attempts": 0, "crashes": 0, "lease_token": 0, "next_attempt_at": 0.0},
    )
    # Claim scans only claimable rows in FIFO order.
    db.execute(
        "CREATE INDEX jobs_claimable ON jobs(seq) "
        "WHERE lease_owner IS NULL AND stage IN ('queued', 'downloaded', 'extracted')"
    )
    db.execute("CREATE INDEX jobs_leased ON jobs(lease_owner) WHERE lease_owner IS NOT NULL")
    db.execute("CREATE INDEX jobs_stage ON jobs(stage, error_kind)")
    db.table("runs").create(
        {
            "id": str,
            "command": str,
            "pid": int,
            "host": str,
            "started_at": float,
            "heartbeat_at": float,
            "ended_at": float,
            "status": str,  # running | finished | interrupted | crashed
            "done": int,
            "failed": int,
            "settings_json": str,
        },
        pk="id",
        defaults={"done": 0, "failed": 0},
    )
    db.table("results").create(
        {
            "id": str,
            "run_id": str,
            "title": str,
            "pages": int,
            "words": int,
            "references": int,
            "arxiv_stamp": str,
            "sha256": str,
            "bytes": int,
            "outcome_json": str,
            "created_at": float,
        },
        pk="id",
    )
    db.table("attempts").create(
        {
            "job_id": str,
            "run_id": str,
            "stage": str,  # download | extract | outcome
            "started_at": float,
            "gate_wait": float,  # seconds queued before the stage's gate
            "duration": float,
            "outcome": str,  # ok | retry | failed | lost
            "error_kind": str,
        },
    )
    db.execute("CREATE INDEX attempts_time ON attempts(started_at)")
    db.table("hosts").create(
        {
            "host": str,
            "cooldown_until": float,  # Retry-After from 429/503: nobody asks before this
            "breaker_open": int,  # 1 after a 403 / denial page
            "reason": str,
            "updated_at": float,
        },
        pk="host",
    )


def _migration_2(db: Database) -> None:
    # The end-of-run summary reads a run's attempts; status counts retry-scheduled jobs.
    db.execute("CREATE INDEX attempts_run ON attempts(run_id, stage)")
    db.execute(
        "CREATE INDEX jobs_retry ON jobs(next_attempt_at) "
        "WHERE lease_owner IS NULL AND stage IN ('queued', 'downloaded', 'extracted')"
    )


def _migration_3(db: Database) -> None:
    # Enqueueing a million IDs spent most of its time maintaining indexes that every new row
    # entered. Now a new row enters only the primary key and `jobs_claimable`; what status
    # needs comes from partial indexes that hold only the rows they are about, and from
    # per-stage counts kept by triggers in the same transaction as the change (so they are
    # exact, never a cache).
    db.execute("DROP INDEX jobs_stage")
    db.execute("DROP INDEX jobs_retry")
    # Only jobs that were ever given a retry time (new jobs have next_attempt_at = 0).
    db.execute(
        "CREATE INDEX jobs_retry ON jobs(next_attempt_at) WHERE next_attempt_at > 0 "
        "AND lease_owner IS NULL AND stage IN ('queued', 'downloaded', 'extracted')"
    )
    db.execute("CREATE INDEX jobs_failed ON jobs(error_kind) WHERE stage = 'failed'")
    db.execute("CREATE INDEX jobs_done ON jobs(done_at) WHERE stage = 'done'")
    # One row per stage, made here: the triggers only update (an upsert per new row cost
    # a third more enqueue time), and no code writes a stage outside these five.
    db.execute(
        "CREATE TABLE stage_counts (stage TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute(
        "INSERT INTO stage_counts (stage, n) SELECT s.column1, (SELECT count(*) FROM jobs "
        "WHERE jobs.stage = s.column1) FROM (VALUES ('queued'), ('downloaded'), ('extracted'), "
        "('done'), ('failed')) AS s"
    )
    db.execute(
        "CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN "
        "UPDATE stage_counts SET n = n + 1 WHERE stage = NEW.stage; END"
    )
    db.execute(
        "CREATE TRIGGER jobs_count_update AFTER UPDATE OF stage ON jobs "
        "WHEN OLD.stage IS NOT NEW.stage BEGIN "
        "UPDATE stage_counts SET n = n - 1 WHERE stage = OLD.stage; "
        "UPDATE stage_counts SET n = n + 1 WHERE stage = NEW.stage; END"
    )
    db.execute(
        "CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN "
        "UPDATE stage_counts SET n = n - 1 WHERE stage = OLD.stage; END"
    )
    # Claims are FIFO by seq; from now on a new job's seq is its rowid (see SqliteBackend.enqueue).
    # Both grew in insertion order before, so this keeps every job's place in the line.
    db.execute("UPDATE jobs SET seq = rowid WHERE seq != rowid")


def _migration_4(db: Database) -> None:
    # A new job is counted by `SqliteBackend.enqueue`, one UPDATE per batch in the transaction that
    # inserts it: the trigger's UPDATE per row was about an eighth of enqueueing 1 M IDs.
    db.execute("DROP TRIGGER jobs_count_insert")


def _migration_5(db: Database) -> None:
    # Runs a user can trust: the queue remembers where its work comes from and goes to,
    # a failed job remembers the stage it failed at (so `rpa retry` keeps its checkpoint),
    # and each run records its own heartbeat interval (one definition of a dead run).
    db.execute("ALTER TABLE jobs ADD COLUMN failed_stage TEXT")
    db.execute(
        "UPDATE jobs SET failed_stage = CASE WHEN extract_json IS NOT NULL THEN 'extracted' "
        "WHEN pdf_path IS NOT NULL THEN 'downloaded' ELSE 'queued' END WHERE stage = 'failed'"
    )
    db.execute("ALTER TABLE runs ADD COLUMN heartbeat_seconds REAL")
    db.execute(
        "CREATE TABLE queue_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
        "set_at REAL, set_by TEXT)"
    )
    db.execute(
        "CREATE TABLE settings_changes (changed_at REAL NOT NULL, key TEXT NOT NULL, "
        "old_value TEXT, new_value TEXT, run_id TEXT)"
    )
    # An older queue kept its settings only per run: the latest run's are the queue's now.
    row = db.execute(
        "SELECT id, settings_json, started_at FROM runs ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    if row is not None and row[1]:
        stored = json.loads(row[1])
        for key in QUEUE_SETTINGS:
            if key in stored:
                db.execute(
                    "INSERT INTO queue_settings (key, value, set_at, set_by) VALUES (?, ?, ?, ?)",
                    (key, json.dumps(stored[key]), row[2], row[0]),
                )


def _migration_6(db: Database) -> None:
    # One politeness budget for every process that shares the queue: a host's N request
    # slots live here (rpa.hosts.fleet), not in each process.
    db.execute(
        "CREATE TABLE rate_slots (host TEXT NOT NULL, slot INTEGER NOT NULL, "
        "free_at REAL NOT NULL DEFAULT 0, holder TEXT, PRIMARY KEY (host, slot)) WITHOUT ROWID"
    )


def _migration_7(db: Database) -> None:
    # arXiv's bulk PDF tars as a source: each tar's paper members, indexed once.
    db.execute(
        "CREATE TABLE tars (path TEXT PRIMARY KEY, size INTEGER, mtime REAL, members INTEGER, "
        "error TEXT, indexed_at REAL)"
    )
    db.execute(
        "CREATE TABLE tar_members (base TEXT PRIMARY KEY, version INTEGER, tar TEXT NOT NULL, "
        "member TEXT NOT NULL, data_offset INTEGER NOT NULL, size INTEGER NOT NULL)"
    )


def _migration_8(db: Database) -> None:
    # arXiv's metadata of each paper (by its ID without version), the metadata stage's
    # checkpoint: a crash never asks the API again for what is stored here.
    db.execute(
        "CREATE TABLE metadata (id TEXT PRIMARY KEY, status TEXT NOT NULL, source TEXT, "
        "json TEXT NOT NULL, fetched_at REAL)"
    )


def _migration_9(db: Database) -> None:
    # The user's own stages (rpa.stages): each one's checkpoint per paper, leased like jobs.
    db.execute(STAGE_RESULTS)
    db.execute("CREATE INDEX stage_results_due ON stage_results(stage, state, next_at)")
    # a stage claims done papers in seq order from a cursor: only done rows, in that order
    db.execute("CREATE INDEX jobs_done_seq ON jobs(seq) WHERE stage = 'done'")


def _migration_10(db: Database) -> None:
    # What each run waits for now (a full disk, memory, a host down, the next retry), and
    # since when: written at its heartbeat, cleared when the wait or the run ends, shown by
    # `rpa status` from any terminal (rpa.queue.runs.heartbeat).
    db.execute("ALTER TABLE runs ADD COLUMN waiting TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN waiting_since REAL")


def _migration_11(db: Database) -> None:
    # Nothing to change in the tables: the version alone keeps an older rpa off a queue that
    # may hold jobs for a host that refused us (next_attempt_at = HELD, rpa.queue.model): an
    # older one would take them for retries due in thirty million years and wait for them.
    pass


def _migration_12(db: Database) -> None:
    # `rpa failures` names the stage each paper failed in from its attempts rows: a page of
    # a thousand failed papers looks up their rows, not the whole table.
    db.execute("CREATE INDEX attempts_job ON attempts(job_id, started_at)")


MIGRATIONS: list[Callable[[Database], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
    _migration_8,
    _migration_9,
    _migration_10,
    _migration_11,
    _migration_12,
]
SCHEMA_VERSION = len(MIGRATIONS)

"""Job queue operations: plain functions over a sqlite3 connection, run in the database thread.

Every state change of a job is one transaction. A claim takes a lease (owner = run id, a fresh
fence token, an expiry); every later write names the token it was given, so a worker whose lease
expired, or was reclaimed and handed to someone else, cannot overwrite the job: its write
matches no row and it learns it has lost the job.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rpa.db import transaction

__all__ = [
    "Job",
    "checkpoint",
    "claim",
    "complete",
    "dead_runs",
    "end_run",
    "enqueue",
    "heartbeat",
    "held_by_others",
    "reclaim_stale",
    "record_attempts",
    "register_run",
    "release",
    "set_outcome",
]

_FENCE = "id = ? AND lease_owner = ? AND lease_token = ? AND lease_expires >= ?"


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job, as the worker sees it."""

    id: str
    token: int
    stage: str
    attempts: int
    crashes: int
    pdf_path: str | None
    pdf_bytes: int | None
    pdf_sha256: str | None
    extract: dict[str, Any] | None
    download_seconds: float | None
    extract_seconds: float | None
    final_url: str | None
    http_status: int | None


def enqueue(conn: sqlite3.Connection, keys: Sequence[str], now: float) -> int:
    """Add jobs not already queued (idempotent). Returns how many were new."""
    with transaction(conn):
        cur = conn.executemany(
            # seq = the rowid SQLite gives the new row (one past the largest), found in
            # O(log n); a skipped duplicate takes no number. The cursor's rowcount counts the
            # rows this statement inserted.
            "INSERT OR IGNORE INTO jobs (id, seq, stage, created_at, updated_at) "
            "VALUES (?, coalesce((SELECT max(rowid) FROM jobs), 0) + 1, 'queued', ?, ?)",
            ((key, now, now) for key in keys),
        )
        new = cur.rowcount
        # Counted here, once a batch, not by a trigger per row (schema 4); the other stage
        # changes are counted by triggers. Same transaction: the count is never off.
        conn.execute("UPDATE stage_counts SET n = n + ? WHERE stage = 'queued'", (new,))
        return new


def claim(
    conn: sqlite3.Connection,
    run_id: str,
    limit: int,
    lease_seconds: float,
    now: float,
    stages: Sequence[str] | None = None,
) -> list[Job]:
    """Lease up to `limit` claimable jobs (FIFO) to `run_id`, optionally only in `stages`."""
    wanted = tuple(stages or ("queued", "downloaded", "extracted"))
    if not set(wanted) <= {"queued", "downloaded", "extracted"}:
        raise ValueError(f"not claimable stages: {wanted}")
    stage_list = ", ".join(f"'{s}'" for s in wanted)
    with transaction(conn):
        rows = conn.execute(
            "UPDATE jobs SET lease_owner = ?, lease_token = lease_token + 1, "
            "lease_expires = ?, updated_at = ? "
            "WHERE id IN (SELECT id FROM jobs WHERE lease_owner IS NULL "
            # the first IN repeats the partial index's condition so SQLite can use it
            "  AND stage IN ('queued', 'downloaded', 'extracted') "
            f"  AND stage IN ({stage_list}) AND next_attempt_at <= ? "
            "  ORDER BY seq LIMIT ?) "
            "RETURNING id, lease_token, stage, attempts, crashes, pdf_path, pdf_bytes, "
            "pdf_sha256, extract_json, download_seconds, extract_seconds, final_url, "
            "http_status",
            (run_id, now + lease_seconds, now, now, limit),
        ).fetchall()
    return [
        Job(
            id=r["id"],
            token=r["lease_token"],
            stage=r["stage"],
            attempts=r["attempts"],
            crashes=r["crashes"],
            pdf_path=r["pdf_path"],
            pdf_bytes=r["pdf_bytes"],
            pdf_sha256=r["pdf_sha256"],
            extract=json.loads(r["extract_json"]) if r["extract_json"] else None,
            download_seconds=r["download_seconds"],
            extract_seconds=r["extract_seconds"],
            final_url=r["final_url"],
            http_status=r["http_status"],
        )
        for r in rows
    ]


def renew(
    conn: sqlite3.Connection,
    run_id: str,
    held: Iterable[tuple[str, int]],
    lease_seconds: float,
    now: float,
) -> set[str]:
    """Extend the leases this run still holds; return the ids it has lost."""
    lost: set[str] = set()
    with transaction(conn):
        for job_id, token in held:
            cur = conn.execute(
                f"UPDATE jobs SET lease_expires = ? WHERE {_FENCE}",
                (now + lease_seconds, job_id, run_id, token, now),
            )
            if cur.rowcount == 0:
                lost.add(job_id)
    return lost


def checkpoint(
    conn: sqlite3.Connection,
    job_id: str,
    token: int,
    run_id: str,
    stage: str,
    fields: dict[str, Any],
    now: float,
) -> bool:
    """Move a leased job to `stage`, storing `fields`. False if the lease was lost (fence)."""
    assignments = "".join(f"{name} = ?, " for name in fields)
    with transaction(conn):
        cur = conn.execute(
            f"UPDATE jobs SET stage = ?, {assignments}updated_at = ? WHERE {_FENCE}",
            (stage, *fields.values(), now, job_id, run_id, token, now),
        )
        return cur.rowcount == 1


def complete(
    conn: sqlite3.Connection,
    job_id: str,
    token: int,
    run_id: str,
    result: dict[str, Any],
    outcome_path: str,
    now: float,
) -> bool:
    """Mark done and write the results row, in one transaction, behind the fence."""
    with transaction(conn):
        cur = conn.execute(
            "UPDATE jobs SET stage = 'done', outcome_path = ?, lease_owner = NULL, "
            "lease_expires = NULL, error_kind = NULL, error_message = NULL, done_at = ?, "
            f"updated_at = ? WHERE {_FENCE}",
            (outcome_path, now, now, job_id, run_id, token, now),
        )
        if cur.rowcount != 1:
            return False
        conn.execute(
            'INSERT OR REPLACE INTO results (id, run_id, title, pages, words, "references", '
            "arxiv_stamp, sha256, bytes, outcome_json, created_at) "
            "VALUES (:id, :run_id, :title, :pages, :words, :references, :arxiv_stamp, "
            ":sha256, :bytes, :outcome_json, :created_at)",
            {**result, "id": job_id, "run_id": run_id, "created_at": now},
        )
        conn.execute("UPDATE runs SET done = done + 1 WHERE id = ?", (run_id,))
        return True


def set_outcome(
    conn: sqlite3.Connection,
    job_id: str,
    token: int,
    run_id: str,
    *,
    kind: str,
    message: str,
    now: float,
    final: bool,
    next_attempt_at: float = 0.0,
    count_attempt: bool = True,
    crashed: bool = False,
) -> bool:
    """End this attempt in failure: `final` -> stage failed; else back to the queue for later.

    The lease is released either way; no worker holds a job while it waits for its retry.
    """
    with transaction(conn):
        cur = conn.execute(
            "UPDATE jobs SET stage = CASE WHEN ? THEN 'failed' ELSE stage END, "
            "attempts = attempts + ?, crashes = crashes + ?, error_kind = ?, error_message = ?, "
            "next_attempt_at = ?, lease_owner = NULL, lease_expires = NULL, updated_at = ?, "
            f"done_at = CASE WHEN ? THEN ? ELSE NULL END WHERE {_FENCE}",
            (
                final,
                int(count_attempt),
                int(crashed),
                kind,
                message[:2000],
                next_attempt_at,
                now,
                final,
                now,
                job_id,
                run_id,
                token,
                now,
            ),
        )
        if cur.rowcount == 1 and final:
            conn.execute("UPDATE runs SET failed = failed + 1 WHERE id = ?", (run_id,))
        return cur.rowcount == 1


def release(conn: sqlite3.Connection, run_id: str, held: Iterable[tuple[str, int]]) -> int:
    """Give leases back without counting an attempt (shutdown, a host's breaker opened)."""
    with transaction(conn):
        count = 0
        for job_id, token in held:
            count += conn.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL "
                "WHERE id = ? AND lease_owner = ? AND lease_token = ?",
                (job_id, run_id, token),
            ).rowcount
        return count


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_runs(conn: sqlite3.Connection, now: float, dead_after: float) -> list[str]:
    """Runs marked running whose heartbeat stopped (or whose process on this host is gone)."""
    host = socket.gethostname()
    dead = []
    for row in conn.execute(
        "SELECT id, pid, host, heartbeat_at FROM runs WHERE status = 'running'"
    ).fetchall():
        gone = row["host"] == host and not _pid_alive(row["pid"])
        if gone or row["heartbeat_at"] < now - dead_after:
            dead.append(row["id"])
    return dead


def reclaim_stale(conn: sqlite3.Connection, now: float, dead_after: float) -> dict[str, int]:
    """Free the leases of dead runs and any expired lease; mark dead runs as crashed.

    A run is dead when its heartbeat is older than `dead_after`, or when it ran on this host
    and its process no longer exists (so `resume` after a kill -9 reclaims at once).
    """
    with transaction(conn):
        dead = dead_runs(conn, now, dead_after)
        for run_id in dead:
            conn.execute(
                "UPDATE runs SET status = 'crashed', ended_at = heartbeat_at WHERE id = ?",
                (run_id,),
            )
        dead_leases = 0
        for run_id in dead:
            dead_leases += conn.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ?",
                (run_id,),
            ).rowcount
        expired = conn.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL "
            "WHERE lease_owner IS NOT NULL AND lease_expires < ?",
            (now,),
        ).rowcount
    return {"dead_runs": len(dead), "dead_leases": dead_leases, "expired_leases": expired}


def register_run(
    conn: sqlite3.Connection, run_id: str, command: str, settings_json: str, now: float
) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO runs (id, command, pid, host, started_at, heartbeat_at, status, "
            "settings_json) VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
            (run_id, command, os.getpid(), socket.gethostname(), now, now, settings_json),
        )


def heartbeat(
    conn: sqlite3.Connection,
    run_id: str,
    held: Iterable[tuple[str, int]],
    lease_seconds: float,
    now: float,
) -> set[str]:
    """Beat the run's heartbeat and renew its leases in one call. Returns lost job ids."""
    conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now, run_id))
    return renew(conn, run_id, held, lease_seconds, now)


def end_run(conn: sqlite3.Connection, run_id: str, status: str, now: float) -> None:
    with transaction(conn):
        conn.execute(
            "UPDATE runs SET status = ?, ended_at = ?, heartbeat_at = ? WHERE id = ?",
            (status, now, now, run_id),
        )
        # Whatever this run still holds goes back to the queue.
        conn.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ?",
            (run_id,),
        )


def held_by_others(conn: sqlite3.Connection, run_id: str, now: float) -> int:
    """Jobs under a live lease of another run."""
    row = conn.execute(
        "SELECT count(*) FROM jobs WHERE lease_owner IS NOT NULL AND lease_owner != ? "
        "AND lease_expires >= ?",
        (run_id, now),
    ).fetchone()
    return int(row[0])


def record_attempts(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Batch-insert stage attempts: (job_id, run_id, stage, started_at, gate_wait, duration,
    outcome, error_kind)."""
    if not rows:
        return
    with transaction(conn):
        conn.executemany(
            "INSERT INTO attempts (job_id, run_id, stage, started_at, gate_wait, duration, "
            "outcome, error_kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

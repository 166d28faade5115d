"""What the queue holds, read from the database alone (so it works during a run and after).

`collect_status` returns the documented, stable `rpa status --json` schema (see README,
"status --json schema"); `STATUS_SCHEMA_VERSION` changes only when a field is removed or changes
meaning (adding fields does not).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from rpa.db import ACTIVE_STAGES, FINAL_STAGES, connect
from rpa.errors import DatabaseError
from rpa.jobs import dead_runs, held_by_others
from rpa.snapshot import Totals

__all__ = [
    "STATUS_SCHEMA_VERSION",
    "collect_status",
    "end_of_run_totals",
    "queue_totals",
    "read_run_timings",
    "stage_timings",
]

STATUS_SCHEMA_VERSION = 1
#: a run whose heartbeat is older than this is dead (runs beat every few seconds)
DEAD_AFTER = 30.0
TIMING_WINDOW = 15 * 60.0
#: states of `stages.<stage>` in the schema
STATES = ("waiting", "leased", "retry_scheduled", "final")
#: stages the attempts table times
TIMED_STAGES = ("download", "extract", "outcome")


_ACTIVE = "('queued', 'downloaded', 'extracted')"
#: jobs waiting for a retry time still ahead; repeats the terms of the partial index
#: `jobs_retry` (which holds only jobs that were ever given a retry time) so SQLite uses it
_RETRY = (
    f"next_attempt_at > 0 AND lease_owner IS NULL AND stage IN {_ACTIVE} AND next_attempt_at > ?"
)


def _stage_counts(conn: sqlite3.Connection, now: float) -> dict[str, dict[str, int]]:
    """Jobs by stage and state, every stage with every state (zeros included).

    Index-sized queries, never a scan of every row (which takes seconds on a million jobs):
    totals per stage from `stage_counts` (kept exact in the writing transaction: by triggers,
    and by `jobs.enqueue` for new jobs), leased jobs from the partial index `jobs_leased`,
    retry-scheduled ones from the partial index `jobs_retry`; `waiting` is the rest. A
    final-stage job is never leased.
    """
    out = {stage: dict.fromkeys(STATES, 0) for stage in (*ACTIVE_STAGES, *FINAL_STAGES)}
    for row in conn.execute("SELECT stage, n FROM stage_counts"):
        if row["n"]:
            out.setdefault(row["stage"], dict.fromkeys(STATES, 0))["final"] = row["n"]
    for row in conn.execute(
        "SELECT stage, count(*) AS n FROM jobs WHERE lease_owner IS NOT NULL GROUP BY stage"
    ):
        out[row["stage"]]["leased"] = row["n"]
    for row in conn.execute(
        f"SELECT stage, count(*) AS n FROM jobs WHERE {_RETRY} GROUP BY stage", (now,)
    ):
        out[row["stage"]]["retry_scheduled"] = row["n"]
    for stage, row in out.items():
        if stage in FINAL_STAGES:
            row["leased"] = 0
        else:
            # `final` holds the stage's total so far
            row["waiting"] = row["final"] - row["leased"] - row["retry_scheduled"]
            row["final"] = 0
    return out


def _totals(stages: dict[str, dict[str, int]]) -> Totals:
    active = [row for stage, row in stages.items() if stage not in FINAL_STAGES]
    return Totals(
        queued=sum(row["waiting"] for row in active),
        in_progress=sum(row["leased"] for row in active),
        retry_scheduled=sum(row["retry_scheduled"] for row in active),
        done=stages["done"]["final"],
        failed=stages["failed"]["final"],
    )


def queue_totals(conn: sqlite3.Connection, now: float) -> Totals:
    """Queue-wide counts (what the pipeline's heartbeat refreshes)."""
    conn.execute("BEGIN")  # the three counts from one snapshot
    try:
        return _totals(_stage_counts(conn, now))
    finally:
        conn.execute("COMMIT")


def end_of_run_totals(conn: sqlite3.Connection, run_id: str, now: float) -> tuple[Totals, int]:
    """The queue's totals and the jobs under another live run's lease, from one snapshot.

    Read apart, a job another run finished between the two reads would count as in progress
    but not as held elsewhere: this run would report work left over (exit 1) that is not.
    """
    conn.execute("BEGIN")
    try:
        return _totals(_stage_counts(conn, now)), held_by_others(conn, run_id, now)
    finally:
        conn.execute("COMMIT")


def _stuck(conn: sqlite3.Connection, now: float, dead: list[str]) -> dict[str, Any]:
    marks = ",".join("?" * len(dead))
    dead_clause = f"lease_owner IN ({marks}) OR " if dead else ""
    rows = conn.execute(
        "SELECT id, stage, lease_owner, lease_expires, updated_at FROM jobs "
        f"WHERE lease_owner IS NOT NULL AND ({dead_clause}lease_expires < ?) "
        "ORDER BY updated_at LIMIT 10",
        (*dead, now),
    ).fetchall()
    count = conn.execute(
        "SELECT count(*) FROM jobs "
        f"WHERE lease_owner IS NOT NULL AND ({dead_clause}lease_expires < ?)",
        (*dead, now),
    ).fetchone()[0]
    return {
        "count": count,
        "oldest": [
            {
                "id": r["id"],
                "stage": r["stage"],
                "lease_owner": r["lease_owner"],
                "reason": "run dead" if r["lease_owner"] in dead else "lease expired",
                "lease_expires": r["lease_expires"],
                "since": r["updated_at"],
            }
            for r in rows
        ],
    }


def _failures(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT error_kind AS kind, count(*) AS n, min(id) AS sample FROM jobs "
        "WHERE stage = 'failed' GROUP BY error_kind ORDER BY n DESC"
    ).fetchall()
    out = []
    for r in rows:
        message = conn.execute(
            "SELECT error_message FROM jobs WHERE id = ?", (r["sample"],)
        ).fetchone()[0]
        out.append(
            {
                "kind": r["kind"],
                "count": r["n"],
                "sample_id": r["sample"],
                "sample_message": message,
            }
        )
    return out


def _retries(conn: sqlite3.Connection, now: float, count: int) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT id, attempts, next_attempt_at, error_kind, error_message FROM jobs "
        f"WHERE {_RETRY} ORDER BY next_attempt_at LIMIT 10",
        (now,),
    ).fetchall()
    return {
        "count": count,
        "next": [
            {
                "id": r["id"],
                "attempts": r["attempts"],
                "next_attempt_at": r["next_attempt_at"],
                "error_kind": r["error_kind"],
                "error_message": r["error_message"],
            }
            for r in rows
        ],
    }


def _percentiles(
    conn: sqlite3.Connection, column: str, where: str, params: tuple[Any, ...]
) -> dict[str, dict[str, float]]:
    """p50, p95 and max of `column` per stage, ranked inside SQLite (nearest rank, half up),
    so a big window costs a sort in C, not a list of every row in Python."""
    out: dict[str, dict[str, float]] = {}
    for row in conn.execute(
        f"SELECT stage, n, rank, v FROM (SELECT stage, coalesce({column}, 0.0) AS v, "
        f" row_number() OVER (PARTITION BY stage ORDER BY coalesce({column}, 0.0)) - 1 AS rank, "
        f" count(*) OVER (PARTITION BY stage) AS n FROM attempts WHERE {where}) "
        "WHERE rank IN (CAST(0.5 * (n - 1) + 0.5 AS INTEGER), "
        " CAST(0.95 * (n - 1) + 0.5 AS INTEGER), n - 1)",
        params,
    ):
        n, rank, v = row["n"], row["rank"], row["v"]
        per = out.setdefault(row["stage"], {})
        for name, q in (("p50", 0.5), ("p95", 0.95), ("max", 1.0)):
            if rank == int(q * (n - 1) + 0.5):
                per[name] = v
    return out


def _no_timing() -> dict[str, Any]:
    return {
        "attempts": 0,
        "outcomes": {},
        "duration_p50": None,
        "duration_p95": None,
        "duration_max": None,
        "gate_wait_p50": None,
        "gate_wait_p95": None,
    }


def stage_timings(
    conn: sqlite3.Connection, *, since: float | None = None, run_id: str | None = None
) -> dict[str, dict[str, Any]]:
    """Per stage: attempts, outcomes, duration p50/p95/max and gate wait p50/p95, over the
    attempts since `since` and/or of run `run_id`. Every stage is present; a stage with no
    attempts has null percentiles."""
    clauses: list[str] = ["1"]
    params: list[Any] = []
    if since is not None:
        clauses.append("started_at >= ?")
        params.append(since)
    if run_id is not None:
        clauses.append("run_id = ?")
        params.append(run_id)
    where = " AND ".join(clauses)
    out = {stage: _no_timing() for stage in TIMED_STAGES}
    for row in conn.execute(
        f"SELECT stage, outcome, count(*) AS n FROM attempts WHERE {where} GROUP BY stage, outcome",
        params,
    ):
        per = out.setdefault(row["stage"], _no_timing())
        per["outcomes"][row["outcome"]] = row["n"]
        per["attempts"] += row["n"]
    for stage, p in _percentiles(conn, "duration", where, tuple(params)).items():
        out[stage].update(duration_p50=p["p50"], duration_p95=p["p95"], duration_max=p["max"])
    for stage, p in _percentiles(conn, "gate_wait", where, tuple(params)).items():
        out[stage].update(gate_wait_p50=p["p50"], gate_wait_p95=p["p95"])
    return out


def read_run_timings(db: Path, run_id: str) -> dict[str, Any] | None:
    """Whole-run stage timings of `run_id` for the end-of-run summary, read after the run
    (None if the database cannot be read)."""
    try:
        conn = connect(db, readonly=True)
    except DatabaseError:
        return None
    try:
        return {"run_id": run_id, "stages": stage_timings(conn, run_id=run_id)}
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _timings(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
    return {
        "window_seconds": TIMING_WINDOW,
        "stages": stage_timings(conn, since=now - TIMING_WINDOW),
    }


def _throughput(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
    """Papers done per minute over the last 1, 5 and 15 minutes, in one pass."""
    row = conn.execute(
        "SELECT count(*) AS m15, coalesce(sum(done_at >= ?), 0) AS m5, "
        "coalesce(sum(done_at >= ?), 0) AS m1 FROM jobs WHERE stage = 'done' AND done_at >= ?",
        (now - 5 * 60, now - 60, now - 15 * 60),
    ).fetchone()
    return {
        "last_1m_papers_per_min": round(row["m1"] / 1, 2),
        "last_5m_papers_per_min": round(row["m5"] / 5, 2),
        "last_15m_papers_per_min": round(row["m15"] / 15, 2),
    }


def _runs(conn: sqlite3.Connection, now: float, dead: list[str]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, command, pid, host, started_at, heartbeat_at, ended_at, status, done, failed "
        "FROM runs ORDER BY started_at DESC LIMIT 10"
    ).fetchall()
    out = []
    for r in rows:
        status = "dead" if r["id"] in dead else r["status"]
        end = r["ended_at"] or (r["heartbeat_at"] if status == "dead" else now)
        minutes = max((end - r["started_at"]) / 60, 1e-9)
        out.append(
            {
                "id": r["id"],
                "command": r["command"],
                "status": status,
                "pid": r["pid"],
                "host": r["host"],
                "started_at": r["started_at"],
                "ended_at": r["ended_at"],
                "heartbeat_at": r["heartbeat_at"],
                "done": r["done"],
                "failed": r["failed"],
                "papers_per_min": round(r["done"] / minutes, 2),
            }
        )
    return out


def _hosts(conn: sqlite3.Connection, now: float) -> list[dict[str, Any]]:
    return [
        {
            "host": r["host"],
            "cooldown_until": r["cooldown_until"],
            "cooling_down": bool(r["cooldown_until"] and r["cooldown_until"] > now),
            "breaker_open": bool(r["breaker_open"]),
            "reason": r["reason"],
        }
        for r in conn.execute("SELECT * FROM hosts ORDER BY host")
    ]


def collect_status(conn: sqlite3.Connection, now: float | None = None) -> dict[str, Any]:
    """Everything `rpa status` shows, as JSON-able data (schema: README)."""
    now = time.time() if now is None else now
    conn.execute("BEGIN")  # one consistent read snapshot across all the queries
    try:
        dead = dead_runs(conn, now, DEAD_AFTER)
        stages = _stage_counts(conn, now)
        totals = _totals(stages)
        return {
            "schema": STATUS_SCHEMA_VERSION,
            "generated_at": now,
            "totals": {
                "queued": totals.queued,
                "in_progress": totals.in_progress,
                "retry_scheduled": totals.retry_scheduled,
                "done": totals.done,
                "failed": totals.failed,
                "total": totals.total,
            },
            "stages": stages,
            "stuck": _stuck(conn, now, dead),
            "failures": _failures(conn),
            "retries": _retries(conn, now, totals.retry_scheduled),
            "timings": _timings(conn, now),
            "throughput": _throughput(conn, now),
            "runs": _runs(conn, now, dead),
            "hosts": _hosts(conn, now),
        }
    finally:
        conn.execute("COMMIT")

"""What the queue holds, read from the database alone (so it works during a run and after).

`collect_status` returns the documented, stable `rpa status --json` schema (see README,
"status --json schema"); `STATUS_SCHEMA_VERSION` changes only when a field is removed or changes
meaning (adding fields does not).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from rpa.jobs import dead_runs
from rpa.metrics import percentile
from rpa.snapshot import Totals

__all__ = ["STATUS_SCHEMA_VERSION", "collect_status", "queue_totals"]

STATUS_SCHEMA_VERSION = 1
#: a run whose heartbeat is older than this is dead (runs beat every few seconds)
DEAD_AFTER = 30.0
TIMING_WINDOW = 15 * 60.0


def queue_totals(conn: sqlite3.Connection, now: float) -> Totals:
    """Queue-wide counts in one scan."""
    counts = {"queued": 0, "in_progress": 0, "retry_scheduled": 0, "done": 0, "failed": 0}
    for row in conn.execute(
        "SELECT CASE "
        " WHEN stage IN ('done', 'failed') THEN stage "
        " WHEN lease_owner IS NOT NULL THEN 'in_progress' "
        " WHEN next_attempt_at > ? THEN 'retry_scheduled' "
        " ELSE 'queued' END AS state, count(*) AS n FROM jobs GROUP BY state",
        (now,),
    ):
        counts[row["state"]] = row["n"]
    return Totals(**counts)


def _by_stage(conn: sqlite3.Connection, now: float) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for row in conn.execute(
        "SELECT stage, CASE WHEN stage IN ('done', 'failed') THEN 'final' "
        " WHEN lease_owner IS NOT NULL THEN 'leased' "
        " WHEN next_attempt_at > ? THEN 'retry_scheduled' ELSE 'waiting' END AS state, "
        " count(*) AS n FROM jobs GROUP BY stage, state",
        (now,),
    ):
        out.setdefault(row["stage"], {})[row["state"]] = row["n"]
    return out


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


def _retries(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT id, attempts, next_attempt_at, error_kind, error_message FROM jobs "
        "WHERE stage IN ('queued', 'downloaded', 'extracted') AND lease_owner IS NULL "
        "AND next_attempt_at > ? ORDER BY next_attempt_at LIMIT 10",
        (now,),
    ).fetchall()
    return {
        "next": [
            {
                "id": r["id"],
                "attempts": r["attempts"],
                "next_attempt_at": r["next_attempt_at"],
                "error_kind": r["error_kind"],
                "error_message": r["error_message"],
            }
            for r in rows
        ]
    }


def _timings(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
    since = now - TIMING_WINDOW
    durations: dict[str, list[float]] = {}
    waits: dict[str, list[float]] = {}
    outcomes: dict[str, dict[str, int]] = {}
    for row in conn.execute(
        "SELECT stage, duration, gate_wait, outcome FROM attempts WHERE started_at >= ?", (since,)
    ):
        durations.setdefault(row["stage"], []).append(row["duration"] or 0.0)
        waits.setdefault(row["stage"], []).append(row["gate_wait"] or 0.0)
        per = outcomes.setdefault(row["stage"], {})
        per[row["outcome"]] = per.get(row["outcome"], 0) + 1
    out = {}
    for stage, values in durations.items():
        values.sort()
        gate = sorted(waits[stage])
        out[stage] = {
            "attempts": len(values),
            "outcomes": outcomes[stage],
            "duration_p50": percentile(values, 0.5),
            "duration_p95": percentile(values, 0.95),
            "gate_wait_p50": percentile(gate, 0.5),
            "gate_wait_p95": percentile(gate, 0.95),
        }
    return {"window_seconds": TIMING_WINDOW, "stages": out}


def _throughput(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
    windows = {}
    for minutes in (1, 5, 15):
        n = conn.execute(
            "SELECT count(*) FROM jobs WHERE stage = 'done' AND done_at >= ?",
            (now - minutes * 60,),
        ).fetchone()[0]
        windows[f"last_{minutes}m_papers_per_min"] = round(n / minutes, 2)
    return windows


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
        totals = queue_totals(conn, now)
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
            "stages": _by_stage(conn, now),
            "stuck": _stuck(conn, now, dead),
            "failures": _failures(conn),
            "retries": _retries(conn, now),
            "timings": _timings(conn, now),
            "throughput": _throughput(conn, now),
            "runs": _runs(conn, now, dead),
            "hosts": _hosts(conn, now),
        }
    finally:
        conn.execute("COMMIT")

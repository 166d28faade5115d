"""Per-host state kept in the database: Retry-After cooldowns and the circuit breaker.

Stored so that a resumed run does not ask a host again before it said we may, and so that
`rpa status` can show why downloads stopped. These run in the database thread.
"""

from __future__ import annotations

import sqlite3

__all__ = ["close_breaker", "host_state", "open_breaker", "set_cooldown"]


def open_breaker(conn: sqlite3.Connection, host: str, reason: str, now: float) -> None:
    conn.execute(
        "INSERT INTO hosts (host, breaker_open, reason, updated_at) VALUES (?, 1, ?, ?) "
        "ON CONFLICT(host) DO UPDATE SET breaker_open = 1, reason = ?, updated_at = ?",
        (host, reason, now, reason, now),
    )


def set_cooldown(
    conn: sqlite3.Connection, host: str, until: float, reason: str, now: float
) -> None:
    conn.execute(
        "INSERT INTO hosts (host, cooldown_until, reason, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(host) DO UPDATE SET cooldown_until = max(coalesce(cooldown_until, 0), ?), "
        "reason = ?, updated_at = ?",
        (host, until, reason, now, until, reason, now),
    )


def host_state(conn: sqlite3.Connection, host: str) -> tuple[float | None, bool, str] | None:
    row = conn.execute(
        "SELECT cooldown_until, breaker_open, reason FROM hosts WHERE host = ?", (host,)
    ).fetchone()
    return None if row is None else (row[0], bool(row[1]), row[2] or "")


def close_breaker(conn: sqlite3.Connection, host: str, now: float) -> None:
    conn.execute("UPDATE hosts SET breaker_open = 0, updated_at = ? WHERE host = ?", (now, host))

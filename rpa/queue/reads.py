"""The queue's read models: totals, the end of a run's totals, `rpa status`, stage timings and
the export's pages of results.

Each read that takes more than one query runs in one read transaction
(`Sql.read_transaction`), so its parts agree with each other. The SQL of the status document
is rpa.queue.status's.
"""

from __future__ import annotations

from typing import Any

from rpa.queue import status as status_sql
from rpa.queue.clock import now_of
from rpa.queue.model import Totals
from rpa.queue.store import QueueStore

__all__ = ["end_of_run_totals", "results_page", "stage_timings", "status", "totals"]


def totals(store: QueueStore, now: float) -> Totals:
    """Queue-wide counts, from one read transaction."""
    with store.sql.read_transaction():
        return status_sql.totals_of(status_sql.stage_counts(store.sql, now))


def end_of_run_totals(
    store: QueueStore, run_id: str, now: float | None = None
) -> tuple[Totals, int]:
    """The queue's totals and the jobs under another run's unexpired lease (by the
    database's clock), from one read transaction (read apart, a job another run finished in
    between would count as left over)."""
    with store.sql.read_transaction():
        at = now_of(store.sql, now)
        totals = status_sql.totals_of(status_sql.stage_counts(store.sql, at))
        row = store.sql.one(
            "SELECT count(*) AS n FROM jobs WHERE lease_owner IS NOT NULL "
            "AND lease_owner != ? AND lease_expires >= ?",
            (run_id, at),
        )
    return totals, int(row["n"]) if row else 0


def status(store: QueueStore, now: float | None = None) -> dict[str, Any]:
    """Everything `rpa status` shows (schema: docs/status.md), from one read transaction, as
    of `now` (None: the database's clock, which judges the runs' heartbeats: a status read on
    a host whose clock is off must not call a live run dead)."""
    with store.sql.read_transaction():
        return status_sql.collect(store, now_of(store.sql, now))


def stage_timings(
    store: QueueStore, *, since: float | None = None, run_id: str | None = None
) -> dict[str, Any]:
    """Per stage: attempts, outcomes and their percentiles (status.attempt_timings), over
    the attempts since `since` and/or of run `run_id`, from one read transaction."""
    with store.sql.read_transaction():
        return status_sql.attempt_timings(store.sql, since=since, run_id=run_id)


def results_page(store: QueueStore, after: str, limit: int) -> list[tuple[str, str]]:
    """(id, outcome JSON) of done papers with id > `after`, in id order."""
    return [
        (r["id"], r["outcome_json"])
        for r in store.sql.rows(
            "SELECT id, outcome_json FROM results WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
    ]

"""The `rpa status` document and the SQL under the queue's read models (rpa.queue.reads):
what the queue holds, read from the database alone (so it works during a run and after).

`collect` returns the documented, stable `rpa status --json` schema (docs/status.md, "status
--json schema"); `STATUS_SCHEMA_VERSION` changes only when a field is removed or changes meaning
(adding fields does not). The SQL is portable (SQLite and PostgreSQL) and never scans every job:
per-stage totals come from `stage_counts` (kept exact in the writing transaction), the rest
from partial indexes that hold only leased, retry-scheduled, failed or done rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from rpa.metrics import nearest_rank
from rpa.queue import catalog, runs
from rpa.queue.hosts import HELD_JOBS
from rpa.queue.model import ACTIVE_STAGES, FINAL_STAGES, HELD, Totals, dead_after
from rpa.queue.sql import Sql, chunks, rank_sql
from rpa.queue.store import QueueStore

__all__ = [
    "STATUS_SCHEMA_VERSION",
    "TIMED_STAGES",
    "attempt_timings",
    "collect",
    "failed_papers",
    "stage_counts",
    "totals_of",
]

STATUS_SCHEMA_VERSION = 1
TIMING_WINDOW = 15 * 60.0
#: states of `stages.<stage>` in the schema
STATES = ("waiting", "leased", "retry_scheduled", "final")
#: stages the attempts table times
TIMED_STAGES = ("download", "extract", "outcome")

_ACTIVE = "('queued', 'downloaded', 'extracted')"
#: jobs waiting for a retry time still ahead; repeats the terms of the partial index
#: `jobs_retry` (which holds only jobs that were ever given a retry time) so it is used. A job
#: held for a host that refused us (`HELD`) is queued: it waits for the next run, not a time.
_RETRY = (
    f"next_attempt_at > 0 AND lease_owner IS NULL AND stage IN {_ACTIVE} AND next_attempt_at > ? "
    f"AND next_attempt_at < {HELD:.0f}"
)


def stage_counts(sql: Sql, now: float) -> dict[str, dict[str, int]]:
    """Jobs by stage and state, every stage with every state (zeros included)."""
    out = {stage: dict.fromkeys(STATES, 0) for stage in (*ACTIVE_STAGES, *FINAL_STAGES)}
    for row in sql.rows("SELECT stage, sum(n) AS n FROM stage_counts GROUP BY stage"):
        if row["n"]:
            out.setdefault(row["stage"], dict.fromkeys(STATES, 0))["final"] = int(row["n"])
    for row in sql.rows(
        "SELECT stage, count(*) AS n FROM jobs WHERE lease_owner IS NOT NULL GROUP BY stage"
    ):
        out[row["stage"]]["leased"] = row["n"]
    for row in sql.rows(
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


def totals_of(stages: dict[str, dict[str, int]]) -> Totals:
    active = [row for stage, row in stages.items() if stage not in FINAL_STAGES]
    return Totals(
        queued=sum(row["waiting"] for row in active),
        in_progress=sum(row["leased"] for row in active),
        retry_scheduled=sum(row["retry_scheduled"] for row in active),
        done=stages["done"]["final"],
        failed=stages["failed"]["final"],
    )


def _stuck(sql: Sql, now: float, dead: list[str]) -> dict[str, Any]:
    marks = ",".join("?" * len(dead))
    dead_clause = f"lease_owner IN ({marks}) OR " if dead else ""
    where = f"lease_owner IS NOT NULL AND ({dead_clause}lease_expires < ?)"
    rows = sql.rows(
        "SELECT id, stage, lease_owner, lease_expires, updated_at FROM jobs "
        f"WHERE {where} ORDER BY updated_at LIMIT 10",
        (*dead, now),
    )
    count = sql.one(f"SELECT count(*) AS n FROM jobs WHERE {where}", (*dead, now))
    return {
        "count": count["n"] if count else 0,
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


def _failures(sql: Sql) -> list[dict[str, Any]]:
    out = []
    for r in sql.rows(
        "SELECT error_kind AS kind, count(*) AS n, min(id) AS sample FROM jobs "
        "WHERE stage = 'failed' GROUP BY error_kind ORDER BY n DESC, kind"
    ):
        message = sql.one("SELECT error_message FROM jobs WHERE id = ?", (r["sample"],))
        out.append(
            {
                "kind": r["kind"],
                "count": r["n"],
                "sample_id": r["sample"],
                "sample_message": message["error_message"] if message else None,
            }
        )
    return out


def failed_papers(
    store: QueueStore, kinds: Sequence[str] | None = None, page: int = 1000, stages: bool = True
) -> Iterator[dict[str, Any]]:
    """Every paper failed for good (all, or of `kinds`), by ID, a page at a time (each page
    its own short read, so a long listing never holds the database): its ID, the kind and
    the reason of its last failure, its attempts, the stage it failed in (`_failed_in`; not
    looked up unless `stages`), and when (`rpa failures`)."""
    where = "stage = 'failed' AND id > ?"
    marks: tuple[str, ...] = tuple(kinds or ())
    if marks:
        where += f" AND error_kind IN ({', '.join('?' * len(marks))})"
    after = ""
    while True:
        rows = store.sql.rows(
            "SELECT id, error_kind, error_message, attempts, updated_at FROM jobs "
            f"WHERE {where} ORDER BY id LIMIT ?",
            (after, *marks, page),
        )
        failed_in = _failed_in(store.sql, rows) if stages else {}
        for r in rows:
            yield {
                "id": r["id"],
                "kind": r["error_kind"],
                "reason": r["error_message"],
                "attempts": r["attempts"],
                "stage": failed_in.get(r["id"]),
                "last_try": r["updated_at"],
            }
        if len(rows) < page:
            return
        after = rows[-1]["id"]


def _failed_in(sql: Sql, failed: Sequence[Any]) -> dict[str, str]:
    """The stage each `failed` job's last attempt failed in, as its attempts rows say
    (download, extract, outcome): the stage of its latest attempt up to its failure, if that
    attempt is an error of the kind the job failed with. None is said rather than a guess
    where that row is not there: a run writes its attempts at its heartbeat (a listing
    during the run may come first), and a run killed with -9 loses its last ones. (The
    job's `failed_stage` is its checkpoint for `rpa retry`, `queued` whichever stage
    failed: not a stage to show.) By the index `attempts_job` (schema 12): the page's rows
    only."""
    if not failed:
        return {}
    ended = {r["id"]: r["updated_at"] or 0.0 for r in failed}
    kinds = {r["id"]: r["error_kind"] for r in failed}
    last: dict[str, tuple[float, str, str, str | None]] = {}
    for some in chunks(list(ended), 500):  # SQLite before 3.32 takes 999 variables at most
        rows = sql.rows(
            "SELECT job_id, stage, outcome, error_kind, started_at FROM attempts "
            f"WHERE job_id IN ({', '.join('?' * len(some))})",
            tuple(some),
        )
        for r in rows:
            job, at = r["job_id"], r["started_at"] or 0.0
            if at <= ended[job] and (job not in last or at >= last[job][0]):
                last[job] = (at, r["stage"], r["outcome"], r["error_kind"])
    # an earlier attempt's error (the failing one's row lost) is no answer: not a guess
    return {
        job: stage
        for job, (_, stage, outcome, kind) in last.items()
        if outcome != "ok" and kind == kinds[job]
    }


def _retries(sql: Sql, now: float, count: int) -> dict[str, Any]:
    rows = sql.rows(
        "SELECT id, attempts, next_attempt_at, error_kind, error_message FROM jobs "
        f"WHERE {_RETRY} ORDER BY next_attempt_at LIMIT 10",
        (now,),
    )
    return {"count": count, "next": [dict(r) for r in rows]}


_QUANTILES = (("p50", 500), ("p95", 950), ("max", 1000))


def _percentiles(
    sql: Sql, column: str, where: str, params: tuple[Any, ...]
) -> dict[str, dict[str, float]]:
    """p50, p95 and max of `column` per stage, ranked inside the database with the one
    percentile method (`rpa.metrics.nearest_rank`), so a big window costs a sort in C."""
    ranks = ", ".join(rank_sql(q, "n") for _, q in _QUANTILES)
    out: dict[str, dict[str, float]] = {}
    for row in sql.rows(
        f"SELECT stage, n, rnk, v FROM (SELECT stage, coalesce({column}, 0.0) AS v, "
        f" row_number() OVER (PARTITION BY stage ORDER BY coalesce({column}, 0.0)) - 1 AS rnk, "
        f" count(*) OVER (PARTITION BY stage) AS n FROM attempts WHERE {where}) AS ranked "
        f"WHERE rnk IN ({ranks})",
        params,
    ):
        n, rank = int(row["n"]), int(row["rnk"])
        per = out.setdefault(row["stage"], {})
        for name, q in _QUANTILES:
            if rank == nearest_rank(q, n):
                per[name] = float(row["v"])
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


def attempt_timings(
    sql: Sql, *, since: float | None = None, run_id: str | None = None
) -> dict[str, Any]:
    """Per stage: attempts, outcomes, duration p50/p95/max and gate wait p50/p95, over the
    attempts since `since` and/or of run `run_id`. Every stage is present; a stage with no
    attempts has null percentiles."""
    clauses: list[str] = ["1 = 1"]
    params: list[Any] = []
    if since is not None:
        clauses.append("started_at >= ?")
        params.append(since)
    if run_id is not None:
        clauses.append("run_id = ?")
        params.append(run_id)
    where = " AND ".join(clauses)
    out = {stage: _no_timing() for stage in TIMED_STAGES}
    for row in sql.rows(
        f"SELECT stage, outcome, count(*) AS n FROM attempts WHERE {where} GROUP BY stage, outcome",
        tuple(params),
    ):
        per = out.setdefault(row["stage"], _no_timing())
        per["outcomes"][row["outcome"]] = row["n"]
        per["attempts"] += row["n"]
    for stage, p in _percentiles(sql, "duration", where, tuple(params)).items():
        out[stage].update(duration_p50=p["p50"], duration_p95=p["p95"], duration_max=p["max"])
    for stage, p in _percentiles(sql, "gate_wait", where, tuple(params)).items():
        out[stage].update(gate_wait_p50=p["p50"], gate_wait_p95=p["p95"])
    return out


def _throughput(sql: Sql, now: float) -> dict[str, Any]:
    """Papers done per minute over the last 1, 5 and 15 minutes, in one pass."""
    row = sql.one(
        "SELECT count(*) AS m15, count(*) FILTER (WHERE done_at >= ?) AS m5, "
        "count(*) FILTER (WHERE done_at >= ?) AS m1 FROM jobs "
        "WHERE stage = 'done' AND done_at >= ?",
        (now - 5 * 60, now - 60, now - 15 * 60),
    )
    m1, m5, m15 = (int(row[k]) if row else 0 for k in ("m1", "m5", "m15"))
    return {
        "last_1m_papers_per_min": round(m1 / 1, 2),
        "last_5m_papers_per_min": round(m5 / 5, 2),
        "last_15m_papers_per_min": round(m15 / 15, 2),
    }


def _runs(sql: Sql, now: float, dead: list[str]) -> list[dict[str, Any]]:
    out = []
    for r in sql.rows(
        "SELECT id, command, pid, host, started_at, heartbeat_at, heartbeat_seconds, ended_at, "
        "status, done, failed, waiting, waiting_since FROM runs ORDER BY started_at DESC LIMIT 10"
    ):
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
                "dead_after": dead_after(r["heartbeat_seconds"] or 5.0),
                "done": r["done"],
                "failed": r["failed"],
                "papers_per_min": round(r["done"] / minutes, 2),
                # as of its last heartbeat (a dead run's: what it last said)
                "waiting": r["waiting"],
                "waiting_since": r["waiting_since"],
            }
        )
    return out


def _held(sql: Sql) -> dict[str, Any]:
    """The queued papers held for a host that refused us (a redirect's target): the next run
    asks it again."""
    count = sql.one(f"SELECT count(*) AS n FROM jobs WHERE {HELD_JOBS}", (HELD,))
    sample = sql.one(
        f"SELECT id, error_kind, error_message FROM jobs WHERE {HELD_JOBS} ORDER BY id LIMIT 1",
        (HELD,),
    )
    return {
        "count": count["n"] if count else 0,
        "sample_id": sample["id"] if sample else None,
        "sample_kind": sample["error_kind"] if sample else None,
        "sample_message": sample["error_message"] if sample else None,
    }


def _hosts(sql: Sql, now: float) -> list[dict[str, Any]]:
    return [
        {
            "host": r["host"],
            "cooldown_until": r["cooldown_until"],
            "cooling_down": bool(r["cooldown_until"] and r["cooldown_until"] > now),
            "breaker_open": bool(r["breaker_open"]),
            "reason": r["reason"],
        }
        for r in sql.rows(
            "SELECT host, cooldown_until, breaker_open, reason FROM hosts ORDER BY host"
        )
    ]


def collect(store: QueueStore, now: float) -> dict[str, Any]:
    """Everything `rpa status` shows, as JSON-able data (schema: docs/status.md). Call inside one
    read transaction (rpa.queue.reads.status does)."""
    sql = store.sql
    dead = runs.dead_runs(store, now)
    stages = stage_counts(sql, now)
    t = totals_of(stages)
    return {
        "schema": STATUS_SCHEMA_VERSION,
        "generated_at": now,
        "database": store.location,
        "totals": {
            "queued": t.queued,
            "in_progress": t.in_progress,
            "retry_scheduled": t.retry_scheduled,
            "done": t.done,
            "failed": t.failed,
            "total": t.total,
        },
        "stages": stages,
        "stuck": _stuck(sql, now, dead),
        "failures": _failures(sql),
        "retries": _retries(sql, now, t.retry_scheduled),
        "timings": {
            "window_seconds": TIMING_WINDOW,
            "stages": attempt_timings(sql, since=now - TIMING_WINDOW),
        },
        "throughput": _throughput(sql, now),
        "runs": _runs(sql, now, dead),
        "hosts": _hosts(sql, now),
        "held": _held(sql),
        "settings": catalog.queue_settings(store),
        "settings_changes": catalog.settings_changes(store),
    }

"""The user stages' checkpoints in the queue: the `stage_results` table, one row a paper and
stage, written once for both backends (plain functions over a QueueStore, run in the
database's thread by `AsyncQueue.run`).

A row's `state`: running (leased to `lease_owner`), retry (due at `next_at`), done, failed.
A claim bumps `lease_token` in one upsert whose WHERE re-checks that the row is claimable
(no live run holds it), so two runs of a fleet never run the same stage of the same paper at
once; every later write is fenced by (lease_owner, lease_token). A row of another `version`
than the run's is claimable whatever its state: changing a stage's version re-runs it.
A stage's result is also merged into the paper's record (`results.outcome_json`) under
`stages.<name>`, in the transaction that marks it done.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rpa.errors import InternalError
from rpa.queue import open_store, runs
from rpa.queue.clock import now_of
from rpa.queue.store import QueueStore

__all__ = [
    "Claimed",
    "claim",
    "complete",
    "counts",
    "export_columns",
    "fail",
    "give_back",
    "next_due",
    "pending",
    "record_of",
    "release_run",
    "reopen",
    "work_left",
]


@dataclass(frozen=True, slots=True)
class Claimed:
    """One paper leased for one stage."""

    job_id: str
    seq: int
    token: int
    attempts: int  # failed attempts at this version so far
    pdf_path: str | None
    text_path: str | None
    outcome_path: str | None
    record: dict[str, Any]
    results: dict[str, dict[str, Any]]


def _claimable(live: set[str]) -> tuple[str, list[Any]]:
    """SQL: the row `s` may be claimed (no live run holds it)."""
    if not live:
        return "1 = 1", []
    return f"(s.lease_owner IS NULL OR s.lease_owner NOT IN ({', '.join('?' * len(live))}))", [
        *live
    ]


def _needs_sql(needs: Sequence[tuple[str, str]]) -> tuple[str, list[Any]]:
    sql, params = "", []
    for name, version in needs:
        sql += (
            " AND EXISTS (SELECT 1 FROM stage_results d WHERE d.job_id = j.id AND d.stage = ? "
            "AND d.state = 'done' AND d.version = ?)"
        )
        params += [name, version]
    return sql, params


def claim(
    store: QueueStore,
    stage: str,
    version: str,
    needs: Sequence[tuple[str, str]],
    run_id: str,
    after_seq: int,
    limit: int,
    now: float,
) -> list[Claimed]:
    """Lease up to `limit` done papers (seq > `after_seq`, in seq order) whose `stage` at
    `version` is not done nor failed for good, is due, is held by no live run, and whose
    `needs` (stage, version) are done. One transaction."""
    sql = store.sql
    with sql.transaction():
        live = runs.live_runs(store)
        free, free_params = _claimable(live)
        need, need_params = _needs_sql(needs)
        rows = sql.rows(
            "SELECT j.id, j.seq, j.pdf_path, j.text_path, j.outcome_path, r.outcome_json "
            "FROM jobs j JOIN results r ON r.id = j.id "
            "LEFT JOIN stage_results s ON s.job_id = j.id AND s.stage = ? "
            "WHERE j.stage = 'done' AND j.seq > ? AND (s.job_id IS NULL OR (("
            "s.version != ? OR (s.state IN ('retry', 'running') AND s.next_at <= ?)) AND "
            f"{free})){need} ORDER BY j.seq LIMIT ?",
            (stage, after_seq, version, now, *free_params, *need_params, limit),
        )
        claimed = []
        for row in rows:
            got = sql.one(
                "INSERT INTO stage_results AS s (job_id, stage, version, state, attempts, "
                "lease_owner, lease_token, updated_at) VALUES (?, ?, ?, 'running', 0, ?, 1, ?) "
                "ON CONFLICT (job_id, stage) DO UPDATE SET state = 'running', "
                "attempts = CASE WHEN s.version = excluded.version THEN s.attempts ELSE 0 END, "
                "version = excluded.version, lease_owner = excluded.lease_owner, "
                "lease_token = s.lease_token + 1, updated_at = excluded.updated_at "
                "WHERE (s.version != excluded.version OR s.state IN ('retry', 'running')) "
                f"AND {free} RETURNING lease_token, attempts",
                (row["id"], stage, version, run_id, now, *free_params),
            )
            if got is None:
                continue  # another run took it between the read and the upsert
            claimed.append((row, int(got["lease_token"]), int(got["attempts"])))
        results = _results(store, [row["id"] for row, _, _ in claimed], stage)
    return [
        Claimed(
            job_id=row["id"],
            seq=int(row["seq"]),
            token=token,
            attempts=attempts,
            pdf_path=row["pdf_path"],
            text_path=row["text_path"],
            outcome_path=row["outcome_path"],
            record=json.loads(row["outcome_json"] or "{}"),
            results=results.get(row["id"], {}),
        )
        for row, token, attempts in claimed
    ]


def _results(store: QueueStore, ids: list[str], but: str) -> dict[str, dict[str, Any]]:
    """The done results of other stages of the papers `ids`."""
    out: dict[str, dict[str, Any]] = {}
    if not ids:
        return out
    for r in store.sql.rows(
        "SELECT job_id, stage, result_json FROM stage_results WHERE state = 'done' "
        f"AND stage != ? AND job_id IN ({', '.join('?' * len(ids))})",
        (but, *ids),
    ):
        out.setdefault(r["job_id"], {})[r["stage"]] = json.loads(r["result_json"] or "{}")
    return out


_FENCE = "WHERE job_id = ? AND stage = ? AND lease_owner = ? AND lease_token = ?"


def record_of(store: QueueStore, job_id: str) -> dict[str, Any] | None:
    """The paper's record in the queue (None before it is done)."""
    row = store.sql.one("SELECT outcome_json FROM results WHERE id = ?", (job_id,))
    return json.loads(row["outcome_json"]) if row and row["outcome_json"] else None


def complete(
    store: QueueStore,
    job_id: str,
    stage: str,
    run_id: str,
    token: int,
    result: dict[str, Any],
    seconds: float,
    now: float,
) -> dict[str, Any] | None:
    """Mark the stage done (fenced) and merge `result` into the paper's record under
    `stages.<stage>`; the merged record, or None when the lease was lost. One transaction.
    Raises InternalError when `result` is not JSON-serialisable (the stage's bug)."""
    try:
        text = json.dumps(result, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InternalError(f"stage {stage}: its result is not JSON-serialisable: {exc}") from None
    with store.sql.transaction():
        changed = store.sql.execute(
            "UPDATE stage_results SET state = 'done', result_json = ?, error_kind = NULL, "
            f"error = NULL, lease_owner = NULL, seconds = ?, updated_at = ? {_FENCE}",
            (text, seconds, now, job_id, stage, run_id, token),
        )
        if not changed:
            return None
        record = record_of(store, job_id) or {}
        record.setdefault("stages", {})[stage] = result
        store.sql.execute(
            "UPDATE results SET outcome_json = ? WHERE id = ?",
            (json.dumps(record, ensure_ascii=False), job_id),
        )
    return record


def fail(
    store: QueueStore,
    job_id: str,
    stage: str,
    run_id: str,
    token: int,
    *,
    final: bool,
    counted: bool,
    next_at: float,
    kind: str,
    message: str,
    now: float,
) -> bool:
    """A failed attempt (fenced): `final`: failed for good; else due again at `next_at`;
    `counted`: it counts towards --max-attempts (an outage's give-back does not)."""
    return bool(
        store.sql.execute(
            "UPDATE stage_results SET state = ?, attempts = attempts + ?, next_at = ?, "
            "error_kind = ?, error = ?, lease_owner = NULL, updated_at = ? " + _FENCE,
            (
                "failed" if final else "retry",
                int(counted),
                next_at,
                kind,
                message[:2000],
                now,
                job_id,
                stage,
                run_id,
                token,
            ),
        )
    )


def give_back(
    store: QueueStore, stage: str, run_id: str, leases: Sequence[tuple[str, int]], next_at: float
) -> None:
    """Papers claimed and not run (a pause, a stop): back as they were, due at `next_at`."""
    with store.sql.transaction():
        for job_id, token in leases:
            store.sql.execute(
                "UPDATE stage_results SET state = 'retry', next_at = ?, lease_owner = NULL "
                + _FENCE,
                (next_at, job_id, stage, run_id, token),
            )


def release_run(store: QueueStore, run_id: str) -> int:
    """Every row this run still holds, back as due now (the end of a run)."""
    return store.sql.execute(
        "UPDATE stage_results SET state = 'retry', next_at = 0, lease_owner = NULL "
        "WHERE lease_owner = ? AND state = 'running'",
        (run_id,),
    )


def next_due(
    store: QueueStore, stages: Sequence[tuple[str, str]], run_id: str, now: float
) -> float | None:
    """When to look again for work of these (stage, version): the earliest `next_at` of a
    row waiting for a retry; `now` when another run holds rows of them (it may finish them,
    or die and leave them to this run, as the feeder waits for other runs' jobs); None when
    nothing is left."""
    best: float | None = None
    for stage, version in stages:
        row = store.sql.one(
            "SELECT min(CASE WHEN state = 'retry' THEN next_at ELSE ? END) AS t "
            "FROM stage_results WHERE stage = ? AND version = ? AND (state = 'retry' OR "
            "(state = 'running' AND lease_owner IS NOT NULL AND lease_owner != ?))",
            (now, stage, version, run_id),
        )
        if row and row["t"] is not None:
            best = float(row["t"]) if best is None else min(best, float(row["t"]))
    return best


def pending(store: QueueStore, stages: Sequence[tuple[str, str]]) -> int:
    """Done papers with work left for one of these (stage, version): never run, of another
    version, waiting for a retry or held. (`rpa run` on a queue with no papers left still
    runs when this is above 0.)"""
    total = 0
    for stage, version in stages:
        row = store.sql.one(
            "SELECT count(*) AS n FROM jobs j LEFT JOIN stage_results s ON s.job_id = j.id "
            "AND s.stage = ? WHERE j.stage = 'done' AND (s.job_id IS NULL OR s.version != ? "
            "OR s.state IN ('retry', 'running'))",
            (stage, version),
        )
        total += int(row["n"]) if row else 0
    return total


def reopen(
    store: QueueStore, stage: str, kinds: Sequence[str] | None, now: float
) -> dict[str, int]:
    """`rpa retry --stage NAME`: every row of `stage` (or only those failed with `kinds`)
    due again with fresh attempts; the lease token moves on, so a run holding one cannot
    write it. Returns how many per state (or kind). Downloads and extractions stay."""
    where, params = "stage = ?", [stage]
    if kinds:
        where += f" AND state = 'failed' AND error_kind IN ({', '.join('?' * len(kinds))})"
        params += list(kinds)
    with store.sql.transaction():
        found = {
            str(r["k"]): int(r["n"])
            for r in store.sql.rows(
                f"SELECT coalesce(error_kind, state) AS k, count(*) AS n FROM stage_results "
                f"WHERE {where} GROUP BY coalesce(error_kind, state)",
                params,
            )
        }
        store.sql.execute(
            "UPDATE stage_results SET state = 'retry', attempts = 0, next_at = 0, "
            f"lease_owner = NULL, lease_token = lease_token + 1, updated_at = ? WHERE {where}",
            (now, *params),
        )
    return found


def counts(store: QueueStore, now: float | None = None) -> dict[str, Any]:
    """For `rpa status`: per stage, rows per state (running split by live holders),
    failures per kind, and the versions present."""
    out: dict[str, Any] = {}
    live = runs.live_runs(store, now_of(store.sql, now))
    for r in store.sql.rows(
        "SELECT stage, state, version, error_kind, lease_owner, count(*) AS n FROM stage_results "
        "GROUP BY stage, state, version, error_kind, lease_owner"
    ):
        per = out.setdefault(
            r["stage"],
            {"done": 0, "running": 0, "retry": 0, "failed": 0, "failures": {}, "versions": []},
        )
        state = r["state"] if r["state"] != "running" or r["lease_owner"] in live else "retry"
        per[state] += int(r["n"])
        if r["state"] == "failed":
            kind = r["error_kind"] or "unknown"
            per["failures"][kind] = per["failures"].get(kind, 0) + int(r["n"])
        if r["version"] not in per["versions"]:
            per["versions"].append(r["version"])
    return out


def export_columns(store: QueueStore, sample: int = 200) -> list[tuple[str, str]]:
    """(stage, key) of the export's `stage_<stage>_<key>` columns: the keys of up to
    `sample` results of each stage (a row being re-run keeps its last result, as the record
    does), in the order first seen."""
    columns: list[tuple[str, str]] = []
    stages = [r["stage"] for r in store.sql.rows("SELECT DISTINCT stage FROM stage_results")]
    for stage in sorted(stages):
        for r in store.sql.rows(
            "SELECT result_json FROM stage_results WHERE stage = ? AND result_json IS NOT NULL "
            "LIMIT ?",
            (stage, sample),
        ):
            for key in json.loads(r["result_json"] or "{}"):
                if (stage, key) not in columns:
                    columns.append((stage, key))
    return columns


def work_left(db: str, specs: Sequence[Any]) -> int:
    """`pending` for the stages `specs` (StageSpecs) of the queue at `db`, on a store of its
    own (0 without stages). Blocking: before a run."""
    if not specs:
        return 0
    store = open_store(db, create=False)
    try:
        return pending(store, [(s.name, s.version) for s in specs])
    finally:
        store.close()

"""Runs and their liveness: registering a run, its heartbeat, its end, and reclaiming the
leases of runs that died.

A run is its id, a random token (rpa.queue.model.new_run_id), never a hostname and a pid:
containers sharing a hostname, or pids reused, cannot confuse two runs. A run is alive while
its heartbeat, by the database's clock (rpa.queue.clock), is younger than `dead_after` its own
interval; `dead_runs` is the one definition of a dead run. A run never reclaims its own
leases: after a pause (a stall of its database calls, a SIGSTOP, a laptop suspended) it keeps
every lease still in its name, expired or not. A run another run found dead is marked
`crashed` and its leases freed; its next heartbeat learns it (`DeclaredDead`) and it stops
without writing.

Each heartbeat also stores what the run waits for now (`Wait`: a full disk, memory, a host
down, the next retry), and since when by the database's clock, so `rpa status` can say it
from any terminal; a beat with no wait, the run's end, and its being found dead clear it.

Lock order: every transaction here that writes job rows and run rows takes the job rows
first, then the run's row, as `rpa.queue.jobs.complete` and `fail` do (see `heartbeat`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rpa.errors import DeclaredDead
from rpa.queue.clock import db_now, now_of
from rpa.queue.model import Lease, Reclaimed, RunInfo, Wait, dead_after
from rpa.queue.sql import Sql, chunks
from rpa.queue.store import QueueStore

__all__ = [
    "Beat",
    "Holder",
    "clock",
    "dead_runs",
    "end_run",
    "found_dead",
    "heartbeat",
    "holders",
    "live_runs",
    "reclaim_stale",
    "register_run",
]


@dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat: the held jobs another run holds now (lost), the seconds since the
    run's previous beat by the database's clock (long: the run was paused or its database
    calls stalled), and the held jobs whose lease this beat renewed (kept)."""

    lost: set[str]
    gap: float
    kept: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Holder:
    """Another run holding leases: its id, how many, and the seconds since its last
    heartbeat by the database's clock (None: no such run registered)."""

    run_id: str
    jobs: int
    silent: float | None


def register_run(store: QueueStore, run: RunInfo) -> None:
    """Register `run` as running; its first heartbeat is its `started_at`, which a run takes
    from the database's clock (`clock`)."""
    with store.sql.transaction():
        store.sql.execute(
            "INSERT INTO runs (id, command, pid, host, started_at, heartbeat_at, status, "
            "settings_json, heartbeat_seconds, done, failed) "
            "VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, 0, 0)",
            (run.id, run.command, run.pid, run.host, run.started_at, run.started_at,
             run.settings_json, run.heartbeat_seconds),
        )  # fmt: skip


def clock(store: QueueStore) -> float:
    """Now, by the database's clock (rpa.queue.clock)."""
    return db_now(store.sql)


def heartbeat(
    store: QueueStore,
    run_id: str,
    held: Sequence[Lease],
    lease_seconds: float,
    now: float | None = None,
    *,
    wait: Wait | None = None,
) -> Beat:
    """Beat the run's heartbeat and renew every lease still in its name (expired or not:
    a run never loses its leases to itself), in one transaction; store what the run waits
    for (`wait`; None clears it). Raises `DeclaredDead` when another run found this one dead
    (its row is no longer `running`).

    Job rows first, then the run's row, as in every transaction of the queue (`jobs.complete`,
    `jobs.fail`, `end_run`, `reclaim_stale`): on PostgreSQL the workers' completions run on other
    connections, and the opposite order deadlocks with them."""
    with store.sql.transaction():
        at = now_of(store.sql, now)
        kept = {
            (r["id"], r["lease_token"])
            for r in store.sql.rows(
                "UPDATE jobs SET lease_expires = ? WHERE lease_owner = ? RETURNING id, lease_token",
                (at + lease_seconds, run_id),
            )
        }
        row = store.sql.one("SELECT status, heartbeat_at FROM runs WHERE id = ?", (run_id,))
        if row is not None and row["status"] != "running":
            raise DeclaredDead(
                f"another run found this run ({run_id}) dead and took its jobs "
                f"(marked {row['status']})"
            )
        # the wait's start by the database's clock: `at` less how long it has lasted here
        what, since = (None, None) if wait is None else (
            wait.what, at - max(0.0, time.monotonic() - wait.began))  # fmt: skip
        store.sql.execute(
            "UPDATE runs SET heartbeat_at = ?, waiting = ?, waiting_since = ? WHERE id = ?",
            (at, what, since, run_id),
        )
        renewed = {lease.job_id for lease in held if (lease.job_id, lease.token) in kept}
        gone = [lease.job_id for lease in held if lease.job_id not in renewed]
        lost = _taken(store, run_id, gone)
    gap = at - float(row["heartbeat_at"]) if row is not None else 0.0
    return Beat(lost, gap, frozenset(renewed))


def _taken(store: QueueStore, run_id: str, ids: list[str]) -> set[str]:
    """Which of `ids` another run holds now. A job whose lease went because this run let go
    of it (completed, failed, given back: its worker is finishing) is not lost, nor is one
    freed but not taken yet (its worker's next fenced write says so)."""
    taken: set[str] = set()
    for part in chunks(ids, 500):
        marks = ", ".join("?" * len(part))
        taken.update(
            r["id"]
            for r in store.sql.rows(
                f"SELECT id FROM jobs WHERE id IN ({marks}) AND lease_owner IS NOT NULL "
                "AND lease_owner != ?",
                (*part, run_id),
            )
        )
    return taken


def end_run(store: QueueStore, run_id: str, status: str, now: float | None = None) -> bool:
    """Record how the run ended; whatever it still holds goes back to the queue. False if
    the run had been found dead by another run (its row says so already, and stays)."""
    with store.sql.transaction():  # job rows first (see `heartbeat`)
        at = now_of(store.sql, now)
        store.sql.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ?",
            (run_id,),
        )
        changed = store.sql.execute(
            "UPDATE runs SET status = ?, ended_at = ?, heartbeat_at = ?, waiting = NULL, "
            "waiting_since = NULL WHERE id = ? AND status = 'running'",
            (status, at, at, run_id),
        )
    return changed == 1


def found_dead(sql: Sql, run_id: str) -> bool:
    """Was run `run_id` found dead by another run (its row no longer `running`)? Such a run
    claims nothing more (the backends' claims ask, in their transaction)."""
    row = sql.one("SELECT status FROM runs WHERE id = ?", (run_id,))
    return row is not None and row["status"] != "running"


def dead_runs(store: QueueStore, now: float | None = None, *, but: str = "") -> list[str]:
    """Runs marked running whose heartbeat stopped (`dead_after` their own interval, by the
    database's clock), other than `but` (a run never finds itself dead). The one definition
    of a dead run."""
    at = now_of(store.sql, now)
    dead = []
    for row in store.sql.rows(
        "SELECT id, heartbeat_at, heartbeat_seconds FROM runs WHERE status = 'running'"
    ):
        interval = row["heartbeat_seconds"] or 5.0  # runs of schema < 5 beat every 5 s
        if row["id"] != but and row["heartbeat_at"] < at - dead_after(interval):
            dead.append(row["id"])
    return dead


def live_runs(store: QueueStore, now: float | None = None) -> set[str]:
    """Runs marked running that are not dead."""
    running = {r["id"] for r in store.sql.rows("SELECT id FROM runs WHERE status = 'running'")}
    return running - set(dead_runs(store, now))


def reclaim_stale(store: QueueStore, now: float | None = None, *, by: str = "") -> Reclaimed:
    """Free the leases of dead runs and every expired lease, but never those of run `by`
    (the reclaiming run: a pause of its own is not its death); mark dead runs crashed."""
    with store.sql.transaction():
        at = now_of(store.sql, now)
        dead = dead_runs(store, at, but=by)
        leases = 0
        # every job row first, then the runs' rows (see `heartbeat`)
        for run_id in dead:
            leases += store.sql.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ?",
                (run_id,),
            )
        expired = store.sql.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL "
            "WHERE lease_owner IS NOT NULL AND lease_owner != ? AND lease_expires < ?",
            (by, at),
        )
        for run_id in dead:
            store.sql.execute(
                "UPDATE runs SET status = 'crashed', ended_at = heartbeat_at, waiting = NULL, "
                "waiting_since = NULL WHERE id = ?",
                (run_id,),
            )
    return Reclaimed(len(dead), leases, expired)


def holders(store: QueueStore, run_id: str, now: float | None = None) -> list[Holder]:
    """The other runs holding leases, and how long since each was heard from."""
    with store.sql.read_transaction():
        at = now_of(store.sql, now)
        rows = store.sql.rows(
            "SELECT j.lease_owner AS owner, count(*) AS n, max(r.heartbeat_at) AS beat "
            "FROM jobs j LEFT JOIN runs r ON r.id = j.lease_owner "
            "WHERE j.lease_owner IS NOT NULL AND j.lease_owner != ? "
            "GROUP BY j.lease_owner ORDER BY j.lease_owner",
            (run_id,),
        )
    return [
        Holder(r["owner"], int(r["n"]), None if r["beat"] is None else max(0.0, at - r["beat"]))
        for r in rows
    ]

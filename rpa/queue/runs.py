"""Runs and their liveness: registering a run, its heartbeat, its end, and reclaiming the
leases of runs that died.

Lock order: every transaction here that writes job rows and run rows takes the job rows
first, then the run's row, as `rpa.queue.jobs.complete` and `fail` do (see `heartbeat`).
`dead_runs` is the one definition of a dead run.
"""

from __future__ import annotations

from collections.abc import Iterable

from rpa.queue.model import Lease, Reclaimed, RunInfo, dead_after, pid_alive, this_host
from rpa.queue.store import QueueStore

__all__ = ["dead_runs", "end_run", "heartbeat", "live_runs", "reclaim_stale", "register_run"]


def register_run(store: QueueStore, run: RunInfo) -> None:
    with store.sql.transaction():
        store.sql.execute(
            "INSERT INTO runs (id, command, pid, host, started_at, heartbeat_at, status, "
            "settings_json, heartbeat_seconds, done, failed) "
            "VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, 0, 0)",
            (run.id, run.command, run.pid, run.host, run.started_at, run.started_at,
             run.settings_json, run.heartbeat_seconds),
        )  # fmt: skip


def heartbeat(
    store: QueueStore, run_id: str, held: Iterable[Lease], lease_seconds: float, now: float
) -> set[str]:
    """Beat the run's heartbeat and renew the leases it holds, in one transaction.
    Returns the ids of `held` jobs whose lease it no longer holds.

    Job rows first, then the run's row, as in every transaction of the queue (`jobs.complete`,
    `jobs.fail`, `end_run`, `reclaim_stale`): on PostgreSQL the workers' completions run on other
    connections, and the opposite order deadlocks with them."""
    with store.sql.transaction():
        kept = {
            (r["id"], r["lease_token"])
            for r in store.sql.rows(
                "UPDATE jobs SET lease_expires = ? WHERE lease_owner = ? "
                "AND lease_expires >= ? RETURNING id, lease_token",
                (now + lease_seconds, run_id, now),
            )
        }
        store.sql.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now, run_id))
    return {lease.job_id for lease in held if (lease.job_id, lease.token) not in kept}


def end_run(store: QueueStore, run_id: str, status: str, now: float) -> None:
    """Record how the run ended; whatever it still holds goes back to the queue."""
    with store.sql.transaction():  # job rows first (see `heartbeat`)
        store.sql.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ?",
            (run_id,),
        )
        store.sql.execute(
            "UPDATE runs SET status = ?, ended_at = ?, heartbeat_at = ? WHERE id = ?",
            (status, now, now, run_id),
        )


def dead_runs(store: QueueStore, now: float) -> list[str]:
    """Runs marked running whose heartbeat stopped (`dead_after` their own interval), or
    whose process on this host is gone. The one definition of a dead run."""
    host = this_host()
    dead = []
    for row in store.sql.rows(
        "SELECT id, pid, host, heartbeat_at, heartbeat_seconds FROM runs WHERE status = 'running'"
    ):
        interval = row["heartbeat_seconds"] or 5.0  # runs of schema < 5 beat every 5 s
        gone = row["host"] == host and not pid_alive(row["pid"])
        if gone or row["heartbeat_at"] < now - dead_after(interval):
            dead.append(row["id"])
    return dead


def live_runs(store: QueueStore, now: float) -> set[str]:
    """Runs marked running that are not dead."""
    running = {r["id"] for r in store.sql.rows("SELECT id FROM runs WHERE status = 'running'")}
    return running - set(dead_runs(store, now))


def reclaim_stale(store: QueueStore, now: float) -> Reclaimed:
    """Free the leases of dead runs and every expired lease; mark dead runs crashed."""
    with store.sql.transaction():
        dead = dead_runs(store, now)
        leases = 0
        # every job row first, then the runs' rows (see `heartbeat`)
        for run_id in dead:
            leases += store.sql.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ?",
                (run_id,),
            )
        expired = store.sql.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL "
            "WHERE lease_owner IS NOT NULL AND lease_expires < ?",
            (now,),
        )
        for run_id in dead:
            store.sql.execute(
                "UPDATE runs SET status = 'crashed', ended_at = heartbeat_at WHERE id = ?",
                (run_id,),
            )
    return Reclaimed(len(dead), leases, expired)

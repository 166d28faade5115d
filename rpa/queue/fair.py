"""A run's share of the end of the queue (rpa.queue.jobs.claim's `share`).

A run claims as many jobs as it has idle workers. When other runs are live on the queue (a
fleet, or the processes of `--processes N`), that would give a small queue, or a big one's
last jobs, all to the first run to ask, while the others' cores stand idle. So near the end,
a run takes no more than brings it to a 1/R share of the jobs claimable or leased, R the live
runs: the others get theirs when they ask, and a run that finished its share takes half of
what is left, and so on, one job at least while it holds none.
"""

from __future__ import annotations

from collections.abc import Sequence

from rpa.queue.clock import now_of
from rpa.queue.store import QueueStore

__all__ = ["fair_limit"]


def fair_limit(
    store: QueueStore,
    limit: int,
    runs: int,
    holding: int,
    now: float | None,
    stages: Sequence[str],
) -> int:
    """How many of `limit` a run holding `holding` leases may claim, one of `runs` (see
    the module's doc). The claimable jobs are counted up to `limit` x `runs` only: when there are
    that many, the share does not bind, and a big queue costs one bounded count more."""
    marks = ", ".join("?" * len(stages))
    bound = limit * runs
    row = store.sql.one(
        "SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE lease_owner IS NULL "
        "  AND stage IN ('queued', 'downloaded', 'extracted') "
        f"  AND stage IN ({marks}) AND next_attempt_at <= ? LIMIT ?) AS claimable",
        (*stages, now_of(store.sql, now), bound),
    )
    claimable = int(row["n"]) if row else 0
    if claimable >= bound:
        return limit
    row = store.sql.one("SELECT count(*) AS n FROM jobs WHERE lease_owner IS NOT NULL")
    leased = int(row["n"]) if row else 0
    fair = -(-(claimable + leased) // runs)  # ceil
    return min(limit, max(fair - holding, 1 if holding == 0 else 0))

"""Hosts, as every process of the queue sees them: cooldowns (Retry-After), circuit breakers,
and the shared request slots that make one politeness budget for all processes (rate slots,
timed by the database's own clock, one clock for every host of a fleet).
"""

from __future__ import annotations

from rpa.queue.model import HELD, HostState
from rpa.queue.store import QueueStore

__all__ = [
    "DOWN",
    "HELD_JOBS",
    "all_hosts",
    "clear_down",
    "close_breaker",
    "database_clock",
    "held",
    "host_state",
    "open_breaker",
    "release_held",
    "release_rate_slot",
    "set_cooldown",
    "take_rate_slot",
]

#: the database's clock, in Unix seconds, by dialect
_NOW = {
    "sqlite": "(julianday('now') - 2440587.5) * 86400.0",
    "postgres": "extract(epoch from clock_timestamp())",
}


def host_state(store: QueueStore, host: str) -> HostState | None:
    row = store.sql.one(
        "SELECT host, cooldown_until, breaker_open, reason FROM hosts WHERE host = ?", (host,)
    )
    if row is None:
        return None
    return HostState(row["host"], row["cooldown_until"], bool(row["breaker_open"]),
                     row["reason"] or "")  # fmt: skip


def set_cooldown(store: QueueStore, host: str, until: float, reason: str, now: float) -> None:
    with store.sql.transaction():
        store.sql.execute(
            "INSERT INTO hosts (host, cooldown_until, breaker_open, reason, updated_at) "
            "VALUES (?, ?, 0, ?, ?) ON CONFLICT (host) DO UPDATE SET "
            "cooldown_until = CASE WHEN coalesce(hosts.cooldown_until, 0) > "
            "excluded.cooldown_until THEN hosts.cooldown_until "
            "ELSE excluded.cooldown_until END, "
            "reason = excluded.reason, updated_at = excluded.updated_at",
            (host, until, reason, now),
        )


#: how the reason of a host stored down starts (an outage: its cooldown lasts until its next
#: probe, so that every process of the queue holds its requests; not a Retry-After)
DOWN = "down since"


def clear_down(store: QueueStore, host: str, now: float) -> None:
    """`host` answers again: its stored outage ends (a Retry-After cooldown is left alone)."""
    with store.sql.transaction():
        store.sql.execute(
            "UPDATE hosts SET cooldown_until = NULL, reason = NULL, updated_at = ? "
            "WHERE host = ? AND reason LIKE ?",
            (now, host, f"{DOWN}%"),
        )


def open_breaker(store: QueueStore, host: str, reason: str, now: float) -> None:
    with store.sql.transaction():
        store.sql.execute(
            "INSERT INTO hosts (host, breaker_open, reason, updated_at) VALUES (?, 1, ?, ?) "
            "ON CONFLICT (host) DO UPDATE SET breaker_open = 1, reason = excluded.reason, "
            "updated_at = excluded.updated_at",
            (host, reason, now),
        )


def close_breaker(store: QueueStore, host: str, now: float) -> None:
    with store.sql.transaction():
        store.sql.execute(
            "UPDATE hosts SET breaker_open = 0, updated_at = ? WHERE host = ?", (now, host)
        )


#: the jobs held for a host that refused us (the terms of the partial index `jobs_retry`)
HELD_JOBS = (
    "next_attempt_at >= ? AND next_attempt_at > 0 AND lease_owner IS NULL "
    "AND stage IN ('queued', 'downloaded', 'extracted')"
)


def held(store: QueueStore) -> int:
    """How many jobs wait for a host that refused us (`HELD`): queued, not failed."""
    row = store.sql.one(f"SELECT count(*) AS n FROM jobs WHERE {HELD_JOBS}", (HELD,))
    return int(row["n"]) if row else 0


def release_held(store: QueueStore, now: float) -> int:
    """A new run asks the hosts that refused us again: their held jobs are claimable now
    (their attempts as they were). How many."""
    with store.sql.transaction():
        return store.sql.execute(
            f"UPDATE jobs SET next_attempt_at = 0, updated_at = ? WHERE {HELD_JOBS}", (now, HELD)
        )


def all_hosts(store: QueueStore) -> list[HostState]:
    """Every host with a stored state (each run reads them at its heartbeat: a cooldown
    or a breaker another process set binds this one too)."""
    return [
        HostState(r["host"], r["cooldown_until"], bool(r["breaker_open"]), r["reason"] or "")
        for r in store.sql.rows(
            "SELECT host, cooldown_until, breaker_open, reason FROM hosts ORDER BY host"
        )
    ]


def database_clock(store: QueueStore) -> float:
    """The database's own clock (Unix seconds): one clock for every host of a fleet."""
    row = store.sql.one(f"SELECT {_NOW[store.sql.dialect]} AS now")
    assert row is not None
    return float(row["now"])


def take_rate_slot(
    store: QueueStore, host: str, count: int, hold: float, holder: str
) -> tuple[int | None, float]:
    """Take one of `host`'s `count` request slots, shared by every process of the queue:
    (slot, 0) if one is free now (held for at most `hold` seconds, in case its holder
    dies before it is answered), else (None, seconds until the first frees)."""
    lock = " FOR UPDATE SKIP LOCKED" if store.sql.dialect == "postgres" else ""
    with store.sql.transaction():
        have = store.sql.one(
            "SELECT count(*) AS n FROM rate_slots WHERE host = ? AND slot < ?", (host, count)
        )
        if have is None or have["n"] < count:
            for slot in range(count):
                store.sql.execute(
                    "INSERT INTO rate_slots (host, slot, free_at) VALUES (?, ?, 0) "
                    "ON CONFLICT (host, slot) DO NOTHING",
                    (host, slot),
                )
        now = database_clock(store)
        row = store.sql.one(
            "SELECT slot, free_at FROM rate_slots WHERE host = ? AND slot < ? "
            f"ORDER BY free_at LIMIT 1{lock}",
            (host, count),
        )
        if row is None:  # every slot is being taken by someone else this instant
            return None, 0.05
        if row["free_at"] > now:
            return None, float(row["free_at"]) - now
        store.sql.execute(
            "UPDATE rate_slots SET free_at = ?, holder = ? WHERE host = ? AND slot = ?",
            (now + hold, holder, host, row["slot"]),
        )
        return int(row["slot"]), 0.0


def release_rate_slot(store: QueueStore, host: str, slot: int, period: float, holder: str) -> None:
    """The request of `slot` got its answer (or failed): the slot is free `period`
    seconds from now, by the database's clock."""
    with store.sql.transaction():
        now = database_clock(store)
        store.sql.execute(
            "UPDATE rate_slots SET free_at = ?, holder = NULL "
            "WHERE host = ? AND slot = ? AND holder = ?",
            (now + period, host, slot, holder),
        )

"""`QueueStore`: every operation on the queue, the one interface above the database.

Every state change of a job is one transaction. A claim takes a lease (owner = run id, a fresh
fence token, an expiry); every later write names the token it was given, so a worker whose
lease expired, or was reclaimed and handed to someone else, cannot overwrite the job: its write
matches no row and it learns it has lost the job.

The store is synchronous and belongs to one thread (`rpa.queue.aio.AsyncQueue` runs it off the
event loop; the CLI's one-shot commands call it directly). The SQL here is written once for
both backends; what differs between SQLite and PostgreSQL (opening, migrations, enqueue,
claim) is the `Backend`'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from rpa.queue import status as status_sql
from rpa.queue.model import (
    ACTIVE_STAGES,
    Attempt,
    Downloaded,
    Extracted,
    Failure,
    HostState,
    Job,
    Lease,
    Reclaimed,
    RunInfo,
    TarMember,
    Totals,
    dead_after,
    pid_alive,
    this_host,
)
from rpa.queue.sql import Params, Row, Sql, chunks

__all__ = ["Backend", "QueueStore"]

_FENCE = "id = ? AND lease_owner = ? AND lease_token = ? AND lease_expires >= ?"
#: the database's clock, in Unix seconds, by dialect
_NOW = {
    "sqlite": "(julianday('now') - 2440587.5) * 86400.0",
    "postgres": "extract(epoch from clock_timestamp())",
}
#: longest error message kept in the queue
MAX_MESSAGE = 2000


class Backend(Protocol):
    """What a database backend provides besides its SQL connection."""

    @property
    def sql(self) -> Sql:
        """The backend's connection."""
        ...

    @property
    def location(self) -> str:
        """Where the queue lives, for messages (a path, or a URL without its password)."""
        ...

    def enqueue(self, keys: Sequence[str], now: float) -> int:
        """Add jobs not already queued; returns how many were new."""
        ...

    def claim(
        self, run_id: str, limit: int, lease_seconds: float, now: float, stages: Sequence[str]
    ) -> list[Row]:
        """Lease up to `limit` claimable jobs in `stages`, the oldest first; the claimed rows
        (with their `seq`)."""
        ...


def _job(row: Row) -> Job:
    return Job(
        id=row["id"],
        token=row["lease_token"],
        stage=row["stage"],
        attempts=row["attempts"],
        crashes=row["crashes"],
        pdf_path=row["pdf_path"],
        pdf_bytes=row["pdf_bytes"],
        pdf_sha256=row["pdf_sha256"],
        extract=json.loads(row["extract_json"]) if row["extract_json"] else None,
        download_seconds=row["download_seconds"],
        extract_seconds=row["extract_seconds"],
        final_url=row["final_url"],
        http_status=row["http_status"],
    )


def result_row(record: dict[str, Any]) -> dict[str, Any]:
    """The `results` columns of a key-outcome record."""
    stamp = record.get("arxiv_stamp")
    pdf = record.get("pdf") or {}
    return {
        "title": record.get("title"),
        "pages": record.get("page_count"),
        "words": record.get("word_count"),
        "references": (record.get("references") or {}).get("count"),
        "arxiv_stamp": json.dumps(stamp) if stamp else None,
        "sha256": pdf.get("sha256"),
        "bytes": pdf.get("bytes"),
        "outcome_json": json.dumps(record, ensure_ascii=False),
    }


class QueueStore:
    """The queue, over one backend connection."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.sql = backend.sql

    @property
    def location(self) -> str:
        return self.backend.location

    def close(self) -> None:
        self.sql.close()

    # ---- jobs ---------------------------------------------------------------------------

    def enqueue(self, keys: Sequence[str], now: float) -> int:
        return self.backend.enqueue(keys, now) if keys else 0

    def claim(
        self,
        run_id: str,
        limit: int,
        lease_seconds: float,
        now: float,
        stages: Sequence[str] | None = None,
    ) -> list[Job]:
        """Lease up to `limit` claimable jobs (FIFO) to `run_id`, optionally only in `stages`."""
        wanted = tuple(stages or ACTIVE_STAGES)
        if not set(wanted) <= set(ACTIVE_STAGES):
            raise ValueError(f"not claimable stages: {wanted}")
        rows = self.backend.claim(run_id, limit, lease_seconds, now, wanted)
        # RETURNING gives no order: FIFO is the claim's order, by seq
        return [_job(r) for r in sorted(rows, key=lambda r: r["seq"])]

    def _fenced(self, run_id: str, lease: Lease, now: float, sets: str, values: Params) -> bool:
        with self.sql.transaction():
            changed = self.sql.execute(
                f"UPDATE jobs SET {sets}, updated_at = ? WHERE {_FENCE}",
                (*values, now, lease.job_id, run_id, lease.token, now),
            )
        return changed == 1

    def checkpoint_download(self, run_id: str, lease: Lease, d: Downloaded, now: float) -> bool:
        """Move a leased job to `downloaded`. False if the lease was lost (the fence)."""
        return self._fenced(
            run_id,
            lease,
            now,
            "stage = 'downloaded', pdf_path = ?, pdf_bytes = ?, pdf_sha256 = ?, final_url = ?, "
            "http_status = ?, download_seconds = ?",
            (d.pdf_path, d.pdf_bytes, d.pdf_sha256, d.final_url, d.http_status,
             d.download_seconds),
        )  # fmt: skip

    def checkpoint_extract(self, run_id: str, lease: Lease, e: Extracted, now: float) -> bool:
        """Move a leased job to `extracted`, storing the extraction's result."""
        return self._fenced(
            run_id,
            lease,
            now,
            "stage = 'extracted', text_path = ?, extract_json = ?, extract_seconds = ?",
            (e.text_path, json.dumps(e.result, ensure_ascii=False), e.extract_seconds),
        )

    def back_to_queued(self, run_id: str, lease: Lease, now: float) -> bool:
        """The checkpointed PDF is gone or changed: the job starts over from its download."""
        return self._fenced(run_id, lease, now, "stage = 'queued', pdf_path = NULL", ())

    def complete(
        self, run_id: str, lease: Lease, record: dict[str, Any], outcome_path: str, now: float
    ) -> bool:
        """Mark done and write the results row, in one transaction, behind the fence."""
        row = result_row(record)
        with self.sql.transaction():
            changed = self.sql.execute(
                "UPDATE jobs SET stage = 'done', outcome_path = ?, lease_owner = NULL, "
                "lease_expires = NULL, error_kind = NULL, error_message = NULL, done_at = ?, "
                f"updated_at = ? WHERE {_FENCE}",
                (outcome_path, now, now, lease.job_id, run_id, lease.token, now),
            )
            if changed != 1:
                return False
            self.sql.execute(
                'INSERT INTO results (id, run_id, title, pages, words, "references", '
                "arxiv_stamp, sha256, bytes, outcome_json, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "run_id = excluded.run_id, title = excluded.title, pages = excluded.pages, "
                'words = excluded.words, "references" = excluded."references", '
                "arxiv_stamp = excluded.arxiv_stamp, sha256 = excluded.sha256, "
                "bytes = excluded.bytes, outcome_json = excluded.outcome_json, "
                "created_at = excluded.created_at",
                (lease.job_id, run_id, row["title"], row["pages"], row["words"],
                 row["references"], row["arxiv_stamp"], row["sha256"], row["bytes"],
                 row["outcome_json"], now),
            )  # fmt: skip
            self.sql.execute("UPDATE runs SET done = done + 1 WHERE id = ?", (run_id,))
        return True

    def fail(self, run_id: str, lease: Lease, failure: Failure, now: float) -> bool:
        """End this attempt in failure: final -> stage `failed` (remembering the stage it
        failed at, for `retry_failed`); else back to the queue until its next attempt time.
        The lease is released either way: no worker holds a job while it waits."""
        final = int(failure.final)
        with self.sql.transaction():
            changed = self.sql.execute(
                "UPDATE jobs SET stage = CASE WHEN ? = 1 THEN 'failed' ELSE stage END, "
                "failed_stage = CASE WHEN ? = 1 THEN stage ELSE NULL END, "
                "attempts = attempts + ?, crashes = crashes + ?, error_kind = ?, "
                "error_message = ?, next_attempt_at = ?, lease_owner = NULL, "
                "lease_expires = NULL, updated_at = ?, "
                f"done_at = CASE WHEN ? = 1 THEN ? ELSE NULL END WHERE {_FENCE}",
                (final, final, int(failure.count_attempt), int(failure.crashed), failure.kind,
                 failure.message[:MAX_MESSAGE], failure.next_attempt_at, now, final, now,
                 lease.job_id, run_id, lease.token, now),
            )  # fmt: skip
            if changed == 1 and failure.final:
                self.sql.execute("UPDATE runs SET failed = failed + 1 WHERE id = ?", (run_id,))
        return changed == 1

    def release(self, run_id: str, leases: Iterable[Lease]) -> int:
        """Give leases back without counting an attempt (shutdown, a host's breaker opened)."""
        count = 0
        with self.sql.transaction():
            for lease in leases:
                count += self.sql.execute(
                    "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL "
                    "WHERE id = ? AND lease_owner = ? AND lease_token = ?",
                    (lease.job_id, run_id, lease.token),
                )
        return count

    def next_due(self, now: float, stages: Sequence[str]) -> float | None:
        """Seconds until some unleased job in `stages` may be claimed; None if there is none."""
        marks = ", ".join("?" * len(stages))
        row = self.sql.one(
            "SELECT min(next_attempt_at) AS due, count(*) AS n FROM jobs "
            f"WHERE stage IN ({marks}) AND lease_owner IS NULL",
            tuple(stages),
        )
        if row is None or row["n"] == 0:
            return None
        return max(0.0, float(row["due"] or 0) - now)

    def retry_failed(self, kinds: Sequence[str] | None, now: float) -> dict[str, int]:
        """Put failed jobs (all, or of `kinds`) back in the queue with fresh attempts, at the
        stage they failed at (a paper that failed extracting is not downloaded again). Their
        attempts stay in `attempts`. Returns how many per kind."""
        where = "stage = 'failed'"
        params: tuple[Any, ...] = ()
        if kinds:
            where += f" AND error_kind IN ({', '.join('?' * len(kinds))})"
            params = tuple(kinds)
        with self.sql.transaction():
            counts = {
                r["kind"] or "unknown": r["n"]
                for r in self.sql.rows(
                    f"SELECT error_kind AS kind, count(*) AS n FROM jobs WHERE {where} "
                    "GROUP BY error_kind",
                    params,
                )
            }
            self.sql.execute(
                "UPDATE jobs SET stage = coalesce(failed_stage, CASE "
                "WHEN extract_json IS NOT NULL THEN 'extracted' "
                "WHEN pdf_path IS NOT NULL THEN 'downloaded' ELSE 'queued' END), "
                "failed_stage = NULL, attempts = 0, crashes = 0, next_attempt_at = 0, "
                f"done_at = NULL, updated_at = ? WHERE {where}",
                (now, *params),
            )
        return counts

    # ---- runs ---------------------------------------------------------------------------

    def register_run(self, run: RunInfo) -> None:
        with self.sql.transaction():
            self.sql.execute(
                "INSERT INTO runs (id, command, pid, host, started_at, heartbeat_at, status, "
                "settings_json, heartbeat_seconds, done, failed) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, 0, 0)",
                (run.id, run.command, run.pid, run.host, run.started_at, run.started_at,
                 run.settings_json, run.heartbeat_seconds),
            )  # fmt: skip

    def heartbeat(
        self, run_id: str, held: Iterable[Lease], lease_seconds: float, now: float
    ) -> set[str]:
        """Beat the run's heartbeat and renew the leases it holds, in one transaction.
        Returns the ids of `held` jobs whose lease it no longer holds.

        Job rows first, then the run's row, as in every transaction here (`complete`, `fail`,
        `end_run`, `reclaim_stale`): on PostgreSQL the workers' completions run on other
        connections, and the opposite order deadlocks with them."""
        with self.sql.transaction():
            kept = {
                (r["id"], r["lease_token"])
                for r in self.sql.rows(
                    "UPDATE jobs SET lease_expires = ? WHERE lease_owner = ? "
                    "AND lease_expires >= ? RETURNING id, lease_token",
                    (now + lease_seconds, run_id, now),
                )
            }
            self.sql.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now, run_id))
        return {lease.job_id for lease in held if (lease.job_id, lease.token) not in kept}

    def end_run(self, run_id: str, status: str, now: float) -> None:
        """Record how the run ended; whatever it still holds goes back to the queue."""
        with self.sql.transaction():  # job rows first (see `heartbeat`)
            self.sql.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ?",
                (run_id,),
            )
            self.sql.execute(
                "UPDATE runs SET status = ?, ended_at = ?, heartbeat_at = ? WHERE id = ?",
                (status, now, now, run_id),
            )

    def dead_runs(self, now: float) -> list[str]:
        """Runs marked running whose heartbeat stopped (`dead_after` their own interval), or
        whose process on this host is gone. The one definition of a dead run."""
        host = this_host()
        dead = []
        for row in self.sql.rows(
            "SELECT id, pid, host, heartbeat_at, heartbeat_seconds FROM runs "
            "WHERE status = 'running'"
        ):
            interval = row["heartbeat_seconds"] or 5.0  # runs of schema < 5 beat every 5 s
            gone = row["host"] == host and not pid_alive(row["pid"])
            if gone or row["heartbeat_at"] < now - dead_after(interval):
                dead.append(row["id"])
        return dead

    def live_runs(self, now: float) -> set[str]:
        """Runs marked running that are not dead."""
        running = {r["id"] for r in self.sql.rows("SELECT id FROM runs WHERE status = 'running'")}
        return running - set(self.dead_runs(now))

    def reclaim_stale(self, now: float) -> Reclaimed:
        """Free the leases of dead runs and every expired lease; mark dead runs crashed."""
        with self.sql.transaction():
            dead = self.dead_runs(now)
            leases = 0
            # every job row first, then the runs' rows (see `heartbeat`)
            for run_id in dead:
                leases += self.sql.execute(
                    "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL "
                    "WHERE lease_owner = ?",
                    (run_id,),
                )
            expired = self.sql.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL "
                "WHERE lease_owner IS NOT NULL AND lease_expires < ?",
                (now,),
            )
            for run_id in dead:
                self.sql.execute(
                    "UPDATE runs SET status = 'crashed', ended_at = heartbeat_at WHERE id = ?",
                    (run_id,),
                )
        return Reclaimed(len(dead), leases, expired)

    def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        if not attempts:
            return
        with self.sql.transaction():
            self.sql.executemany(
                "INSERT INTO attempts (job_id, run_id, stage, started_at, gate_wait, duration, "
                "outcome, error_kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (a.job_id, a.run_id, a.stage, a.started_at, a.gate_wait, a.duration,
                     a.outcome, a.error_kind)
                    for a in attempts
                ],
            )  # fmt: skip

    # ---- hosts --------------------------------------------------------------------------

    def host_state(self, host: str) -> HostState | None:
        row = self.sql.one(
            "SELECT host, cooldown_until, breaker_open, reason FROM hosts WHERE host = ?", (host,)
        )
        if row is None:
            return None
        return HostState(row["host"], row["cooldown_until"], bool(row["breaker_open"]),
                         row["reason"] or "")  # fmt: skip

    def set_cooldown(self, host: str, until: float, reason: str, now: float) -> None:
        with self.sql.transaction():
            self.sql.execute(
                "INSERT INTO hosts (host, cooldown_until, breaker_open, reason, updated_at) "
                "VALUES (?, ?, 0, ?, ?) ON CONFLICT (host) DO UPDATE SET "
                "cooldown_until = CASE WHEN coalesce(hosts.cooldown_until, 0) > "
                "excluded.cooldown_until THEN hosts.cooldown_until "
                "ELSE excluded.cooldown_until END, "
                "reason = excluded.reason, updated_at = excluded.updated_at",
                (host, until, reason, now),
            )

    def open_breaker(self, host: str, reason: str, now: float) -> None:
        with self.sql.transaction():
            self.sql.execute(
                "INSERT INTO hosts (host, breaker_open, reason, updated_at) VALUES (?, 1, ?, ?) "
                "ON CONFLICT (host) DO UPDATE SET breaker_open = 1, reason = excluded.reason, "
                "updated_at = excluded.updated_at",
                (host, reason, now),
            )

    def close_breaker(self, host: str, now: float) -> None:
        with self.sql.transaction():
            self.sql.execute(
                "UPDATE hosts SET breaker_open = 0, updated_at = ? WHERE host = ?", (now, host)
            )

    def all_hosts(self) -> list[HostState]:
        """Every host with a stored state (each run reads them at its heartbeat: a cooldown
        or a breaker another process set binds this one too)."""
        return [
            HostState(r["host"], r["cooldown_until"], bool(r["breaker_open"]), r["reason"] or "")
            for r in self.sql.rows(
                "SELECT host, cooldown_until, breaker_open, reason FROM hosts ORDER BY host"
            )
        ]

    # ---- one politeness budget for all processes ----------------------------------------

    def _clock(self) -> float:
        """The database's own clock (Unix seconds): one clock for every host of a fleet."""
        row = self.sql.one(f"SELECT {_NOW[self.sql.dialect]} AS now")
        assert row is not None
        return float(row["now"])

    def take_rate_slot(
        self, host: str, count: int, hold: float, holder: str
    ) -> tuple[int | None, float]:
        """Take one of `host`'s `count` request slots, shared by every process of the queue:
        (slot, 0) if one is free now (held for at most `hold` seconds, in case its holder
        dies before it is answered), else (None, seconds until the first frees)."""
        lock = " FOR UPDATE SKIP LOCKED" if self.sql.dialect == "postgres" else ""
        with self.sql.transaction():
            have = self.sql.one(
                "SELECT count(*) AS n FROM rate_slots WHERE host = ? AND slot < ?", (host, count)
            )
            if have is None or have["n"] < count:
                for slot in range(count):
                    self.sql.execute(
                        "INSERT INTO rate_slots (host, slot, free_at) VALUES (?, ?, 0) "
                        "ON CONFLICT (host, slot) DO NOTHING",
                        (host, slot),
                    )
            now = self._clock()
            row = self.sql.one(
                "SELECT slot, free_at FROM rate_slots WHERE host = ? AND slot < ? "
                f"ORDER BY free_at LIMIT 1{lock}",
                (host, count),
            )
            if row is None:  # every slot is being taken by someone else this instant
                return None, 0.05
            if row["free_at"] > now:
                return None, float(row["free_at"]) - now
            self.sql.execute(
                "UPDATE rate_slots SET free_at = ?, holder = ? WHERE host = ? AND slot = ?",
                (now + hold, holder, host, row["slot"]),
            )
            return int(row["slot"]), 0.0

    def release_rate_slot(self, host: str, slot: int, period: float, holder: str) -> None:
        """The request of `slot` got its answer (or failed): the slot is free `period`
        seconds from now, by the database's clock."""
        with self.sql.transaction():
            now = self._clock()
            self.sql.execute(
                "UPDATE rate_slots SET free_at = ?, holder = NULL "
                "WHERE host = ? AND slot = ? AND holder = ?",
                (now + period, host, slot, holder),
            )

    # ---- bulk tars ----------------------------------------------------------------------

    def tar_indexed(self, path: str) -> tuple[int, float] | None:
        """(size, mtime) of a tar when it was indexed, None if it never was."""
        row = self.sql.one("SELECT size, mtime FROM tars WHERE path = ?", (path,))
        return None if row is None else (int(row["size"]), float(row["mtime"]))

    def index_tar(
        self, path: str, size: int, mtime: float, members: Sequence[TarMember], error: str | None,
        now: float,
    ) -> None:  # fmt: skip
        """Record a tar's paper members (a paper in two tars, or in two versions: the highest
        version's member wins)."""
        with self.sql.transaction():
            self.sql.execute("DELETE FROM tar_members WHERE tar = ?", (path,))
            self.sql.executemany(
                "INSERT INTO tar_members (base, version, tar, member, data_offset, size) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (base) DO UPDATE SET "
                "version = excluded.version, tar = excluded.tar, member = excluded.member, "
                "data_offset = excluded.data_offset, size = excluded.size "
                "WHERE coalesce(excluded.version, 0) >= coalesce(tar_members.version, 0)",
                [(m.base, m.version, m.tar, m.name, m.offset, m.size) for m in members],
            )
            self.sql.execute(
                "INSERT INTO tars (path, size, mtime, members, error, indexed_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
                "size = excluded.size, mtime = excluded.mtime, members = excluded.members, "
                "error = excluded.error, indexed_at = excluded.indexed_at",
                (path, size, mtime, len(members), error, now),
            )

    def tar_member(self, base: str) -> TarMember | None:
        row = self.sql.one(
            "SELECT base, version, tar, member, data_offset, size FROM tar_members WHERE base = ?",
            (base,),
        )
        if row is None:
            return None
        return TarMember(row["base"], row["version"], row["tar"], row["member"],
                      int(row["data_offset"]), int(row["size"]))  # fmt: skip

    def tar_keys(self, after: str, limit: int) -> list[str]:
        """Queue keys of indexed members (ID, with the version a member name gave), in order."""
        return [
            r["base"] + (f"v{r['version']}" if r["version"] else "")
            for r in self.sql.rows(
                "SELECT base, version FROM tar_members WHERE base > ? ORDER BY base LIMIT ?",
                (after, limit),
            )
        ]

    def tar_keys_for(self, bases: Sequence[str]) -> dict[str, str]:
        """base -> the queue key of its member (with the version its name gave), for the
        bases the tars hold."""
        found: dict[str, str] = {}
        for part in chunks(list(bases), 500):
            marks = ", ".join("?" * len(part))
            for r in self.sql.rows(
                f"SELECT base, version FROM tar_members WHERE base IN ({marks})", tuple(part)
            ):
                found[r["base"]] = r["base"] + (f"v{r['version']}" if r["version"] else "")
        return found

    # ---- metadata -----------------------------------------------------------------------

    def metadata_for(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored metadata (as JSON-able dicts) of the papers `ids` (without versions)."""
        found: dict[str, dict[str, Any]] = {}
        for part in chunks(list(ids), 500):
            marks = ", ".join("?" * len(part))
            for r in self.sql.rows(
                f"SELECT id, json FROM metadata WHERE id IN ({marks})", tuple(part)
            ):
                found[r["id"]] = json.loads(r["json"])
        return found

    def store_metadata(self, papers: Sequence[dict[str, Any]], now: float) -> None:
        """Keep papers' metadata (each with its `id`, `status` and `source`)."""
        if not papers:
            return
        with self.sql.transaction():
            self.sql.executemany(
                "INSERT INTO metadata (id, status, source, json, fetched_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
                "source = excluded.source, json = excluded.json, "
                "fetched_at = excluded.fetched_at",
                [(p["id"], p["status"], p["source"], json.dumps(p, ensure_ascii=False), now)
                 for p in papers],
            )  # fmt: skip

    def job_ids(self, after: str, limit: int) -> list[str]:
        """Every job's id, in order, a page at a time."""
        return [
            r["id"]
            for r in self.sql.rows(
                "SELECT id FROM jobs WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            )
        ]

    # ---- the queue's settings -----------------------------------------------------------

    def queue_settings(self) -> dict[str, Any]:
        """The stored settings that belong to the queue (see model.QUEUE_SETTINGS)."""
        return {
            r["key"]: json.loads(r["value"])
            for r in self.sql.rows("SELECT key, value FROM queue_settings ORDER BY key")
        }

    def store_queue_settings(self, values: dict[str, Any], run_id: str, now: float) -> None:
        """Store `values`; a change of a stored value is recorded in `settings_changes`."""
        with self.sql.transaction():
            old = self.queue_settings()
            for key, value in values.items():
                text = json.dumps(value)
                if key in old and json.dumps(old[key]) == text:
                    continue
                if key in old:
                    self.sql.execute(
                        "INSERT INTO settings_changes (changed_at, key, old_value, new_value, "
                        "run_id) VALUES (?, ?, ?, ?, ?)",
                        (now, key, json.dumps(old[key]), text, run_id),
                    )
                self.sql.execute(
                    "INSERT INTO queue_settings (key, value, set_at, set_by) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                    "set_at = excluded.set_at, set_by = excluded.set_by",
                    (key, text, now, run_id),
                )

    def settings_changes(self, limit: int = 10) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self.sql.rows(
                "SELECT changed_at, key, old_value, new_value, run_id FROM settings_changes "
                "ORDER BY changed_at DESC LIMIT ?",
                (limit,),
            )
        ]

    # ---- reading ------------------------------------------------------------------------

    def totals(self, now: float) -> Totals:
        """Queue-wide counts, from one snapshot."""
        with self.sql.snapshot():
            return status_sql.totals(status_sql.stage_counts(self.sql, now))

    def end_of_run_totals(self, run_id: str, now: float) -> tuple[Totals, int]:
        """The queue's totals and the jobs under another live run's lease, from one snapshot
        (read apart, a job another run finished in between would count as left over)."""
        with self.sql.snapshot():
            totals = status_sql.totals(status_sql.stage_counts(self.sql, now))
            row = self.sql.one(
                "SELECT count(*) AS n FROM jobs WHERE lease_owner IS NOT NULL "
                "AND lease_owner != ? AND lease_expires >= ?",
                (run_id, now),
            )
        return totals, int(row["n"]) if row else 0

    def status(self, now: float) -> dict[str, Any]:
        """Everything `rpa status` shows (schema: README), from one snapshot."""
        with self.sql.snapshot():
            return status_sql.collect(self, now)

    def stage_timings(
        self, *, since: float | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        with self.sql.snapshot():
            return status_sql.stage_timings(self.sql, since=since, run_id=run_id)

    def results_page(self, after: str, limit: int) -> list[tuple[str, str]]:
        """(id, outcome JSON) of done papers with id > `after`, in id order."""
        return [
            (r["id"], r["outcome_json"])
            for r in self.sql.rows(
                "SELECT id, outcome_json FROM results WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            )
        ]

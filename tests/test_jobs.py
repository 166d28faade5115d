"""Leasing: two claimers never hold one job, expired/dead leases are reclaimed, fencing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import clean_env

from rpa import jobs
from rpa.db import SCHEMA_VERSION, connect

NOW = 1_000_000.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "q.db"
    conn = connect(path)
    jobs.enqueue(conn, [f"2301.{i:05d}" for i in range(1, 201)], NOW)
    conn.close()
    yield path


def test_enqueue_is_idempotent(db: Path) -> None:
    conn = connect(db)
    assert jobs.enqueue(conn, ["2301.00001", "2301.00002", "2301.99999"], NOW) == 1
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 201
    # FIFO order is kept across batches
    first = jobs.claim(conn, "r", 1, 60, NOW)
    assert first[0].id == "2301.00001"


def test_two_claimers_in_threads_never_share_a_job(db: Path) -> None:
    """Real concurrency: four connections claim from one file at once."""
    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)
    conn = connect(db)
    jobs.enqueue(conn, [f"2302.{i:05d}" for i in range(1, 3801)], NOW)  # 4,000 in all
    conn.close()

    def claimer(name: str) -> None:
        conn = connect(db)
        got: list[str] = []
        barrier.wait()
        while batch := jobs.claim(conn, name, 3, 60, NOW):
            got.extend(j.id for j in batch)
        claimed[name] = got
        conn.close()

    threads = [threading.Thread(target=claimer, args=(f"run{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [job for got in claimed.values() for job in got]
    assert len(everything) == 4000
    assert len(set(everything)) == 4000
    # the claimers really did interleave (otherwise this test proves nothing)
    assert sum(1 for got in claimed.values() if got) >= 2


def test_fence_rejects_a_worker_whose_lease_was_reclaimed(db: Path) -> None:
    conn = connect(db)
    [old] = jobs.claim(conn, "run-a", 1, 10, NOW)
    # run-a goes quiet; its lease expires and is reclaimed, then run-b claims the job
    assert jobs.reclaim_stale(conn, NOW + 11, dead_after=1e9)["expired_leases"] == 1
    [new] = jobs.claim(conn, "run-b", 1, 10, NOW + 11)
    assert new.id == old.id and new.token == old.token + 1
    # the old holder's late writes match nothing
    assert not jobs.checkpoint(
        conn, old.id, old.token, "run-a", "downloaded", {"pdf_bytes": 1}, NOW + 12
    )
    assert not jobs.complete(conn, old.id, old.token, "run-a", _result(), "x", NOW + 12)
    assert not jobs.set_outcome(
        conn, old.id, old.token, "run-a", kind="timeout", message="", now=NOW + 12, final=True
    )
    # the new holder's do
    assert jobs.checkpoint(
        conn, new.id, new.token, "run-b", "downloaded", {"pdf_bytes": 1}, NOW + 12
    )
    assert jobs.complete(conn, new.id, new.token, "run-b", _result(), "x", NOW + 12)
    row = conn.execute("SELECT stage, lease_owner FROM jobs WHERE id = ?", (old.id,)).fetchone()
    assert tuple(row) == ("done", None)
    assert conn.execute("SELECT count(*) FROM results").fetchone()[0] == 1


def test_expired_lease_cannot_write_even_if_nobody_reclaimed_it(db: Path) -> None:
    conn = connect(db)
    [job] = jobs.claim(conn, "run-a", 1, 10, NOW)
    assert not jobs.checkpoint(conn, job.id, job.token, "run-a", "downloaded", {}, NOW + 10.5)


def test_renew_keeps_the_lease_and_reports_lost_ones(db: Path) -> None:
    conn = connect(db)
    a, b = jobs.claim(conn, "run-a", 2, 10, NOW)
    jobs.reclaim_stale(conn, NOW + 11, dead_after=1e9)  # both expire
    jobs.claim(conn, "run-b", 1, 10, NOW + 11)  # b... actually a is re-claimed first (FIFO)
    lost = jobs.renew(conn, "run-a", [(a.id, a.token), (b.id, b.token)], 10, NOW + 11)
    assert lost == {a.id, b.id}
    c, d = jobs.claim(conn, "run-c", 2, 10, NOW + 20)
    assert jobs.renew(conn, "run-c", [(c.id, c.token), (d.id, d.token)], 10, NOW + 25) == set()
    # renewed: still writable after the original expiry
    assert jobs.checkpoint(conn, c.id, c.token, "run-c", "downloaded", {}, NOW + 33)


def test_dead_run_leases_are_reclaimed_at_once(db: Path) -> None:
    conn = connect(db)
    jobs.register_run(conn, "dead-run", "run", "{}", NOW)
    # a run on this host whose process is gone: pid 2**22+1 is above Linux's pid_max default
    conn.execute("UPDATE runs SET pid = 4194305 WHERE id = 'dead-run'")
    jobs.claim(conn, "dead-run", 5, 3600, NOW)
    result = jobs.reclaim_stale(conn, NOW + 1, dead_after=1e9)
    assert result == {"dead_runs": 1, "dead_leases": 5, "expired_leases": 0}
    status = conn.execute("SELECT status FROM runs WHERE id = 'dead-run'").fetchone()[0]
    assert status == "crashed"
    assert len(jobs.claim(conn, "next", 300, 60, NOW + 1)) == 200


def test_retry_is_not_claimable_before_its_time_and_counts_attempts(db: Path) -> None:
    conn = connect(db)
    [job] = jobs.claim(conn, "r", 1, 60, NOW)
    assert jobs.set_outcome(
        conn,
        job.id,
        job.token,
        "r",
        kind="timeout",
        message="slow",
        now=NOW,
        final=False,
        next_attempt_at=NOW + 30,
    )
    ids_before = {j.id for j in jobs.claim(conn, "r", 500, 60, NOW + 29)}
    assert job.id not in ids_before
    [again] = jobs.claim(conn, "r", 1, 60, NOW + 31)
    assert again.id == job.id and again.attempts == 1


def test_failed_is_final(db: Path) -> None:
    conn = connect(db)
    [job] = jobs.claim(conn, "r", 1, 60, NOW)
    jobs.set_outcome(
        conn, job.id, job.token, "r", kind="not_pdf", message="html", now=NOW, final=True
    )
    row = conn.execute("SELECT stage, error_kind FROM jobs WHERE id = ?", (job.id,)).fetchone()
    assert tuple(row) == ("failed", "not_pdf")
    assert job.id not in {j.id for j in jobs.claim(conn, "r", 500, 60, NOW + 1e6)}


def _result() -> dict[str, object]:
    return {
        "title": "t",
        "pages": 1,
        "words": 2,
        "references": 0,
        "arxiv_stamp": None,
        "sha256": "0" * 64,
        "bytes": 10,
        "outcome_json": "{}",
    }


def test_schema_is_versioned(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    connect(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] >= 1
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _counts(conn: sqlite3.Connection) -> tuple[dict[str, int], dict[str, int]]:
    kept = {r[0]: r[1] for r in conn.execute("SELECT stage, n FROM stage_counts") if r[1]}
    real = dict(conn.execute("SELECT stage, count(*) FROM jobs GROUP BY stage").fetchall())
    return kept, real


def test_stage_counts_stay_exact_through_every_transition(db: Path) -> None:
    conn = connect(db)
    assert _counts(conn) == ({"queued": 200}, {"queued": 200})
    a, b, c = jobs.claim(conn, "r", 3, 60, NOW)
    assert jobs.checkpoint(conn, a.id, a.token, "r", "downloaded", {"pdf_bytes": 1}, NOW)
    assert jobs.complete(conn, b.id, b.token, "r", _result(), "x.json", NOW)
    assert jobs.set_outcome(conn, c.id, c.token, "r", kind="k", message="m", now=NOW, final=True)
    # a fenced-off write changes nothing, counts included
    assert not jobs.complete(conn, b.id, b.token, "r", _result(), "x.json", NOW)
    assert jobs.enqueue(conn, ["2301.00001", "2302.00001"], NOW) == 1
    kept, real = _counts(conn)
    assert kept == real == {"queued": 198, "downloaded": 1, "done": 1, "failed": 1}
    conn.execute("DELETE FROM jobs WHERE stage = 'failed'")
    assert _counts(conn)[0] == _counts(conn)[1]


def schema_2_database(path: Path) -> None:
    """A database as the previous rpa made it: schema 2, seq with gaps, no stage_counts."""
    from sqlite_utils import Database

    from rpa.db import MIGRATIONS

    raw = sqlite3.connect(path)
    raw.isolation_level = None
    for migrate in MIGRATIONS[:2]:
        migrate(Database(raw))
    raw.execute("PRAGMA user_version = 2")
    raw.executemany(
        "INSERT INTO jobs (id, seq, stage, created_at, updated_at) VALUES (?, ?, ?, 0, 0)",
        [("2301.00003", 1, "done"), ("2301.00001", 7, "queued"), ("2301.00002", 9, "queued")],
    )
    raw.close()


def test_migration_3_keeps_fifo_order_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    schema_2_database(path)
    conn = connect(path)
    assert _counts(conn) == ({"queued": 2, "done": 1}, {"queued": 2, "done": 1})
    assert jobs.enqueue(conn, ["2301.00004"], NOW) == 1
    order = [j.id for j in jobs.claim(conn, "r", 10, 60, NOW)]
    assert order == ["2301.00001", "2301.00002", "2301.00004"]
    seqs = conn.execute("SELECT count(*) FROM jobs WHERE seq != rowid").fetchone()[0]
    assert seqs == 0


def test_rpa_migrate_upgrades_an_old_database_that_status_refuses(tmp_path: Path) -> None:
    def rpa(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "rpa", *args, "--db", str(path)]
        return subprocess.run(command, capture_output=True, text=True, env=clean_env())

    path = tmp_path / "old.db"
    schema_2_database(path)
    refused = rpa("status")
    assert refused.returncode == 2 and "`rpa migrate` upgrades it" in refused.stderr
    migrated = rpa("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == f"{path}: schema 2 -> {SCHEMA_VERSION}"
    status = rpa("status", "--json")
    assert status.returncode == 0, status.stderr
    totals = json.loads(status.stdout)["totals"]
    assert (totals["queued"], totals["done"], totals["total"]) == (2, 1, 3)
    again = rpa("migrate")
    assert again.stdout.strip() == f"{path}: schema {SCHEMA_VERSION}, already current"
    path = tmp_path / "missing.db"
    missing = rpa("migrate")
    assert missing.returncode == 2 and "no queue database" in missing.stderr
    assert not path.exists()  # never created by a migrate

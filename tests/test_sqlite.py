"""The SQLite backend: WAL, migrations of databases older rpas made, `rpa migrate`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import clean_env

from rpa.queue import catalog, jobs, open_store, reads, retry
from rpa.queue.sqlite import SCHEMA_VERSION, connect
from rpa.queue.sqlite_schema import MIGRATIONS

NOW = 1_000_000.0


def test_schema_is_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    connect(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def old_database(path: Path, version: int = 2, out: str = "/data/old-out") -> None:
    """A database as an older rpa made it: schema `version`, seq with gaps; its last run
    had `out` (as typed: older rpas kept it relative)."""
    from sqlite_utils import Database

    raw = sqlite3.connect(path)
    raw.isolation_level = None
    for migrate in MIGRATIONS[:version]:
        migrate(Database(raw))
    raw.execute(f"PRAGMA user_version = {version}")
    raw.executemany(
        "INSERT INTO jobs (id, seq, stage, created_at, updated_at, pdf_path) "
        "VALUES (?, ?, ?, 0, 0, ?)",
        [("2301.00003", 1, "done", "/a.pdf"), ("2301.00001", 7, "queued", None),
         ("2301.00002", 9, "queued", None), ("2301.00005", 11, "failed", "/b.pdf")],
    )  # fmt: skip
    if version >= 3:
        raw.execute("UPDATE stage_counts SET n = 2 WHERE stage = 'queued'")
        raw.execute("UPDATE stage_counts SET n = 1 WHERE stage IN ('done', 'failed')")
    settings = {"out": out, "pdf_url": "http://127.0.0.1:9/pdf/{id}", "workers": 7}
    raw.execute(
        "INSERT INTO runs (id, command, pid, host, started_at, heartbeat_at, status, "
        "settings_json) VALUES ('old-run', 'run', 1, 'h', 5, 5, 'finished', ?)",
        (json.dumps(settings),),
    )
    raw.close()


def test_migrations_keep_fifo_order_counts_and_the_old_runs_settings(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_database(path)
    store = open_store(path)
    totals = reads.totals(store, NOW)
    assert (totals.queued, totals.done, totals.failed) == (2, 1, 1)
    assert store.enqueue(["2301.00004"], NOW) == 1
    assert [j.id for j in jobs.claim(store, "r", 10, 60, NOW)] == [
        "2301.00001",
        "2301.00002",
        "2301.00004",
    ]
    row = store.sql.one("SELECT count(*) AS n FROM jobs WHERE seq != rowid")
    assert row is not None and row["n"] == 0
    # schema 5: the queue remembers where its work came from and went to
    assert catalog.queue_settings(store) == {
        "out": "/data/old-out",
        "pdf_url": "http://127.0.0.1:9/pdf/{id}",
    }
    # ... and the failed job the stage it failed at: a retry keeps its PDF
    assert retry.retry_failed(store, None, NOW) == {"unknown": 1}
    [job] = jobs.claim(store, "r", 10, 60, NOW)
    assert (job.id, job.stage) == ("2301.00005", "downloaded")
    store.close()


def rpa(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "rpa", *args, "--db", str(path)]
    return subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=60)


def test_rpa_migrate_upgrades_an_old_database_that_status_refuses(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_database(path)
    refused = rpa(path, "status")
    assert refused.returncode == 2 and "`rpa migrate` upgrades it" in refused.stderr
    migrated = rpa(path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == f"{path}: schema 2 -> {SCHEMA_VERSION}"
    status = rpa(path, "status", "--json")
    assert status.returncode == 0, status.stderr
    totals = json.loads(status.stdout)["totals"]
    assert (totals["queued"], totals["done"], totals["total"]) == (2, 1, 4)
    again = rpa(path, "migrate")
    assert again.stdout.strip() == f"{path}: schema {SCHEMA_VERSION}, already current"
    path = tmp_path / "missing.db"
    missing = rpa(path, "migrate")
    assert missing.returncode == 2 and "no queue database" in missing.stderr
    assert not path.exists()  # never created by a migrate


def test_the_failed_papers_attempts_are_looked_up_by_job_not_read_whole(tmp_path: Path) -> None:
    """`rpa failures` names the stage each paper of a page failed in from its attempts rows
    (rpa.queue.status._failed_in): by the index of schema 12, not a scan of every attempt
    (3 million rows in a big queue: about a second a page of a thousand failed papers)."""
    path = tmp_path / "q.db"
    connect(path).close()
    raw = sqlite3.connect(path)
    plan = raw.execute(
        "EXPLAIN QUERY PLAN SELECT job_id, stage, outcome, started_at FROM attempts "
        "WHERE job_id IN (?, ?)",
        ("2401.00001", "2401.00002"),
    ).fetchall()
    assert any("USING INDEX attempts_job" in row[-1] for row in plan), plan


def _failed_queue(path: Path, n: int) -> None:
    store = open_store(path)
    store.enqueue([f"2401.{i:05d}" for i in range(1, n + 1)], NOW)
    store.close()
    raw = sqlite3.connect(path)
    raw.execute(
        "UPDATE jobs SET stage = 'failed', error_kind = 'not_found', updated_at = ?", (NOW,)
    )
    raw.commit()
    raw.close()


def test_rpa_failures_pages_fit_an_older_sqlites_999_variables(tmp_path: Path) -> None:
    """A page of a thousand failed papers is looked up in pieces (SQLite before 3.32, as
    Ubuntu 20.04 and RHEL 8 ship it, takes 999 variables a statement; before: `too many SQL
    variables` once 1,000 papers had failed)."""
    from rpa.queue.status import failed_papers

    path = tmp_path / "q.db"
    _failed_queue(path, 1200)
    store = open_store(path, readonly=True)
    try:
        store.sql.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # type: ignore[attr-defined]
        assert sum(1 for _ in failed_papers(store)) == 1200
    finally:
        store.close()


def test_rpa_failures_names_no_stage_from_an_earlier_attempts_error(tmp_path: Path) -> None:
    """The attempt that failed the paper for good lost (a run killed with -9 before its
    heartbeat wrote it): an earlier attempt's error of another kind is not its stage (before:
    a 404 said 'at extract', from an earlier extraction's invalid_pdf)."""
    from rpa.queue.model import Attempt
    from rpa.queue.status import failed_papers

    path = tmp_path / "q.db"
    _failed_queue(path, 2)
    store = open_store(path)
    jobs.record_attempts(store, [
        Attempt("2401.00001", "run-1", "extract", NOW - 9, 0, 1, "error", "invalid_pdf"),
        Attempt("2401.00002", "run-1", "download", NOW - 9, 0, 1, "error", "not_found"),
    ])  # fmt: skip
    store.close()
    store = open_store(path, readonly=True)
    try:
        listed = {p["id"]: p["stage"] for p in failed_papers(store)}
    finally:
        store.close()
    assert listed == {"2401.00001": None, "2401.00002": "download"}

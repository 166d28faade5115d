"""The PostgreSQL queue's schema, numbered like SQLite's (rpa.queue.sqlite_schema).

A PostgreSQL queue starts at schema 5, the first that had one; later schema changes get the
same number in both backends. The version lives in `rpa_meta`. Migrations run in one
transaction each, under an advisory lock, so processes on many hosts starting against a new
database at once apply each migration once.

Per-stage counts are kept exact by a statement trigger in the writing transaction, like
SQLite's row triggers, but spread over 16 rows a stage (a shard per server process), so that
many processes moving jobs at once do not queue up behind one counter row; `rpa status` adds
them up.
"""

from __future__ import annotations

from rpa.queue.model import STAGE_RESULTS

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SHARDS"]

#: counter rows per stage
SHARDS = 16

_SCHEMA_5 = [
    "CREATE TABLE rpa_meta (key text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE jobs (
        id text PRIMARY KEY,
        seq bigserial NOT NULL,
        stage text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        crashes integer NOT NULL DEFAULT 0,
        lease_owner text,
        lease_token bigint NOT NULL DEFAULT 0,
        lease_expires double precision,
        next_attempt_at double precision NOT NULL DEFAULT 0,
        error_kind text,
        error_message text,
        pdf_path text,
        pdf_bytes bigint,
        pdf_sha256 text,
        final_url text,
        http_status integer,
        download_seconds double precision,
        text_path text,
        extract_json text,
        extract_seconds double precision,
        outcome_path text,
        created_at double precision,
        updated_at double precision,
        done_at double precision,
        failed_stage text
    )""",
    "CREATE INDEX jobs_claimable ON jobs (seq) "
    "WHERE lease_owner IS NULL AND stage IN ('queued', 'downloaded', 'extracted')",
    "CREATE INDEX jobs_leased ON jobs (lease_owner) WHERE lease_owner IS NOT NULL",
    "CREATE INDEX jobs_retry ON jobs (next_attempt_at) WHERE next_attempt_at > 0 "
    "AND lease_owner IS NULL AND stage IN ('queued', 'downloaded', 'extracted')",
    "CREATE INDEX jobs_failed ON jobs (error_kind) WHERE stage = 'failed'",
    "CREATE INDEX jobs_done ON jobs (done_at) WHERE stage = 'done'",
    """CREATE TABLE runs (
        id text PRIMARY KEY,
        command text,
        pid integer,
        host text,
        started_at double precision,
        heartbeat_at double precision,
        ended_at double precision,
        status text,
        done integer NOT NULL DEFAULT 0,
        failed integer NOT NULL DEFAULT 0,
        settings_json text,
        heartbeat_seconds double precision
    )""",
    """CREATE TABLE results (
        id text PRIMARY KEY,
        run_id text,
        title text,
        pages integer,
        words integer,
        "references" integer,
        arxiv_stamp text,
        sha256 text,
        bytes bigint,
        outcome_json text,
        created_at double precision
    )""",
    """CREATE TABLE attempts (
        job_id text,
        run_id text,
        stage text,
        started_at double precision,
        gate_wait double precision,
        duration double precision,
        outcome text,
        error_kind text
    )""",
    "CREATE INDEX attempts_time ON attempts (started_at)",
    "CREATE INDEX attempts_run ON attempts (run_id, stage)",
    """CREATE TABLE hosts (
        host text PRIMARY KEY,
        cooldown_until double precision,
        breaker_open integer NOT NULL DEFAULT 0,
        reason text,
        updated_at double precision
    )""",
    "CREATE TABLE queue_settings (key text PRIMARY KEY, value text NOT NULL, "
    "set_at double precision, set_by text)",
    "CREATE TABLE settings_changes (changed_at double precision NOT NULL, key text NOT NULL, "
    "old_value text, new_value text, run_id text)",
    "CREATE TABLE stage_counts (stage text NOT NULL, shard integer NOT NULL, "
    "n bigint NOT NULL DEFAULT 0, PRIMARY KEY (stage, shard))",
    "INSERT INTO stage_counts (stage, shard, n) SELECT s, g, 0 FROM "
    "unnest(ARRAY['queued', 'downloaded', 'extracted', 'done', 'failed']) AS s, "
    f"generate_series(0, {SHARDS - 1}) AS g",
    # One statement, one counter update per stage it changed: a row trigger updating a
    # counter row per job made a bulk change (a retry of 100,000 jobs) quadratic, each
    # update walking the counter row's chain of versions in the same transaction.
    f"""CREATE FUNCTION rpa_count_stages() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            INSERT INTO stage_counts (stage, shard, n)
            SELECT stage, mod(pg_backend_pid(), {SHARDS}), sum(delta) FROM (
                SELECT o.stage, -1 AS delta FROM old_rows o JOIN new_rows n ON n.id = o.id
                    WHERE o.stage IS DISTINCT FROM n.stage
                UNION ALL
                SELECT n.stage, 1 AS delta FROM old_rows o JOIN new_rows n ON n.id = o.id
                    WHERE o.stage IS DISTINCT FROM n.stage
            ) AS changes GROUP BY stage
            ON CONFLICT (stage, shard) DO UPDATE SET n = stage_counts.n + excluded.n;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO stage_counts (stage, shard, n)
            SELECT stage, mod(pg_backend_pid(), {SHARDS}), -count(*) FROM old_rows GROUP BY stage
            ON CONFLICT (stage, shard) DO UPDATE SET n = stage_counts.n + excluded.n;
        END IF;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION rpa_count_stages()",
    "CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION rpa_count_stages()",
]

_SCHEMA_6 = [
    # one politeness budget for every process and host that shares the queue
    "CREATE TABLE rate_slots (host text NOT NULL, slot integer NOT NULL, "
    "free_at double precision NOT NULL DEFAULT 0, holder text, PRIMARY KEY (host, slot))",
]

_SCHEMA_7 = [
    # arXiv's bulk PDF tars as a source: each tar's paper members, indexed once
    "CREATE TABLE tars (path text PRIMARY KEY, size bigint, mtime double precision, "
    "members integer, error text, indexed_at double precision)",
    "CREATE TABLE tar_members (base text PRIMARY KEY, version integer, tar text NOT NULL, "
    "member text NOT NULL, data_offset bigint NOT NULL, size bigint NOT NULL)",
]

_SCHEMA_8 = [
    # arXiv's metadata of each paper, the metadata stage's checkpoint
    "CREATE TABLE metadata (id text PRIMARY KEY, status text NOT NULL, source text, "
    "json text NOT NULL, fetched_at double precision)",
]

_SCHEMA_9 = [
    # the user's own stages (rpa.stages): each one's checkpoint per paper, leased like jobs
    STAGE_RESULTS.replace(" REAL", " double precision"),
    "CREATE INDEX stage_results_due ON stage_results(stage, state, next_at)",
    # a stage claims done papers in seq order from a cursor: only done rows, in that order
    "CREATE INDEX jobs_done_seq ON jobs(seq) WHERE stage = 'done'",
]

_SCHEMA_10 = [
    # what each run waits for now, and since when (rpa.queue.runs.heartbeat)
    "ALTER TABLE runs ADD COLUMN waiting text, ADD COLUMN waiting_since double precision",
]

#: nothing changes in the tables: the version keeps an older rpa off a queue that may hold jobs
#: for a host that refused us (next_attempt_at = HELD: to it, retries due in 30 million years)
_SCHEMA_11: list[str] = []

#: `rpa failures` names the stage each paper failed in from its attempts rows, by job
_SCHEMA_12 = ["CREATE INDEX attempts_job ON attempts (job_id, started_at)"]

#: version -> statements; a PostgreSQL queue has no version below 5
MIGRATIONS: dict[int, list[str]] = {
    5: _SCHEMA_5, 6: _SCHEMA_6, 7: _SCHEMA_7, 8: _SCHEMA_8, 9: _SCHEMA_9, 10: _SCHEMA_10,
    11: _SCHEMA_11, 12: _SCHEMA_12,
}  # fmt: skip
SCHEMA_VERSION = max(MIGRATIONS)

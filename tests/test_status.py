"""`rpa status` tells the truth: counts, stuck leases, failures, retries, timings, runs -- read
from a real SQLite queue built with the real job operations, and from a live run of the real
CLI in another process."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Cli, clean_env, sample_pdfs, wait_for, write_ids

from rpa.config import Settings
from rpa.queue import is_postgres_url, jobs, open_store, reads, runs
from rpa.queue.model import Attempt, Failure, RunInfo
from rpa.queue.status import STATUS_SCHEMA_VERSION
from rpa.run.runner import Runner
from rpa.testing.mirror import Fault, Mirror

NOW = 1_700_000_000.0


def record(job_id: str) -> dict[str, Any]:
    return {"id": job_id, "title": "T", "page_count": 3, "word_count": 300,
            "references": {"count": 4}, "pdf": {"sha256": "0" * 64, "bytes": 1000}}  # fmt: skip


def build_queue(path: Path, now: float = NOW) -> None:
    """A queue with every state: 3 done, 2 failed (2 kinds), 1 retry scheduled, 1 retry due,
    3 in progress by a live run; a dead run holding 2 leases; 1 expired lease; attempts."""
    store = open_store(path)
    store.enqueue([f"ext:p{i:02d}" for i in range(13)], now - 100)
    runs.register_run(store, RunInfo("run-a", "run", now - 100, 5.0, "{}"))
    got = jobs.claim(store, "run-a", 10, 120.0, now - 90)
    for j in got[:3]:
        assert jobs.complete(store, "run-a", j.lease, record(j.id), "/o.json", now - 30)
    failures = [("not_found", "HTTP 404 for ext:p03"), ("invalid_pdf", "bad xref")]
    for j, (kind, message) in zip(got[3:5], failures, strict=True):
        jobs.fail(store, "run-a", j.lease, Failure(kind, message, True), now - 20)
    # one retry in 5 minutes; one already due (claimable again, so it counts as queued)
    jobs.fail(
        store, "run-a", got[5].lease, Failure("http_5xx", "HTTP 503", False, now + 300), now - 10
    )
    jobs.fail(
        store, "run-a", got[6].lease, Failure("timeout", "read timeout", False, now - 1), now - 10
    )
    runs.heartbeat(store, "run-a", [j.lease for j in got[7:10]], 120.0, now - 1)
    # a dead run (its heartbeat stopped long ago) still holds two leases
    runs.register_run(store, RunInfo("run-dead", "resume", now - 5000, 5.0, "{}"))
    dead = jobs.claim(store, "run-dead", 2, 10_000.0, now - 4000)
    store.sql.execute("UPDATE runs SET heartbeat_at = ? WHERE id = 'run-dead'", (now - 3000,))
    # a live run's lease that expired (not renewed)
    jobs.claim(store, "run-a", 1, 5.0, now - 60)
    assert len(dead) == 2
    rows: list[Attempt] = []
    for i in range(100):  # download durations 1..100 ms, gate waits 0..99 ms
        rows.append(Attempt(f"ext:p{i % 13:02d}", "run-a", "download", now - 50, i / 1000,
                            (i + 1) / 1000, "ok"))  # fmt: skip
    rows.append(Attempt("ext:p03", "run-a", "download", now - 40, 0.2, 0.5, "error", "not_found"))
    rows.append(Attempt("ext:p00", "run-a", "extract", now - 40, 2.0, 1.5, "ok"))
    rows.append(Attempt("ext:p00", "run-old", "extract", now - 3600, 9.0, 60.0, "ok"))  # old
    jobs.record_attempts(store, rows)
    store.close()


@pytest.fixture
def queue(tmp_path: Path) -> Path:
    path = tmp_path / "q.db"
    build_queue(path)
    return path


def status_of(path: Path) -> dict[str, Any]:
    store = open_store(path, readonly=True)
    try:
        return reads.status(store, NOW)
    finally:
        store.close()


def test_counts_per_state_and_stage(queue: Path) -> None:
    s = status_of(queue)
    assert s["schema"] == STATUS_SCHEMA_VERSION and s["generated_at"] == NOW
    # 13 jobs: 3 done, 2 failed, 1 retry scheduled, 1 queued (its retry is due), 6 leased:
    # 3 by the live run, 2 by the dead run, 1 expired
    assert s["totals"] == {
        "queued": 1,
        "in_progress": 6,
        "retry_scheduled": 1,
        "done": 3,
        "failed": 2,
        "total": 13,
    }
    # every stage with every state, zeros included
    assert list(s["stages"]) == ["queued", "downloaded", "extracted", "done", "failed"]
    for row in s["stages"].values():
        assert set(row) == {"waiting", "leased", "retry_scheduled", "final"}
    assert s["stages"]["queued"] == {"waiting": 1, "leased": 6, "retry_scheduled": 1, "final": 0}
    assert s["stages"]["done"]["final"] == 3 and s["stages"]["failed"]["final"] == 2
    assert s["stages"]["extracted"] == dict.fromkeys(("waiting", "leased", "retry_scheduled",
                                                       "final"), 0)  # fmt: skip
    json.dumps(s)  # JSON-able as it is
    store = open_store(queue, readonly=True)
    try:  # the heartbeat's quick totals agree with the status
        assert dataclasses.asdict(reads.totals(store, NOW)) == {
            k: v for k, v in s["totals"].items() if k != "total"
        }
        # a run's closing figures: the same totals, and the unexpired leases of other runs
        # (run-a's 3 live ones, the dead run's 2; the expired one is no one's)
        totals, held = reads.end_of_run_totals(store, "run-x", NOW)
        assert totals == reads.totals(store, NOW) and held == 5
        assert reads.end_of_run_totals(store, "run-a", NOW)[1] == 2
    finally:
        store.close()


def test_live_totals_between_heartbeats_match_the_queue(tmp_path: Path) -> None:
    """The live table's totals: the last heartbeat's, moved on by what the run did since.
    Every kind of move the run makes, replayed on a real queue, must land on its truth."""
    db = tmp_path / "q.db"
    runner = Runner(Settings(db=str(db), out=tmp_path / "out"), command="run")
    store = open_store(db)
    tally, run_id = runner.tally, runner.run_id
    try:
        store.enqueue([f"ext:p{i:02d}" for i in range(12)], NOW)
        runs.register_run(store, RunInfo(run_id, "run", NOW, 5.0, "{}"))
        runner._set_totals(reads.totals(store, NOW))  # the heartbeat
        got = jobs.claim(store, run_id, 8, 120.0, NOW)
        tally.taken += len(got)
        assert runner.progress.fresh_totals() == reads.totals(store, NOW)
        for j in got[:3]:
            assert jobs.complete(store, run_id, j.lease, record(j.id), "/o.json", NOW)
            tally.done += 1
        jobs.fail(store, run_id, got[3].lease, Failure("not_found", "HTTP 404", True), NOW)
        tally.failed += 1
        jobs.fail(
            store, run_id, got[4].lease, Failure("http_5xx", "HTTP 503", False, NOW + 300), NOW
        )
        tally.retried += 1
        jobs.release(store, run_id, [got[5].lease])  # the breaker's give-back
        tally.taken -= 1
        fresh = runner.progress.fresh_totals()
        assert fresh == reads.totals(store, NOW)
        assert (fresh.queued, fresh.in_progress, fresh.done, fresh.total) == (5, 2, 3, 12)
    finally:
        store.close()
        runner.io.shutdown()


def test_stuck_is_lease_aware_and_lists_the_oldest(queue: Path) -> None:
    stuck = status_of(queue)["stuck"]
    # the dead run's two leases and the expired one; run-a's renewed leases are not stuck
    assert stuck["count"] == 3
    reasons = sorted((s["lease_owner"], s["reason"]) for s in stuck["oldest"])
    assert reasons == [
        ("run-a", "lease expired"),
        ("run-dead", "run dead"),
        ("run-dead", "run dead"),
    ]
    since = [s["since"] for s in stuck["oldest"]]
    assert since == sorted(since)  # oldest first
    assert stuck["oldest"][0]["lease_owner"] == "run-dead"


def test_failures_retries_and_runs(queue: Path) -> None:
    s = status_of(queue)
    kinds = {f["kind"]: f for f in s["failures"]}
    assert set(kinds) == {"not_found", "invalid_pdf"}
    assert kinds["not_found"]["count"] == 1
    assert kinds["not_found"]["sample_message"] == "HTTP 404 for ext:p03"
    assert kinds["not_found"]["sample_id"] == "ext:p03"
    assert s["retries"]["count"] == 1
    (retry,) = s["retries"]["next"]
    assert retry["next_attempt_at"] == NOW + 300 and retry["error_kind"] == "http_5xx"
    assert retry["attempts"] == 1
    runs = {r["id"]: r for r in s["runs"]}
    # run-a is alive (this process, fresh heartbeat); run-dead's heartbeat stopped
    assert runs["run-a"]["status"] == "running" and runs["run-dead"]["status"] == "dead"
    assert runs["run-a"]["done"] == 3 and runs["run-a"]["failed"] == 2
    assert runs["run-a"]["papers_per_min"] == round(3 / (100 / 60), 2)
    assert s["throughput"]["last_1m_papers_per_min"] == 3.0
    assert s["throughput"]["last_5m_papers_per_min"] == 0.6


def test_timings_percentiles_and_gate_waits(queue: Path) -> None:
    timings = status_of(queue)["timings"]
    assert timings["window_seconds"] == 900
    download = timings["stages"]["download"]
    assert download["attempts"] == 101
    assert download["outcomes"] == {"ok": 100, "error": 1}
    # 101 durations: 0.001..0.100 and 0.5; nearest rank (half up)
    assert download["duration_p50"] == pytest.approx(0.051)
    assert download["duration_p95"] == pytest.approx(0.096)
    assert download["duration_max"] == 0.5
    assert download["gate_wait_p50"] == pytest.approx(0.050)
    assert download["gate_wait_p95"] == pytest.approx(0.095)
    # the hour-old attempt is outside the window; a stage with no attempts has nulls
    assert timings["stages"]["extract"]["duration_max"] == 1.5
    assert timings["stages"]["extract"]["gate_wait_p50"] == 2.0
    assert timings["stages"]["outcome"]["attempts"] == 0
    assert timings["stages"]["outcome"]["duration_p50"] is None


def test_stage_timings_of_one_run(queue: Path) -> None:
    store = open_store(queue, readonly=True)
    try:
        old = reads.stage_timings(store, run_id="run-old")
        whole = reads.stage_timings(store, run_id="run-a")
    finally:
        store.close()
    assert old["extract"]["attempts"] == 1 and old["extract"]["duration_p95"] == 60.0
    assert old["download"]["attempts"] == 0
    assert whole["download"]["attempts"] == 101


def _paths(value: Any, prefix: str) -> set[str]:
    """Field paths as docs/status.md names them: lists as `[]`, data keys as placeholders."""
    placeholders = {"stages": "<stage>", "outcomes": "<outcome>", "settings": "<key>"}
    if isinstance(value, dict):
        leaf = prefix.rsplit(".", 1)[-1]
        out: set[str] = set()
        for key, child in value.items():
            name = placeholders.get(leaf) or str(key)
            out |= _paths(child, f"{prefix}.{name}" if prefix else name)
        return out
    if isinstance(value, list):
        return _paths(value[0], prefix + "[]") if value else set()
    return {prefix}


def test_every_status_field_is_documented(queue: Path) -> None:
    page = (ROOT / "docs" / "status.md").read_text()
    section = page.split("## `rpa status --json` schema", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))
    status = status_of(queue)
    status["hosts"] = [
        {"host": "h", "cooldown_until": 1.0, "cooling_down": False, "breaker_open": False,
         "reason": "r"}
    ]  # fmt: skip
    status["settings"] = {"out": "/data"}
    status["settings_changes"] = [
        {"changed_at": 1.0, "key": "out", "old_value": '"/a"', "new_value": '"/b"', "run_id": "r"}
    ]
    missing = sorted(_paths(status, "") - documented)
    assert not missing, f"undocumented status fields: {missing}"


@pytest.mark.timeout(90)
def test_status_from_another_process_while_a_run_is_active(tmp_path: Path, queue_db: str) -> None:
    """`rpa run` (not a terminal, --log-format json, --metrics-file) in one process; `rpa
    status --json` in another while it works. A download held until the test has looked
    keeps the run going."""
    files = {p.stem: p for p in sample_pdfs()} | {"slow": sample_pdfs()[0]}
    with Mirror(files) as mirror:
        mirror.set_fault("slow", Fault.slow_body(60.0))  # until release_stalled()
        cli = Cli(tmp_path, mirror.url_template, queue_db)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{name}" for name in files])
        metrics = tmp_path / "rpa.prom"
        log, errlog = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        with log.open("wb") as fh, errlog.open("wb") as fe:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rpa", "run", str(ids), "--log-format", "json",
                 "--metrics-file", str(metrics),
                 *cli.knobs(workers=20, extract_workers=2)],
                cwd=tmp_path, env=clean_env(), stdout=fh, stderr=fe,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            wait_for(lambda: cli.count("stage = 'done'") >= 2, 60, "some papers done")
            status = cli.status()
            assert proc.poll() is None, "the run ended before status was read: proves nothing"
            t = status["totals"]
            assert t["total"] == len(files) == sum(v for k, v in t.items() if k != "total")
            assert t["done"] >= 2 and t["in_progress"] >= 1  # the stalled download
            assert status["stuck"]["count"] == 0  # a live run's leases are not stuck
            run = status["runs"][0]
            assert run["status"] == "running" and run["pid"] == proc.pid
            assert run["done"] == t["done"]
            # the metrics file is written during the run, with the live figures
            wait_for(metrics.exists, 30, "the metrics file")
            live = metrics.read_text()
            assert "rpa_live_loop_lag_seconds{" in live and live.endswith("# EOF\n")
            # the database threads are a gate like the others (one thread for SQLite)
            threads = 4 if is_postgres_url(queue_db) else 1
            capacity = rf'rpa_live_gate_capacity\{{run="[^"]+",gate="database"\}} {threads}\n'
            assert re.search(capacity, live)
            wait_for(lambda: '"event": "progress"' in log.read_text(), 30, "a progress line")
            mirror.release_stalled()  # the held download may finish now
            assert proc.wait(timeout=60) == 0, errlog.read_text()
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    lines = log.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is JSON, the first included
    assert events[0]["event"] == "queued" and events[0]["new"] == 7
    progress = [e for e in events if e["event"] == "progress"]
    assert progress, "no progress line in a run longer than the log interval"
    assert progress[0]["run_id"] == run["id"] and "download" in progress[0]["gates"]
    assert progress[-1]["gates"]["database"]["capacity"] == (4 if is_postgres_url(queue_db) else 1)
    summary = events[-1]
    assert summary["event"] == "summary" and summary["status"] == "finished"
    assert summary["done"] == len(files) and summary["queue"]["remaining"] == 0
    assert summary["timings"]["download"]["attempts"] == len(files)

    after = cli.status()
    assert after["runs"][0]["status"] == "finished"
    assert after["totals"]["done"] == len(files) and after["totals"]["in_progress"] == 0
    # the last write of the metrics file came after the run ended
    final = metrics.read_text()
    assert f'rpa_queue_jobs{{state="done"}} {len(files)}' in final
    assert f'rpa_run_info{{run="{run["id"]}",command="run",status="finished"}} 1' in final


@pytest.mark.timeout(60)
def test_watch_json_prints_one_json_line_a_refresh(queue: Path) -> None:
    args = [sys.executable, "-m", "rpa", "status", "--watch", "--json", "--db", str(queue)]
    pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with subprocess.Popen(args, env=clean_env(), stdin=subprocess.DEVNULL, **pipes) as proc:
        assert proc.stdout is not None
        try:
            first = json.loads(proc.stdout.readline())
            second = json.loads(proc.stdout.readline())
            assert first["schema"] == second["schema"] == STATUS_SCHEMA_VERSION
            assert first["totals"] == second["totals"] and first["totals"]["total"] > 0
            assert second["generated_at"] > first["generated_at"]
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    # a reader that leaves early (`| head -1`) ends it quietly
    with subprocess.Popen(args, env=clean_env(), stdin=subprocess.DEVNULL, **pipes) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        json.loads(proc.stdout.readline())
        proc.stdout.close()
        assert proc.wait(timeout=30) == 0
        assert proc.stderr.read() == b""

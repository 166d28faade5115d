"""What rpa tells while it works (issue 21): the live table fitted to an 80x24 terminal, why
papers fail, the papers whose own work was slow."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console
from test_status import NOW, record

from rpa.config import Settings
from rpa.queue import jobs, open_store, reads, runs
from rpa.queue.model import Attempt, Failure, RunInfo
from rpa.run.runner import Runner
from rpa.run.snapshot import RunSnapshot
from rpa.run.tally import Tally
from rpa.show.live import format_line, make_run_table, snapshot_dict

REFUSED = "ConnectError: [Errno 111] Connection refused while fetching {url}"


def a_run_under_way(tmp_path: Path) -> RunSnapshot:
    """The snapshot of a real run's state, midway through 330 papers: a real queue and the
    runner's own parts (gates, pool, governor, tally, notices), moved as the job processor
    moves them: papers done with their attempts, some retried, some failed, notices said."""
    db = tmp_path / "q.db"
    runner = Runner(Settings(db=str(db), out=tmp_path / "out"), command="run")
    store = open_store(db)
    tally, run_id = runner.tally, runner.run_id
    try:
        store.enqueue([f"2401.{i:05d}" for i in range(1, 331)], NOW)
        runs.register_run(store, RunInfo(run_id, "run", NOW, 5.0, "{}"))
        runner._set_totals(reads.totals(store, NOW))
        got = jobs.claim(store, run_id, 60, 120.0, NOW)
        tally.taken += len(got)
        for j in got[:40]:
            for stage, took in (("download", 0.2), ("extract", 0.9), ("outcome", 0.01)):
                tally.attempt(Attempt(j.id, run_id, stage, NOW, 0.5, took, "ok"))
            assert jobs.complete(store, run_id, j.lease, record(j.id), "/o.json", NOW)
            tally.finished(j.id, 3.0)
        url = "http://127.0.0.1:45678/pdf/{}"
        for j in got[40:44]:
            message = REFUSED.format(url=url.format(j.id))
            jobs.fail(store, run_id, j.lease, Failure("connection", message, False, NOW + 60), NOW)
            tally.retry_later("connection", message, j.id)
        for j, (kind, message) in zip(
            got[44:47], [("not_found", "HTTP 404 Not Found"), ("invalid_pdf", "no %PDF- header"),
                         ("http_5xx", "HTTP 503 Service Unavailable")], strict=True,
        ):  # fmt: skip
            jobs.fail(store, run_id, j.lease, Failure(kind, message, True), NOW)
            tally.failed_for_good(kind, message, j.id)
        for i in range(6):
            runner.notices.add(f"notice {i}: lease lost before the extract checkpoint: 2401.0{i}")
        return runner.snapshot()
    finally:
        store.close()
        runner.io.shutdown()


def test_live_table_fits_80x24_with_progress_first(tmp_path: Path) -> None:
    snap = a_run_under_way(tmp_path)
    console = Console(file=io.StringIO(), width=80, height=24, record=True)
    # what rpa.cli.drive draws: the terminal's width, its height less the row Live needs
    console.print(make_run_table(snap, console.width, console.height - 1))
    lines = console.export_text().splitlines()
    assert len(lines) <= 24, "\n".join(lines)
    # the whole table would not fit: something was left out, and not what matters first
    assert len(make_run_table(snap).lines) > 24
    assert lines[0].startswith(f"rpa {snap.run_id}") and "done 40  failed 3" in lines[0]
    progress = re.fullmatch(
        r"Queue 43/330 settled \(13%\)  ETA (\S+)  ([\d.,]+) papers/min", lines[1]
    )
    assert progress is not None, lines[1]
    assert progress.group(1) != "—"
    text = "\n".join(lines)
    # why papers fail, each kind with its last reason and the paper it was
    assert "Failures this run (failed/retried, the last reason)" in text
    row = next(line for line in lines if line.startswith("  connection"))
    assert " 0/4  2401.00044: ConnectError: [Errno 111] Connection refused" in row
    assert "Stages" in text and "Health" in text
    # the details came after: the notices are the first left out
    assert "Gates" in text and "Memory" in text and "notice" not in text


def test_the_first_frame_shows_no_rate_nor_wait_it_has_not_measured(tmp_path: Path) -> None:
    """A real runner's first snapshot, before any paper: its rates and gate waits are not
    measured yet, and the table says '—' rather than a 0 that reads as measured. The JSON
    progress line keeps its numbers."""
    db = tmp_path / "q.db"
    runner = Runner(Settings(db=str(db), out=tmp_path / "out"), command="run")
    store = open_store(db)
    try:
        store.enqueue([f"2401.{i:05d}" for i in range(1, 11)], NOW)
        runner._set_totals(reads.totals(store, NOW))
        snap = runner.snapshot()
    finally:
        store.close()
        runner.io.shutdown()
    console = Console(file=io.StringIO(), width=80, record=True)
    console.print(make_run_table(snap))
    lines = console.export_text().splitlines()
    assert lines[1] == "Queue 0/10 settled (0%)  ETA —  — papers/min"
    assert any(line.startswith("Speed  — pages/s  — MB/s  workers busy/idle") for line in lines)
    gates = lines[lines.index("Gates") + 2 : lines.index("Gates") + 2 + len(snap.gates)]
    gate_rows = [row.split() for row in gates]
    assert gate_rows and all(row[-3:] == ["—", "—", "0"] for row in gate_rows), gates
    assert "0.0 ms" not in "\n".join(lines)
    memory = next(line for line in lines if line.startswith("Memory"))
    assert memory.startswith("Memory  — / — GiB  ok  pauses 0"), memory  # no reading yet
    log = format_line(snap)
    assert "| — papers/min — pages/s — MB/s ETA — |" in log and "memory ok —/— GiB" in log
    data = snapshot_dict(snap)
    assert (data["papers_per_min"], data["pages_per_s"], data["mb_per_s"]) == (0.0, 0.0, 0.0)
    assert all(g["wait_p50_ms"] == 0.0 for g in data["gates"].values())
    assert data["memory"] is not None and (data["memory"]["used"], data["memory"]["limit"]) == (
        0,
        0,
    )


def test_slowest_papers_are_ranked_by_their_own_work_not_their_waiting() -> None:
    tally = Tally()
    for job_id, work, wall in (("slow-work", 5.0, 6.0), ("long-wait", 0.4, 64.0)):
        tally.attempt(Attempt(job_id, "r", "download", NOW, wall - work, work / 2, "ok"))
        tally.attempt(Attempt(job_id, "r", "extract", NOW, 0.0, work / 2, "ok"))
        tally.finished(job_id, wall)
    assert tally.top_slowest() == [("slow-work", 5.0, 1.0), ("long-wait", 0.4, 63.6)]
    tally.attempt(Attempt("given-back", "r", "download", NOW, 0.0, 1.0, "error", "timeout"))
    tally.let_go("given-back")  # a paper that leaves without finishing is forgotten
    assert not tally._work


def test_failed_papers_are_read_a_page_at_a_time_by_id(tmp_path: Path) -> None:
    from test_status import build_queue

    from rpa.queue.status import failed_papers

    build_queue(tmp_path / "q.db")
    # an attempt that started after p03 failed (at NOW - 20) is not the one that failed it
    store = open_store(tmp_path / "q.db")
    late = Attempt("ext:p03", "run-b", "extract", NOW - 5, 0.0, 1.0, "error", "invalid_pdf")
    jobs.record_attempts(store, [late])
    store.close()
    store = open_store(tmp_path / "q.db", readonly=True)
    try:
        every = list(failed_papers(store, page=1))
        only = list(failed_papers(store, ["invalid_pdf"]))
        unasked = list(failed_papers(store, stages=False))
    finally:
        store.close()
    assert [(p["id"], p["kind"], p["reason"]) for p in every] == [
        ("ext:p03", "not_found", "HTTP 404 for ext:p03"),
        ("ext:p04", "invalid_pdf", "bad xref"),
    ]
    assert [p["id"] for p in only] == ["ext:p04"]
    # p03's last attempt failed downloading; p04's failing attempt is not recorded (its
    # latest row is a download that went well): no stage rather than a guess
    assert [p["stage"] for p in every] == ["download", None]
    assert [p["stage"] for p in unasked] == [None, None]


def test_tally_keeps_the_last_reason_of_each_kind_for_the_table_and_the_summary() -> None:
    tally = Tally()
    tally.failed_for_good("connection", "Connection refused", "2401.00001")
    tally.retry_later("connection", "Connection reset", "2401.00002")
    tally.retry_later("timeout", "read timeout", "2401.00003")
    table = {f.kind: (f.failed, f.retried, f.last) for f in tally.failure_snapshot()}
    assert table == {
        "connection": (1, 1, "2401.00002: Connection reset"),  # the last seen, retried or not
        "timeout": (0, 1, "2401.00003: read timeout"),
    }
    # the summary's reason is of a paper that failed for good
    assert tally.reasons == {"connection": "2401.00001: Connection refused"}


def test_status_shows_a_long_reason_whole_in_80_columns() -> None:
    from test_render import text_of

    from rpa.show.status_view import make_status

    status = {
        "generated_at": NOW, "database": "q.db",
        "totals": dict.fromkeys(("queued", "in_progress", "retry_scheduled", "done", "total"), 0)
        | {"failed": 1},
        "stages": {}, "stuck": {"count": 0, "oldest": []},
        "failures": [{"kind": "connection", "count": 1, "sample_id": "2401.00001",
                      "sample_message": REFUSED.format(url="http://127.0.0.1:45678/pdf/"
                                                       "2401.00001?" + "x=1&" * 20)}],
        "retries": {"count": 0, "next": []},
        "timings": {"window_seconds": 900, "stages": {}},
        "throughput": dict.fromkeys(("last_1m_papers_per_min", "last_5m_papers_per_min",
                                     "last_15m_papers_per_min"), 0.0),
        "hosts": [], "runs": [],
    }  # fmt: skip
    lines = text_of(make_status(status), width=200).splitlines()
    assert all(len(line) <= 80 for line in lines)
    at = next(i for i, line in enumerate(lines) if line.startswith("  connection"))
    said = "".join("".join(lines[at + 1 : at + 4]).split())  # a long URL is broken, not cut
    whole = REFUSED.format(url="http://127.0.0.1:45678/pdf/2401.00001?" + "x=1&" * 20)
    assert said == "".join(whole.split())
    assert "…" not in "\n".join(lines)

"""Rendering is a pure function of a snapshot: render into a string console, assert on text."""

from __future__ import annotations

import cProfile
import dataclasses
import io
import json
import pstats
import re
from pathlib import Path

from rich.console import Console, RenderableType
from test_status import NOW, build_queue

from rpa.extract.pool import PoolStatistics
from rpa.gates import GateStatistics
from rpa.metrics import WindowStats
from rpa.queue import catalog, open_store, reads
from rpa.queue.model import Totals
from rpa.run.runner import RunSummary
from rpa.run.snapshot import FailureSnapshot, MemorySnapshot, RunSnapshot, StageSnapshot
from rpa.show.live import format_line, make_run_table, snapshot_dict
from rpa.show.status_view import make_status
from rpa.show.summary import make_summary, summary_dict


def text_of(renderable: RenderableType, width: int = 140, color: bool = False) -> str:
    console = Console(
        file=io.StringIO(), width=width, force_terminal=color,
        color_system="standard" if color else None,
    )  # fmt: skip
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def squash(line: str) -> str:
    """A table row with its alignment spaces collapsed."""
    return " ".join(line.split())


def stats(p50: float, p95: float, p99: float, mx: float, n: int = 100) -> WindowStats:
    return WindowStats(count=n, p50=p50, p95=p95, p99=p99, max=mx)


def snapshot(**changes: object) -> RunSnapshot:
    base: dict[str, object] = {
        "run_id": "20260101T000000-abcdef",
        "elapsed": 125.4,
        "gates": [
            GateStatistics("download", 3, 64, 0, 0.0, 0.0012, 40),
            GateStatistics("extract", 1, 1, 18, 0.5, 2.25, 30),
            GateStatistics("host export.arxiv.org", 4, 4, 7, 0.25, 0.9, 52),
        ],
        "stages": [
            StageSnapshot("download", 3, 40, 1, 2, stats(0.0236, 0.1542, 0.16, 0.1682)),
            StageSnapshot("extract", 1, 30, 0, 0, stats(0.8224, 1.31, 1.35, 1.41)),
            StageSnapshot("outcome", 0, 29, 0, 0, stats(0.0018, 0.0271, 0.03, 0.0316)),
        ],
        "totals": Totals(queued=17, in_progress=21, retry_scheduled=2, done=29, failed=1),
        "papers_per_min": 74.5,
        "pages_per_s": 10.04,
        "mb_per_s": 0.404,
        "eta_seconds": 30.2,
        "lag": stats(0.0003, 0.002, 0.0031, 0.0049),
        "workers_busy": 19,
        "workers_total": 20,
        "pool": PoolStatistics(
            "process",
            workers=2,
            alive=2,
            busy=1,
            parsing=1,
            started=3,
            replaced=1,
            recycled=0,
            crashed=1,
            timed_out=0,
        ),
        "done_this_run": 29,
        "failed_this_run": 1,
        "messages": ["reclaimed 3 leases of 1 dead run, 0 expired"],
    }
    base.update(changes)
    return RunSnapshot(**base)  # type: ignore[arg-type]


def block(lines: list[str], title: str) -> list[str]:
    """The rows of a titled block: after its title, up to the next title (a line that does
    not start with two spaces)."""
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return lines[start:end]


def test_run_table_shows_progress_failures_stages_health_and_gates() -> None:
    snap = snapshot(
        failures=[FailureSnapshot("connection", 1, 3, "2301.00004: ConnectError: refused")]
    )
    lines = text_of(make_run_table(snap)).splitlines()
    assert lines[0] == "rpa 20260101T000000-abcdef  2m05s  done 29  failed 1"
    # the queue's progress: settled of all, %, ETA, rate; then its parts
    assert lines[1] == "Queue 30/70 settled (43%)  ETA 0m30s  74.5 papers/min"
    assert squash(lines[2]) == "17 queued 21 in progress 2 retry sched. 29 done 1 failed"
    failures = block(lines, "Failures this run (failed/retried, the last reason)")
    assert squash(failures[0]) == "connection 1/3 2301.00004: ConnectError: refused"
    stages = block(lines, "Stages")
    assert squash(stages[0]) == "stage running done failed retried p50 p95 max"
    assert squash(stages[1]) == "download 3 40 1 2 23.6 ms 154.2 ms 168.2 ms"
    assert squash(stages[2]) == "extract 1 30 0 0 822.4 ms 1.31 s 1.41 s"
    assert stages[3].split()[0] == "outcome"
    assert "Speed  10.0 pages/s  0.40 MB/s  workers busy/idle 19/1" in lines
    assert "Health  loop lag p50 0.3 ms  p99 3.1 ms  max 4.9 ms" in lines
    assert "Extraction  process  alive 2/2  busy 1  replaced 1  crashed 1  timed out 0" in lines
    gates = block(lines, "Gates")
    # gates: in use / capacity, waiting, wait p50 / p95, entered
    assert squash(gates[0]) == "gate in use/cap waiting wait p50 wait p95 entered"
    assert squash(gates[1]) == "download 3/64 0 0.0 ms 1.2 ms 40"
    assert squash(gates[2]) == "extract 1/1 18 500.0 ms 2.25 s 30"
    assert squash(gates[3]) == "host export.arxiv.org 4/4 7 250.0 ms 900.0 ms 52"
    assert len({len(line.rstrip()) for line in gates}) == 1  # columns line up
    assert lines[-1] == "reclaimed 3 leases of 1 dead run, 0 expired"


def test_a_rate_is_a_dash_until_its_first_sample_and_a_measured_zero_stays_zero() -> None:
    """Downloads done, no extraction yet: MB/s is measured, pages/s is not; papers/min is
    measured once a paper is done, and its 0 then (none in the last minute) is a real 0. A
    gate nobody entered has no wait to show."""
    none = WindowStats(count=0, p50=0.0, p95=0.0, p99=0.0, max=0.0)
    snap = snapshot(
        stages=[
            StageSnapshot("download", 3, 40, 0, 0, stats(0.02, 0.15, 0.16, 0.17)),
            StageSnapshot("extract", 2, 0, 0, 0, none),
            StageSnapshot("outcome", 0, 0, 0, 0, none),
        ],
        gates=[
            GateStatistics("download", 3, 64, 0, 0.0, 0.0012, 40),
            GateStatistics("extract", 0, 2, 0, 0.0, 0.0, 0),
        ],
        papers_per_min=0.0, pages_per_s=0.0, done_this_run=0, eta_seconds=None,
    )  # fmt: skip
    lines = text_of(make_run_table(snap)).splitlines()
    assert lines[1] == "Queue 30/70 settled (43%)  ETA —  — papers/min"
    assert "Speed  — pages/s  0.40 MB/s  workers busy/idle 19/1" in lines
    gates = block(lines, "Gates")
    assert squash(gates[1]) == "download 3/64 0 0.0 ms 1.2 ms 40"  # measured: no wait at all
    assert squash(gates[2]) == "extract 0/2 0 — — 0"
    assert "— papers/min — pages/s 0.40 MB/s" in format_line(snap)
    later = dataclasses.replace(snap, done_this_run=5)  # then a minute without a paper
    assert "ETA —  0.0 papers/min" in text_of(make_run_table(later))
    assert snapshot_dict(snap)["pages_per_s"] == 0.0  # the JSON line keeps its numbers


def test_run_table_fits_the_width_given_for_failure_reasons() -> None:
    reason = "2301.00004: ConnectError: [Errno 111] Connection refused " + "x" * 100
    snap = snapshot(failures=[FailureSnapshot("connection", 0, 2, reason)])
    narrow = text_of(make_run_table(snap, width=80), width=200)
    wide = text_of(make_run_table(snap, width=160), width=200)
    assert "Connection refused" in narrow and reason not in narrow
    row = next(line for line in wide.splitlines() if "Connection refused" in line)
    assert len(row) == 160 and row.endswith("…")
    assert all(len(line) <= 80 for line in narrow.splitlines())


def test_every_view_fits_80_columns_with_nothing_cut() -> None:
    """At 80 columns nothing vanishes: the ETA whole, the health figures, the full run id
    (each was cut or dropped before)."""
    snap = snapshot(
        eta_seconds=3 * 86400 + 4 * 3600,
        totals=Totals(
            queued=1_234_567,
            in_progress=200,
            retry_scheduled=12_345,
            done=9_876_543,
            failed=123_456,
        ),
        gates=[
            *snapshot().gates,
            GateStatistics(
                "host a-very-long-host-name.example.org", 4, 4, 190, 1.5, 99.0, 12_345_678
            ),
        ],
        waiting="export.arxiv.org cooldown until 12:00:00",
        messages=["x" * 200],
    )
    text = text_of(make_run_table(snap), width=200)  # wider than 80: nothing is cropped here
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "3d04h" in text and "20260101T000000-abcdef" in text
    assert "19/1" in text and "process" in text and "timed out" in text
    assert "waiting for export.arxiv.org cooldown until 12:00:00" in text


def test_a_stage_with_no_data_shows_a_dash_not_zero() -> None:
    empty = WindowStats(0, 0.0, 0.0, 0.0, 0.0)
    snap = snapshot(stages=[StageSnapshot("download", 0, 0, 0, 0, empty)], lag=empty)
    text = text_of(make_run_table(snap))
    row = block(text.splitlines(), "Stages")[1]
    assert squash(row) == "download 0 0 0 0 — — —"
    health = next(line for line in text.splitlines() if line.startswith("Health"))
    assert health == "Health  loop lag p50 —  p99 —  max —"
    data = snapshot_dict(snap)
    assert data["stages"]["download"]["p50_ms"] is None and data["lag_p99_ms"] is None


def test_run_table_is_pure_and_marks_stopping_and_lag() -> None:
    snap = snapshot(stopping=True, lag=stats(0.001, 0.02, 0.03, 0.08), eta_seconds=None)
    assert text_of(make_run_table(snap)) == text_of(make_run_table(snap))  # same in, same out
    text = text_of(make_run_table(snap))
    assert "[stopping]" in text.splitlines()[0]
    assert "—" in text  # no ETA without throughput
    colored = text_of(make_run_table(snap), color=True)
    assert re.search(r"\x1b\[31m *30\.0 ms", colored)  # a late loop is shown in red
    healthy = text_of(make_run_table(snapshot()), color=True)
    assert re.search(r"\x1b\[32m *3\.1 ms", healthy)


def test_run_table_is_cropped_not_wrapped_in_a_narrow_terminal() -> None:
    wide = text_of(make_run_table(snapshot()), width=200).splitlines()
    narrow = text_of(make_run_table(snapshot()), width=50).splitlines()
    assert len(narrow) == len(wide)  # the shape is kept
    assert all(len(line) <= 50 for line in narrow)
    assert narrow[0] == wide[0][:50]


def test_run_table_is_cheap_to_build_and_draw() -> None:
    """It is drawn 4 times a second next to the loop: a Rich Table took ~17 ms a frame.

    Counted in Python function calls, not timed (a timing is the benchmark's job and a busy
    machine's noise): a frame of the table makes ~1,900; a Rich Table of 8 columns and 12
    rows makes ~48,000.
    """
    snap = snapshot()
    console = Console(file=io.StringIO(), width=140, force_terminal=True)
    console.print(make_run_table(snap))  # the first frame warms Rich's caches
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(10):
        console.print(make_run_table(snap))
    profile.disable()
    per_frame = pstats.Stats(profile).total_calls / 10  # type: ignore[attr-defined]
    assert 100 < per_frame < 5_000, f"{per_frame:.0f} calls per frame"


def test_format_line_is_one_line_with_the_figures() -> None:
    line = format_line(snapshot())
    assert "\n" not in line
    assert line.startswith("[2m05s] done 29 failed 1 queued 17 in-progress 21 retry 2 |")
    assert "74.5 papers/min 10.0 pages/s 0.40 MB/s ETA 0m30s" in line
    assert "download=3/64+0 extract=1/1+18 host export.arxiv.org=4/4+7" in line
    assert "workers 19/20 busy" in line and "lag p99 3.1 ms max 4.9 ms" in line
    failing = format_line(snapshot(failures=[FailureSnapshot("connection", 1, 3, "x: refused")]))
    assert failing.endswith(" | failed/retried connection=1/3")


def test_snapshot_dict_is_a_json_line() -> None:
    data = json.loads(json.dumps(snapshot_dict(snapshot())))
    assert data["event"] == "progress"
    assert data["done"] == 29 and data["queued"] == 17 and data["eta_seconds"] == 30
    assert data["gates"]["extract"] == {
        "in_use": 1, "capacity": 1, "waiting": 18, "wait_p50_ms": 500.0, "wait_p95_ms": 2250.0
    }  # fmt: skip
    assert data["stages"]["download"]["p95_ms"] == 154.2
    assert data["lag_max_ms"] == 4.9 and data["extract_procs_replaced"] == 1


def run_summary() -> RunSummary:
    snap = snapshot()
    return RunSummary(
        run_id=snap.run_id,
        status="finished",
        done=46,
        failed=2,
        totals=Totals(done=46, failed=2),
        wall_seconds=125.0,
        lag=stats(0.0003, 0.001, 0.002, 0.009, n=12_000),
        failures={"not_found": 1, "connection": 3},
        reasons={
            "not_found": "2301.00009: HTTP 404 Not Found from http://127.0.0.1:9/pdf/x",
            "connection": "2301.00002: ConnectError: [Errno 111] Connection refused while "
            "fetching http://127.0.0.1:45678/pdf/2301.00002 (the mirror was stopped)",
        },
        slowest=[("2301.00007", 17.97, 0.4), ("2301.00003", 9.5, 64.0)],
        stages=snap.stages,
        messages=["a message"],
    )


def test_summary_has_stages_failures_with_reasons_slowest_wall_time_and_lag() -> None:
    text = text_of(make_summary(run_summary()), width=200)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert text.startswith("run 20260101T000000-abcdef finished: 46 done, 2 failed this run")
    assert "queue: 46 done, 2 failed, 0 remaining" in text
    failures = block(text.splitlines(), "Failures by kind (the last reason of each, whole)")
    # the reason of each kind, not only "connection 3"; most frequent first; whole: wrapped
    # under itself, never cut (the paper's ID and "Connection refused" were lost at 80)
    assert squash(failures[0]).startswith("connection 3 2301.00002: ConnectError: [Errno 111]")
    assert squash(" ".join(failures[:3])) == squash(
        "connection 3 2301.00002: ConnectError: [Errno 111] Connection refused while "
        "fetching http://127.0.0.1:45678/pdf/2301.00002 (the mirror was stopped)"
    )
    assert failures[1].startswith(" " * 24) and "…" not in text
    assert squash(failures[3]).startswith("not_found 1 2301.00009: HTTP 404 Not Found")
    # ranked by their own work; the time spent waiting beside it, not mixed in
    slowest = block(
        text.splitlines(), "Slowest papers (by their own work; time spent waiting apart)"
    )
    assert squash(slowest[0]) == "id work s waited s"
    assert squash(slowest[1]) == "2301.00007 17.97 0.40"
    assert squash(slowest[2]) == "2301.00003 9.50 64.00"
    assert "total wall time: 125.0 s (2m05s), 22.1 papers/min over the run" in text
    assert "event-loop lag over the run: p50 0.3 ms  p99 2.0 ms  max 9.0 ms  (12000 samples)" in (
        text
    )
    assert "168.2 ms" in text  # the in-memory windows when no database timings are given


def test_summary_says_the_retries_not_charged_to_their_papers_apart() -> None:
    """`retried` is the retries charged to their papers; the others (the host down, a shed,
    an extraction that died among others) are one line of their own, and none: no line."""
    plain = text_of(make_summary(run_summary()), width=200)
    assert "not counted" not in plain
    download, extract, outcome = run_summary().stages
    stages = [
        dataclasses.replace(download, uncounted=7),
        dataclasses.replace(extract, uncounted=1),
        outcome,
    ]
    summary = dataclasses.replace(run_summary(), stages=stages)
    lines = text_of(make_summary(summary), width=200).splitlines()
    assert squash(block(lines, "Stages")[1]).startswith("download 40 1 2 ")
    said = " ".join(lines[lines.index("Stages") + 5 :][:2])
    assert squash(said) == (
        "7 downloads retried after no answer or a cut from their host, 1 extraction tried "
        "again alone or after a memory shed (retries not counted against the papers)"
    )
    data = summary_dict(summary)["stages"]
    assert (data["download"]["retried"], data["download"]["uncounted"]) == (2, 7)


def test_a_run_too_short_for_the_lag_probe_says_so_not_dashes() -> None:
    unread = MemorySnapshot(0, 0, "machine", "ok", 0, 0.0, 0, 0, 2)  # no reading taken yet
    short = dataclasses.replace(
        run_summary(), lag=WindowStats(0, 0.0, 0.0, 0.0, 0.0), memory=unread
    )
    text = text_of(make_summary(short), width=200)
    assert "memory: not sampled (a run shorter than one 250 ms sample)" in text
    assert "0.00 GiB" not in text
    assert "event-loop lag over the run: not sampled (a run shorter than one 10 ms sample)" in text
    assert "samples)" not in text


def test_summary_uses_whole_run_timings_from_the_database(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    build_queue(path)
    store = open_store(path, readonly=True)
    try:
        timings = {"stages": reads.stage_timings(store, run_id="run-a")}
    finally:
        store.close()
    lines = text_of(make_summary(run_summary(), timings)).splitlines()
    download = block(lines, "Stages (whole run)")[1]
    assert squash(download) == "download 40 1 2 51.0 ms 96.0 ms 500.0 ms"
    waits = block(lines, "Waits before each stage's gate (whole run)")
    assert squash(waits[1]) == "download 50.0 ms 95.0 ms"
    data = json.loads(json.dumps(summary_dict(run_summary(), timings)))
    assert data["event"] == "summary" and data["wall_seconds"] == 125.0
    assert data["timings"]["download"]["duration_max"] == 0.5
    assert data["slowest"][0] == {"id": "2301.00007", "work_seconds": 17.97, "wait_seconds": 0.4}


def test_status_tables(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    build_queue(path)
    store = open_store(path)
    catalog.store_queue_settings(store, {"out": "/data/" + "x" * 90, "max_pdf_mb": 100.0}, "r", NOW)
    store.close()
    store = open_store(path, readonly=True)
    try:
        status = reads.status(store, NOW)
    finally:
        store.close()
    text = text_of(make_status(status), width=200)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    assert squash(block(lines, "Totals")[1]) == "1 6 1 3 2 13"
    assert "Stuck: 3 (`rpa resume` reclaims them)" in text and "run dead" in text
    assert "lease expired" in text
    assert "Failures by kind" in text and "HTTP 404 for ext:p03" in text
    assert "Retry scheduled: 1" in text and "http_5xx: HTTP 503" in text
    assert "Stage timings (last 15 min)" in text and "wait p95" in text
    assert "Throughput: 3.0 papers/min (1 min), 0.6 (5 min)" in text
    settings = block(lines, "Settings of this queue (a resume uses these)")
    assert squash(settings[0]) == "max_pdf_mb 100.0" and settings[1].endswith("…")
    runs = block(lines, "Runs (newest first)")
    assert any(squash(r).startswith("run-a running") for r in runs)
    assert any(squash(r).startswith("run-dead dead") for r in runs)

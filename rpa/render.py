"""Rendering: pure functions from snapshots and status data to Rich renderables and text lines.

The only module besides the CLI that imports Rich. Nothing here reads the clock, the database
or the runner: give it the same snapshot, get the same table.

The live table is drawn a few times a second while the loop works, so it is built as plain
pre-formatted lines (`Lines`) rather than Rich `Table`s: laying out the four tables with Rich
cost ~17 ms per frame (measured), time the GIL is held and the event loop waits; the same
content as pre-formatted segments costs well under a millisecond. The end-of-run summary and
`rpa status` are drawn once (or once a second, off any loop), so they use Rich tables.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

from rpa.metrics import WindowStats
from rpa.snapshot import RunSnapshot, StageSnapshot, Totals

__all__ = [
    "Lines",
    "format_line",
    "make_run_table",
    "make_status",
    "make_summary",
    "snapshot_dict",
    "status_json",
    "summary_dict",
]

#: loop lag above these is shown in red: a loop this late is starving its workers
LAG_P99_WARN = 0.005
LAG_MAX_WARN = 0.05

_STYLES = {
    "": Style(),
    "bold": Style(bold=True),
    "head": Style(bold=True, dim=True),
    "title": Style(bold=True, color="cyan"),
    "red": Style(color="red"),
    "green": Style(color="green"),
    "yellow": Style(color="yellow"),
}

Run = tuple[str, str]  # (text, style name)
Line = list[Run]
Cell = str | Run  # a table cell: text, or (text, style name)


class Lines:
    """Pre-formatted styled lines: a renderable that costs only the copy of its segments.

    Each line is a sequence of (text, style name) runs. Lines wider than the console are
    cropped by Rich, never wrapped, so the live table keeps its shape in a narrow terminal.
    """

    def __init__(self, lines: Sequence[Sequence[Run]]) -> None:
        self.lines = lines

    @property
    def plain(self) -> str:
        return "\n".join("".join(text for text, _ in line) for line in self.lines)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        newline = Segment.line()
        for line in self.lines:
            for text, style in line:
                yield Segment(text, _STYLES[style])
            yield newline

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        width = max((sum(len(t) for t, _ in line) for line in self.lines), default=0)
        return Measurement(width, width)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _block(
    title: str, header: Sequence[str], rows: Iterable[Sequence[Cell]], *, labels: bool = True
) -> list[Line]:
    """A titled table as lines: numbers right-aligned, the first column left-aligned when it
    holds row labels (`labels`)."""
    cells = [[(c, "") if isinstance(c, str) else c for c in row] for row in rows]
    widths = [len(h) for h in header]
    for row in cells:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], len(text))

    def fit(i: int, text: str) -> str:
        return text.ljust(widths[i]) if i == 0 and labels else text.rjust(widths[i])

    out: list[Line] = [[(title, "title")]]
    out.append([("  " + "  ".join(fit(i, h) for i, h in enumerate(header)), "head")])
    for row in cells:
        line: Line = [("  ", "")]
        for i, (text, style) in enumerate(row):
            line.append((("  " if i else "") + fit(i, text), style))
        out.append(line)
    return out


def make_run_table(snap: RunSnapshot) -> Lines:
    """The live table: gates, stages, totals, health (pure and cheap: see the module doc)."""
    head = (
        f"rpa run {snap.run_id}  elapsed {_dur(snap.elapsed)}  "
        f"done {snap.done_this_run}  failed {snap.failed_this_run}"
    )
    lines: list[Line] = [[(head, "bold")]]
    if snap.stopping:
        lines[0].append(("  [stopping]", "yellow"))
    lines += _block(
        "Gates",
        ("gate", "in use / cap", "waiting", "wait p50", "wait p95", "entered"),
        (
            (g.name, f"{g.in_use} / {g.capacity}", str(g.waiting), _ms(g.wait_p50),
             _ms(g.wait_p95), str(g.entered))
            for g in snap.gates
        ),
    )  # fmt: skip
    lines += _block(
        "Stages",
        ("stage", "running", "done", "failed", "retried", "p50", "p95", "max"),
        (
            (st.name, str(st.running), str(st.done), str(st.failed), str(st.retried),
             _ms(st.durations.p50), _ms(st.durations.p95), _ms(st.durations.max))
            for st in snap.stages
        ),
    )  # fmt: skip
    t = snap.totals
    lines += _block(
        "Totals (queue-wide; other runs as of the last heartbeat)",
        ("queued", "in progress", "retry sched.", "done", "failed", "papers/min", "pages/s",
         "MB/s", "ETA"),
        [(str(t.queued), str(t.in_progress), str(t.retry_scheduled), str(t.done), str(t.failed),
          f"{snap.papers_per_min:.1f}", f"{snap.pages_per_s:.1f}", f"{snap.mb_per_s:.2f}",
          _dur(snap.eta_seconds))],
        labels=False,
    )  # fmt: skip
    p, lag = snap.pool, snap.lag
    lag_style = "red" if lag.p99 > LAG_P99_WARN or lag.max > LAG_MAX_WARN else "green"
    lines += _block(
        "Health",
        ("loop lag p50", "p99", "max", "workers busy / idle", "extract procs alive",
         "busy", "replaced", "crashed", "timed out"),
        [((_ms(lag.p50), lag_style), (_ms(lag.p99), lag_style), (_ms(lag.max), lag_style),
          f"{snap.workers_busy} / {snap.workers_total - snap.workers_busy}",
          f"{p.alive} / {p.workers} {p.mode}", str(p.busy), str(p.replaced), str(p.crashed),
          str(p.timed_out))],
        labels=False,
    )  # fmt: skip
    lines.extend([(m, "yellow")] for m in snap.messages)
    return Lines(lines)


def snapshot_dict(snap: RunSnapshot) -> dict[str, Any]:
    """A JSON line of the snapshot (--log-format json); `"event": "progress"`."""
    t = snap.totals
    return {
        "event": "progress",
        "run_id": snap.run_id,
        "elapsed": round(snap.elapsed, 2),
        "queued": t.queued,
        "in_progress": t.in_progress,
        "retry_scheduled": t.retry_scheduled,
        "done": t.done,
        "failed": t.failed,
        "done_this_run": snap.done_this_run,
        "failed_this_run": snap.failed_this_run,
        "papers_per_min": round(snap.papers_per_min, 2),
        "pages_per_s": round(snap.pages_per_s, 2),
        "mb_per_s": round(snap.mb_per_s, 3),
        "eta_seconds": None if snap.eta_seconds is None else round(snap.eta_seconds),
        "lag_p50_ms": round(snap.lag.p50 * 1000, 2),
        "lag_p99_ms": round(snap.lag.p99 * 1000, 2),
        "lag_max_ms": round(snap.lag.max * 1000, 2),
        "gates": {
            g.name: {
                "in_use": g.in_use,
                "capacity": g.capacity,
                "waiting": g.waiting,
                "wait_p50_ms": round(g.wait_p50 * 1000, 2),
                "wait_p95_ms": round(g.wait_p95 * 1000, 2),
            }
            for g in snap.gates
        },
        "stages": {
            st.name: {
                "running": st.running,
                "done": st.done,
                "failed": st.failed,
                "retried": st.retried,
                "p50_ms": round(st.durations.p50 * 1000, 2),
                "p95_ms": round(st.durations.p95 * 1000, 2),
            }
            for st in snap.stages
        },
        "workers_busy": snap.workers_busy,
        "workers_total": snap.workers_total,
        "extract_procs_alive": snap.pool.alive,
        "extract_procs_replaced": snap.pool.replaced,
        "stopping": snap.stopping,
        "messages": snap.messages,
    }


def format_line(snap: RunSnapshot) -> str:
    """One line for logs when stdout is not a terminal."""
    t = snap.totals
    gates = " ".join(f"{g.name}={g.in_use}/{g.capacity}+{g.waiting}" for g in snap.gates)
    return (
        f"[{_dur(snap.elapsed)}] done {t.done} failed {t.failed} queued {t.queued} "
        f"in-progress {t.in_progress} retry {t.retry_scheduled} | "
        f"{snap.papers_per_min:.1f} papers/min {snap.pages_per_s:.1f} pages/s "
        f"{snap.mb_per_s:.2f} MB/s ETA {_dur(snap.eta_seconds)} | {gates} | "
        f"workers {snap.workers_busy}/{snap.workers_total} busy | "
        f"lag p99 {_ms(snap.lag.p99)} max {_ms(snap.lag.max)}"
        + (" | stopping" if snap.stopping else "")
    )


class SummaryData(Protocol):
    """What the end-of-run summary reads (pipeline.RunSummary has these)."""

    @property
    def run_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def done(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def totals(self) -> Totals: ...
    @property
    def wall_seconds(self) -> float: ...
    @property
    def lag(self) -> WindowStats: ...
    @property
    def failures(self) -> dict[str, int]: ...
    @property
    def slowest(self) -> list[tuple[str, float]]: ...
    @property
    def stages(self) -> list[StageSnapshot]: ...
    @property
    def messages(self) -> list[str]: ...


def make_summary(summary: SummaryData, timings: dict[str, Any] | None = None) -> Group:
    """End-of-run summary. `timings` (status.stage_timings for this run, from the database)
    gives whole-run percentiles and gate waits; without it the in-memory windows are used."""
    t = summary.totals
    minutes = max(summary.wall_seconds / 60, 1e-9)
    head = Text(
        f"run {summary.run_id} {summary.status}: {summary.done} done, {summary.failed} failed "
        f"this run; queue: {t.done} done, {t.failed} failed, {t.remaining} remaining",
        style="bold",
    )
    # Light box, short headers: the summary also lands in logs, where Rich assumes 80 columns.
    title = "Stages (whole run)" if timings is not None else "Stages"
    stages = Table(title=title, title_justify="left", box=None, pad_edge=False)
    cols = ["stage", "done", "failed", "retry", "p50", "p95", "max"]
    if timings is not None:
        cols += ["wait p50", "wait p95"]
    for col in cols:
        stages.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    per_stage = (timings or {}).get("stages", {})
    for st in summary.stages:
        d = per_stage.get(st.name)
        if d is None:
            w = st.durations
            stages.add_row(
                st.name, str(st.done), str(st.failed), str(st.retried), _ms(w.p50), _ms(w.p95),
                _ms(w.max), *(["—", "—"] if timings is not None else []),
            )  # fmt: skip
        else:
            stages.add_row(
                st.name, str(st.done), str(st.failed), str(st.retried), _ms(d["duration_p50"]),
                _ms(d["duration_p95"]), _ms(d["duration_max"]), _ms(d["gate_wait_p50"]),
                _ms(d["gate_wait_p95"]),
            )  # fmt: skip
    parts: list[Any] = [head, stages]
    if summary.failures:
        failures = Table(title="Failures by kind", title_justify="left", box=None, pad_edge=False)
        failures.add_column("kind")
        failures.add_column("count", justify="right")
        for kind, n in sorted(summary.failures.items(), key=lambda kv: -kv[1]):
            failures.add_row(kind, str(n))
        parts.append(failures)
    if summary.slowest:
        slow = Table(title="Slowest papers", title_justify="left", box=None, pad_edge=False)
        slow.add_column("id")
        slow.add_column("seconds", justify="right")
        for job_id, seconds in summary.slowest:
            slow.add_row(job_id, f"{seconds:.2f}")
        parts.append(slow)
    parts.append(
        Text(
            f"total wall time: {summary.wall_seconds:.1f} s ({_dur(summary.wall_seconds)}), "
            f"{summary.done / minutes:.1f} papers/min over the run",
            style="bold",
        )
    )
    lag = summary.lag
    parts.append(
        Text(
            f"event-loop lag over the run: p50 {_ms(lag.p50)}  p99 {_ms(lag.p99)}  "
            f"max {_ms(lag.max)}  ({lag.count} samples)"
        )
    )
    parts.extend(Text(m, style="yellow") for m in summary.messages[-10:])
    return Group(*parts)


def summary_dict(summary: SummaryData, timings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The end-of-run summary as one JSON line (--log-format json); `"event": "summary"`.
    `timings` (whole-run stage timings from the database, seconds) is included when given."""
    t = summary.totals
    return {
        "event": "summary",
        "run_id": summary.run_id,
        "status": summary.status,
        "done": summary.done,
        "failed": summary.failed,
        "queue": {"done": t.done, "failed": t.failed, "remaining": t.remaining},
        "wall_seconds": round(summary.wall_seconds, 3),
        "failures": summary.failures,
        "slowest": [{"id": i, "seconds": round(s, 3)} for i, s in summary.slowest],
        "stages": {
            st.name: {
                "done": st.done,
                "failed": st.failed,
                "retried": st.retried,
                "p50_ms": round(st.durations.p50 * 1000, 2),
                "p95_ms": round(st.durations.p95 * 1000, 2),
                "max_ms": round(st.durations.max * 1000, 2),
            }
            for st in summary.stages
        },
        "lag_p50_ms": round(summary.lag.p50 * 1000, 2),
        "lag_p99_ms": round(summary.lag.p99 * 1000, 2),
        "lag_max_ms": round(summary.lag.max * 1000, 2),
        "timings": None if timings is None else timings["stages"],
        "messages": summary.messages[-10:],
    }


def _when(ts: float | None) -> str:
    if not ts:
        return "—"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def make_status(status: dict[str, Any]) -> Group:
    """`rpa status` as tables (the same data as --json)."""
    t = status["totals"]
    keys = ("queued", "in_progress", "retry_scheduled", "done", "failed", "total")
    totals = Table(title="Queue", title_justify="left")
    for col in ("queued", "in progress", "retry scheduled", "done", "failed", "total"):
        totals.add_column(col, justify="right")
    totals.add_row(*(str(t[k]) for k in keys))

    stages = Table(title="By stage", title_justify="left")
    for col in ("stage", "waiting", "leased", "retry scheduled", "final"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    for stage, row in status["stages"].items():
        stages.add_row(
            stage, *(str(row.get(k, 0)) for k in ("waiting", "leased", "retry_scheduled", "final"))
        )
    parts: list[Any] = [totals, stages]

    stuck = status["stuck"]
    if stuck["count"]:
        table = Table(title=f"Stuck: {stuck['count']} (resume reclaims them)", title_justify="left")
        for col in ("id", "stage", "reason", "lease owner", "since"):
            table.add_column(col)
        for s in stuck["oldest"]:
            table.add_row(s["id"], s["stage"], s["reason"], s["lease_owner"], _when(s["since"]))
        parts.append(table)
    else:
        parts.append(Text("Stuck: none"))

    if status["failures"]:
        table = Table(title="Failures by kind", title_justify="left")
        for col in ("kind", "count", "sample", "message"):
            table.add_column(col, overflow="fold")
        for f in status["failures"]:
            table.add_row(f["kind"], str(f["count"]), f["sample_id"], f["sample_message"] or "")
        parts.append(table)

    retries = status["retries"]
    if retries["next"]:
        table = Table(title=f"Retry scheduled: {retries['count']}", title_justify="left")
        for col in ("id", "attempts", "next attempt", "last error"):
            table.add_column(col, overflow="fold")
        for r in retries["next"]:
            table.add_row(
                r["id"],
                str(r["attempts"]),
                _when(r["next_attempt_at"]),
                f"{r['error_kind']}: {r['error_message']}",
            )
        parts.append(table)

    timings = status["timings"]
    minutes = round(timings["window_seconds"] / 60)
    table = Table(title=f"Stage timings (last {minutes} min)", title_justify="left")
    for col in ("stage", "attempts", "p50", "p95", "max", "gate wait p50", "gate wait p95"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for stage, v in timings["stages"].items():
        table.add_row(
            stage,
            str(v["attempts"]),
            _ms(v["duration_p50"]),
            _ms(v["duration_p95"]),
            _ms(v["duration_max"]),
            _ms(v["gate_wait_p50"]),
            _ms(v["gate_wait_p95"]),
        )
    parts.append(table)
    tp = status["throughput"]
    parts.append(
        Text(
            f"Throughput: {tp['last_1m_papers_per_min']} papers/min (1 min), "
            f"{tp['last_5m_papers_per_min']} (5 min), {tp['last_15m_papers_per_min']} (15 min)"
        )
    )
    for h in status["hosts"]:
        if h["breaker_open"] or h["cooling_down"]:
            parts.append(
                Text(
                    f"host {h['host']}: {'breaker OPEN' if h['breaker_open'] else 'cooling down'}"
                    f" until {_when(h['cooldown_until'])} — {h['reason']}",
                    style="yellow",
                )
            )

    runs = Table(title="Runs", title_justify="left")
    for col in ("run", "command", "status", "started", "ended", "done", "failed", "papers/min"):
        runs.add_column(col)
    for r in status["runs"]:
        runs.add_row(
            r["id"],
            r["command"],
            r["status"],
            _when(r["started_at"]),
            _when(r["ended_at"]),
            str(r["done"]),
            str(r["failed"]),
            str(r["papers_per_min"]),
        )
    parts.append(runs)
    return Group(*parts)


def status_json(status: dict[str, Any]) -> str:
    return json.dumps(status, indent=2, sort_keys=False)

"""Rendering: pure functions from snapshots and status data to Rich renderables and text lines.

The only module besides the CLI that imports Rich. Nothing here reads the clock, the database
or the runner: give it the same snapshot, get the same table.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from rpa.snapshot import RunSnapshot

__all__ = [
    "format_line",
    "make_run_table",
    "make_status",
    "make_summary",
    "snapshot_dict",
]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def make_run_table(snap: RunSnapshot) -> Group:
    """The live table: gates, stages, totals, health."""
    gates = Table(title="Gates", title_justify="left", expand=False)
    for col in ("gate", "in use / cap", "waiting", "wait p50", "wait p95", "entered"):
        gates.add_column(col, justify="left" if col == "gate" else "right")
    for g in snap.gates:
        gates.add_row(
            g.name, f"{g.in_use} / {g.capacity}", str(g.waiting), _ms(g.wait_p50),
            _ms(g.wait_p95), str(g.entered),
        )  # fmt: skip

    stages = Table(title="Stages", title_justify="left")
    for col in ("stage", "running", "done", "failed", "retried", "p50", "p95", "max"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    for st in snap.stages:
        d = st.durations
        stages.add_row(
            st.name, str(st.running), str(st.done), str(st.failed), str(st.retried),
            _ms(d.p50), _ms(d.p95), _ms(d.max),
        )  # fmt: skip

    t = snap.totals
    totals = Table(title="Totals", title_justify="left")
    for col in ("queued", "in progress", "retry sched.", "done", "failed", "papers/min",
                "pages/s", "MB/s", "ETA"):  # fmt: skip
        totals.add_column(col, justify="right")
    totals.add_row(
        str(t.queued), str(t.in_progress), str(t.retry_scheduled), str(t.done), str(t.failed),
        f"{snap.papers_per_min:.1f}", f"{snap.pages_per_s:.1f}", f"{snap.mb_per_s:.2f}",
        _dur(snap.eta_seconds),
    )  # fmt: skip

    p = snap.pool
    health = Table(title="Health", title_justify="left")
    for col in ("loop lag p50", "p99", "max", "workers busy / idle", "extract procs",
                "replaced", "crashed", "timed out"):  # fmt: skip
        health.add_column(col, justify="right")
    lag_style = "red" if snap.lag.p99 > 0.005 or snap.lag.max > 0.05 else "green"
    health.add_row(
        Text(_ms(snap.lag.p50), style=lag_style), Text(_ms(snap.lag.p99), style=lag_style),
        Text(_ms(snap.lag.max), style=lag_style),
        f"{snap.workers_busy} / {snap.workers_total - snap.workers_busy}",
        f"{p.alive}/{p.workers} {p.mode} ({p.busy} busy)", str(p.replaced), str(p.crashed),
        str(p.timed_out),
    )  # fmt: skip
    header = Text(
        f"rpa run {snap.run_id}  elapsed {_dur(snap.elapsed)}  "
        f"done {snap.done_this_run}  failed {snap.failed_this_run}"
        + ("  [stopping]" if snap.stopping else ""),
        style="bold",
    )
    parts: list[Any] = [header, gates, stages, totals, health]
    parts.extend(Text(m, style="yellow") for m in snap.messages)
    return Group(*parts)


def snapshot_dict(snap: RunSnapshot) -> dict[str, Any]:
    """A JSON line of the snapshot (--log-format json)."""
    t = snap.totals
    return {
        "run_id": snap.run_id,
        "elapsed": round(snap.elapsed, 2),
        "queued": t.queued,
        "in_progress": t.in_progress,
        "retry_scheduled": t.retry_scheduled,
        "done": t.done,
        "failed": t.failed,
        "papers_per_min": round(snap.papers_per_min, 2),
        "pages_per_s": round(snap.pages_per_s, 2),
        "mb_per_s": round(snap.mb_per_s, 3),
        "eta_seconds": None if snap.eta_seconds is None else round(snap.eta_seconds),
        "lag_p50_ms": round(snap.lag.p50 * 1000, 2),
        "lag_p99_ms": round(snap.lag.p99 * 1000, 2),
        "lag_max_ms": round(snap.lag.max * 1000, 2),
        "gates": {
            g.name: {"in_use": g.in_use, "capacity": g.capacity, "waiting": g.waiting}
            for g in snap.gates
        },
        "workers_busy": snap.workers_busy,
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
        f"lag p99 {_ms(snap.lag.p99)} max {_ms(snap.lag.max)}"
    )


def make_summary(summary: Any) -> Group:
    """End-of-run summary (a pipeline.RunSummary)."""
    t = summary.totals
    head = Text(
        f"run {summary.run_id} {summary.status} in {_dur(summary.wall_seconds)}: "
        f"{summary.done} done, {summary.failed} failed this run; queue: {t.done} done, "
        f"{t.failed} failed, {t.remaining} remaining",
        style="bold",
    )
    stages = Table(title="Stages", title_justify="left")
    for col in ("stage", "done", "failed", "retried", "p50", "p95", "max"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    for st in summary.stages:
        d = st.durations
        stages.add_row(
            st.name, str(st.done), str(st.failed), str(st.retried), _ms(d.p50), _ms(d.p95),
            _ms(d.max),
        )  # fmt: skip
    parts: list[Any] = [head, stages]
    if summary.failures:
        failures = Table(title="Failures by kind", title_justify="left")
        failures.add_column("kind")
        failures.add_column("count", justify="right")
        for kind, n in sorted(summary.failures.items(), key=lambda kv: -kv[1]):
            failures.add_row(kind, str(n))
        parts.append(failures)
    if summary.slowest:
        slow = Table(title="Slowest papers", title_justify="left")
        slow.add_column("id")
        slow.add_column("seconds", justify="right")
        for job_id, seconds in summary.slowest:
            slow.add_row(job_id, f"{seconds:.2f}")
        parts.append(slow)
    lag = summary.lag
    parts.append(
        Text(
            f"event-loop lag over the run: p50 {_ms(lag.p50)}  p99 {_ms(lag.p99)}  "
            f"max {_ms(lag.max)}  ({lag.count} samples)"
        )
    )
    parts.extend(Text(m, style="yellow") for m in summary.messages[-10:])
    return Group(*parts)


def _when(ts: float | None) -> str:
    if not ts:
        return "—"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def make_status(status: dict[str, Any]) -> Group:
    """`rpa status` as tables (the same data as --json)."""
    t = status["totals"]
    totals = Table(title="Queue", title_justify="left")
    for col in ("queued", "in progress", "retry scheduled", "done", "failed", "total"):
        totals.add_column(col, justify="right")
    totals.add_row(
        *(
            str(t[k])
            for k in ("queued", "in_progress", "retry_scheduled", "done", "failed", "total")
        )
    )

    stages = Table(title="By stage", title_justify="left")
    for col in ("stage", "waiting", "leased", "retry scheduled", "final"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    for stage in ("queued", "downloaded", "extracted", "done", "failed"):
        row = status["stages"].get(stage, {})
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

    retries = status["retries"]["next"]
    if retries:
        table = Table(title="Next retries", title_justify="left")
        for col in ("id", "attempts", "next attempt", "last error"):
            table.add_column(col, overflow="fold")
        for r in retries:
            table.add_row(
                r["id"],
                str(r["attempts"]),
                _when(r["next_attempt_at"]),
                f"{r['error_kind']}: {r['error_message']}",
            )
        parts.append(table)

    timings = status["timings"]["stages"]
    if timings:
        table = Table(title="Stage timings (last 15 min)", title_justify="left")
        for col in ("stage", "attempts", "p50", "p95", "gate wait p50", "gate wait p95"):
            table.add_column(col, justify="left" if col == "stage" else "right")
        for stage, v in timings.items():
            table.add_row(
                stage,
                str(v["attempts"]),
                _ms(v["duration_p50"]),
                _ms(v["duration_p95"]),
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

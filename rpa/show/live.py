"""The live table and the progress lines: pure functions of a `RunSnapshot`.

Nothing here reads the clock, the database or the runner: give it the same snapshot, get the
same table. It is drawn four times a second while the loop works, so it is built as
pre-formatted lines (rpa.show.fmt), every one at most 80 columns.
"""

from __future__ import annotations

from typing import Any

from rpa.run.snapshot import MemorySnapshot, RunSnapshot
from rpa.show.fmt import WIDTH, Line, Lines, block, clip, dur, gib, ms, q

__all__ = [
    "LAG_MAX_WARN",
    "LAG_P99_WARN",
    "format_line",
    "make_run_table",
    "memory_dict",
    "snapshot_dict",
]

#: loop lag above these is shown in red: a loop this late is starving its workers
LAG_P99_WARN = 0.005
LAG_MAX_WARN = 0.05


def make_run_table(snap: RunSnapshot) -> Lines:
    """The live table: gates, stages, queue, speed, health, and what the run has to say."""
    head = (
        f"rpa {snap.run_id}  {dur(snap.elapsed)}  "
        f"done {snap.done_this_run}  failed {snap.failed_this_run}"
    )
    lines: list[Line] = [[(head, "bold")]]
    if snap.stopping:
        lines[0].append(("  [stopping]", "yellow"))
    lines += block(
        "Gates",
        ("gate", "in use/cap", "waiting", "wait p50", "wait p95", "entered"),
        (
            (g.name, f"{g.in_use}/{g.capacity or '∞'}", str(g.waiting), ms(g.wait_p50),
             ms(g.wait_p95), str(g.entered))
            for g in snap.gates
        ),
    )  # fmt: skip
    lines += block(
        "Stages",
        ("stage", "running", "done", "failed", "retried", "p50", "p95", "max"),
        (
            (st.name, str(st.running), str(st.done), str(st.failed), str(st.retried),
             q(st.durations, "p50"), q(st.durations, "p95"), q(st.durations, "max"))
            for st in snap.stages
        ),
    )  # fmt: skip
    t = snap.totals
    lines += block(
        "Queue (all runs; others as of the last heartbeat)",
        ("queued", "in progress", "retry sched.", "done", "failed"),
        [(str(t.queued), str(t.in_progress), str(t.retry_scheduled), str(t.done),
          str(t.failed))],
        labels=False,
    )  # fmt: skip
    lines += block(
        "Speed (last minute)",
        ("papers/min", "pages/s", "MB/s", "ETA"),
        [(f"{snap.papers_per_min:.1f}", f"{snap.pages_per_s:.1f}", f"{snap.mb_per_s:.2f}",
          dur(snap.eta_seconds))],
        labels=False,
    )  # fmt: skip
    lag, p = snap.lag, snap.pool
    lag_style = "red" if lag.p99 > LAG_P99_WARN or lag.max > LAG_MAX_WARN else "green"
    lines += block(
        "Health",
        ("loop lag p50", "p99", "max", "workers busy/idle"),
        [((q(lag, "p50"), lag_style), (q(lag, "p99"), lag_style), (q(lag, "max"), lag_style),
          f"{snap.workers_busy}/{snap.workers_total - snap.workers_busy}")],
        labels=False,
    )  # fmt: skip
    lines += block(
        "Extraction processes",
        ("mode", "alive", "busy", "replaced", "crashed", "timed out"),
        [(p.mode, f"{p.alive}/{p.workers}", str(p.busy), str(p.replaced), str(p.crashed),
          str(p.timed_out))],
    )  # fmt: skip
    m = snap.memory
    if m is not None:
        state_style = {"ok": "green", "paused": "yellow", "shedding": "red"}.get(m.state, "")
        lines += block(
            "Memory",
            ("in use / limit", "source", "state", "pauses", "paused", "shed", "recycled"),
            [(f"{gib(m.used)} / {gib(m.limit)} GiB", m.source, (m.state, state_style),
              str(m.pauses), dur(m.paused_seconds), str(m.shed), str(m.recycled))],
            labels=False,
        )  # fmt: skip
    if snap.waiting:
        lines.append([(clip(f"waiting for {snap.waiting}", WIDTH), "yellow")])
    lines.extend([(clip(m, WIDTH), "yellow")] for m in snap.messages)
    return Lines(lines)


def _ms_or_none(value: float, count: int) -> float | None:
    return round(value * 1000, 2) if count else None


def snapshot_dict(snap: RunSnapshot) -> dict[str, Any]:
    """A JSON line of the snapshot (--log-format json); `"event": "progress"`. A figure with
    no data is null."""
    t = snap.totals
    lag = snap.lag
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
        "lag_p50_ms": _ms_or_none(lag.p50, lag.count),
        "lag_p99_ms": _ms_or_none(lag.p99, lag.count),
        "lag_max_ms": _ms_or_none(lag.max, lag.count),
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
                "p50_ms": _ms_or_none(st.durations.p50, st.durations.count),
                "p95_ms": _ms_or_none(st.durations.p95, st.durations.count),
            }
            for st in snap.stages
        },
        "workers_busy": snap.workers_busy,
        "workers_total": snap.workers_total,
        "extract_procs_alive": snap.pool.alive,
        "extract_procs_replaced": snap.pool.replaced,
        "stopping": snap.stopping,
        "waiting": snap.waiting,
        "messages": snap.messages,
        "memory": memory_dict(snap.memory),
    }


def memory_dict(m: MemorySnapshot | None) -> dict[str, Any] | None:
    """The memory governor as JSON (progress lines and the summary)."""
    if m is None:
        return None
    return {
        "used": m.used,
        "limit": m.limit,
        "source": m.source,
        "state": m.state,
        "pauses": m.pauses,
        "paused_seconds": round(m.paused_seconds, 1),
        "shed": m.shed,
        "recycled": m.recycled,
    }


def format_line(snap: RunSnapshot) -> str:
    """One line for logs when stdout is not a terminal."""
    t = snap.totals
    gates = " ".join(f"{g.name}={g.in_use}/{g.capacity}+{g.waiting}" for g in snap.gates)
    return (
        f"[{dur(snap.elapsed)}] done {t.done} failed {t.failed} queued {t.queued} "
        f"in-progress {t.in_progress} retry {t.retry_scheduled} | "
        f"{snap.papers_per_min:.1f} papers/min {snap.pages_per_s:.1f} pages/s "
        f"{snap.mb_per_s:.2f} MB/s ETA {dur(snap.eta_seconds)} | {gates} | "
        f"workers {snap.workers_busy}/{snap.workers_total} busy | "
        f"lag p99 {q(snap.lag, 'p99')} max {q(snap.lag, 'max')}"
        + (
            f" | memory {snap.memory.state} {gib(snap.memory.used)}/{gib(snap.memory.limit)} GiB"
            if snap.memory
            else ""
        )
        + (f" | waiting for {snap.waiting}" if snap.waiting else "")
        + (" | stopping" if snap.stopping else "")
    )

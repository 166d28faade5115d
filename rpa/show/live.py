"""The live table and the progress lines: pure functions of a `RunSnapshot`.

Nothing here reads the clock, the database or the runner: give it the same snapshot, get the
same table. It is drawn four times a second while the loop works, so it is built as
pre-formatted lines (rpa.show.fmt), every one at most 80 columns.
"""

from __future__ import annotations

from typing import Any

from rpa.run.snapshot import MemorySnapshot, RunSnapshot
from rpa.show.fmt import WIDTH, Line, Lines, block, clip, dur, figure, gib, ms, q

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


def _sampled(snap: RunSnapshot, *stages: str) -> bool:
    """Has one of `stages` ended an attempt well this run? Its rate has a sample then (pages
    come with extractions, bytes with downloads or, from a local source, extractions); before
    it, a rate of 0 is no measure."""
    return any(st.done for st in snap.stages if st.name in stages)


def _rates(snap: RunSnapshot) -> tuple[str, str, str]:
    """Papers a minute, pages and MB a second; '—' for each before its first sample."""
    return (
        figure(snap.papers_per_min, ".1f", snap.done_this_run > 0),
        figure(snap.pages_per_s, ".1f", _sampled(snap, "extract")),
        figure(snap.mb_per_s, ".2f", _sampled(snap, "download", "extract")),
    )


def _progress(snap: RunSnapshot) -> list[Line]:
    """The queue as a whole: how far (settled of all, %), how long still, how fast."""
    t = snap.totals
    settled = t.done + t.failed
    pct = f"{100 * settled / t.total:.0f}%" if t.total else "—"
    head = (
        f"Queue {settled:,}/{t.total:,} settled ({pct})  ETA {dur(snap.eta_seconds)}  "
        f"{_rates(snap)[0]} papers/min"
    )
    parts = (
        f"  {t.queued:,} queued  {t.in_progress:,} in progress  {t.retry_scheduled:,} retry "
        f"sched.  {t.done:,} done  {t.failed:,} failed"
    )
    return [[(clip(head, WIDTH), "bold")], [(clip(parts, WIDTH), "")]]


def _failures(snap: RunSnapshot, width: int) -> list[Line]:
    """Each failure kind met this run: papers failed for good, attempts retried, and the
    last reason, cut to the terminal's width (the summary and `rpa status` show it whole)."""
    if not snap.failures:
        return []
    lines: list[Line] = [[("Failures this run (failed/retried, the last reason)", "title")]]
    kinds = max(len(f.kind) for f in snap.failures)
    counts = max(len(f"{f.failed}/{f.retried}") for f in snap.failures)
    for f in snap.failures:
        label = f"  {f.kind:<{kinds}}  {f'{f.failed}/{f.retried}':>{counts}}  "
        lines.append([(label, ""), (clip(f.last, max(10, width - len(label))), "yellow")])
    return lines


def _health(snap: RunSnapshot) -> list[Line]:
    lag, p = snap.lag, snap.pool
    style = "red" if lag.p99 > LAG_P99_WARN or lag.max > LAG_MAX_WARN else "green"
    _, pages, mb = _rates(snap)
    return [
        [("Speed  ", "title"), (f"{pages} pages/s  {mb} MB/s  "
          f"workers busy/idle {snap.workers_busy}/{snap.workers_total - snap.workers_busy}", "")],
        [("Health  ", "title"), ("loop lag p50 ", ""), (q(lag, "p50"), style), ("  p99 ", ""),
         (q(lag, "p99"), style), ("  max ", ""), (q(lag, "max"), style)],
        [("Extraction  ", "title"), (f"{p.mode}  alive {p.alive}/{p.workers}  busy {p.busy}  "
          f"replaced {p.replaced}  crashed {p.crashed}  timed out {p.timed_out}", "")],
    ]  # fmt: skip


def _used_of(m: MemorySnapshot, sep: str) -> str:
    """Memory used of the limit that binds, in GiB; '—' before the governor's first reading
    (it is then 0 of 0)."""
    if not m.limit:
        return f"—{sep}— GiB"
    return f"{gib(m.used)}{sep}{gib(m.limit)} GiB"


def _memory(snap: RunSnapshot) -> list[Line]:
    m = snap.memory
    if m is None:
        return []
    state_style = {"ok": "green", "paused": "yellow", "shedding": "red"}.get(m.state, "")
    source = f" ({m.source})" if m.limit else ""
    return [
        [("Memory  ", "title"), (f"{_used_of(m, ' / ')}{source}  ", ""),
         (m.state, state_style), (clip(f"  pauses {m.pauses} ({dur(m.paused_seconds)})  "
          f"shed {m.shed}  recycled {m.recycled}", WIDTH - 40), "")]
    ]  # fmt: skip


def make_run_table(snap: RunSnapshot, width: int = WIDTH, height: int | None = None) -> Lines:
    """The live table, what matters first: the run and the queue's progress (settled of all,
    %, ETA, rate), what the run waits for, why papers fail; then stages, speed and health,
    gates, memory, notices. With `height` (the terminal's rows), the parts that matter least
    are left out until it fits (the notices first, the header never). `width` fits the
    failure reasons; every other line is at most 80 columns."""
    head: Line = [(f"rpa {snap.run_id}  {dur(snap.elapsed)}  done {snap.done_this_run}  "
                   f"failed {snap.failed_this_run}", "bold")]  # fmt: skip
    if snap.stopping:
        head.append(("  [stopping]", "yellow"))
    waiting = [[(clip(f"waiting for {snap.waiting}", WIDTH), "yellow")]] if snap.waiting else []
    stages = block(
        "Stages",
        ("stage", "running", "done", "failed", "retried", "p50", "p95", "max"),
        (
            (st.name, str(st.running), str(st.done), str(st.failed), str(st.retried),
             q(st.durations, "p50"), q(st.durations, "p95"), q(st.durations, "max"))
            for st in snap.stages
        ),
    )  # fmt: skip
    gates = block(
        "Gates",
        ("gate", "in use/cap", "waiting", "wait p50", "wait p95", "entered"),
        (
            (g.name, f"{g.in_use}/{g.capacity or '∞'}", str(g.waiting),
             ms(g.wait_p50 if g.entered else None), ms(g.wait_p95 if g.entered else None),
             str(g.entered))
            for g in snap.gates
        ),
    )  # fmt: skip
    notices = [[(clip(m, WIDTH), "yellow")] for m in snap.messages]
    # (display order, parts) in the order they are given room
    parts: list[list[Line]] = [
        [head], _progress(snap), waiting, _failures(snap, width), stages, _health(snap),
        gates, _memory(snap), notices,
    ]  # fmt: skip
    if height is None:
        return Lines([line for part in parts for line in part])
    room = max(1, height)
    kept: list[list[Line]] = []
    for part in parts:
        if len(part) <= room:
            kept.append(part)
            room -= len(part)
        elif room and (part is notices or part is parts[3]):  # newest notices, first kinds
            kept.append(part[len(part) - room :] if part is notices else part[:room])
            room = 0
        else:
            kept.append([])
    return Lines([line for part in kept for line in part])


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
                "uncounted": st.uncounted,
                "p50_ms": _ms_or_none(st.durations.p50, st.durations.count),
                "p95_ms": _ms_or_none(st.durations.p95, st.durations.count),
            }
            for st in snap.stages
        },
        "workers_busy": snap.workers_busy,
        "workers_total": snap.workers_total,
        "extract_procs": snap.pool.workers,  # the pool's size: CPUs rpa may use, or the knob
        "extract_procs_alive": snap.pool.alive,
        "extract_procs_replaced": snap.pool.replaced,
        "stopping": snap.stopping,
        "waiting": snap.waiting,
        "messages": snap.messages,
        "memory": memory_dict(snap.memory),
        "failures": [
            {"kind": f.kind, "failed": f.failed, "retried": f.retried, "last": f.last}
            for f in snap.failures
        ],
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
    papers, pages, mb = _rates(snap)
    return (
        f"[{dur(snap.elapsed)}] done {t.done} failed {t.failed} queued {t.queued} "
        f"in-progress {t.in_progress} retry {t.retry_scheduled} | "
        f"{papers} papers/min {pages} pages/s {mb} MB/s ETA {dur(snap.eta_seconds)} | {gates} | "
        f"workers {snap.workers_busy}/{snap.workers_total} busy | "
        f"lag p99 {q(snap.lag, 'p99')} max {q(snap.lag, 'max')}"
        + (f" | memory {snap.memory.state} {_used_of(snap.memory, '/')}" if snap.memory else "")
        + (f" | waiting for {snap.waiting}" if snap.waiting else "")
        + (
            " | failed/retried "
            + " ".join(f"{f.kind}={f.failed}/{f.retried}" for f in snap.failures)
            if snap.failures
            else ""
        )
        + (" | stopping" if snap.stopping else "")
    )

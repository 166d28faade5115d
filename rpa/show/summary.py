"""The end-of-run summary, as lines (at most 80 columns) or one JSON object."""

from __future__ import annotations

from typing import Any, Protocol

from rpa.hints import command_hint
from rpa.metrics import WindowStats
from rpa.queue.model import Totals
from rpa.run.snapshot import MemorySnapshot, StageSnapshot
from rpa.show.fmt import WIDTH, Line, Lines, block, dur, gib, ms, q, wrap
from rpa.show.live import memory_dict
from rpa.units import count

__all__ = ["SummaryData", "make_summary", "summary_dict"]

#: a stage's retries not charged to their papers (rpa.run.policy): (what, what of them)
UNCOUNTED = {
    "download": ("download", "retried after no answer or a cut from their host"),
    "extract": ("extraction", "tried again alone or after a memory shed"),
}


class SummaryData(Protocol):
    """What the end-of-run summary reads (rpa.run.runner.RunSummary has these)."""

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
    def reasons(self) -> dict[str, str]: ...
    @property
    def slowest(self) -> list[tuple[str, float, float]]: ...
    @property
    def stages(self) -> list[StageSnapshot]: ...
    @property
    def messages(self) -> list[str]: ...
    @property
    def crash(self) -> str | None: ...
    @property
    def memory(self) -> MemorySnapshot | None: ...
    @property
    def stamp_mismatches(self) -> int: ...
    @property
    def stamp_examples(self) -> list[str]: ...


def make_summary(summary: SummaryData, timings: dict[str, Any] | None = None) -> Lines:
    """End-of-run summary. `timings` (this run's stage timings from the database) gives the
    whole-run percentiles and gate waits; without it the in-memory windows are used."""
    t = summary.totals
    head = (
        f"run {summary.run_id} {summary.status}: {summary.done} done, {summary.failed} failed "
        "this run"
    )
    queue = f"queue: {t.done} done, {t.failed} failed, {t.remaining} remaining"
    lines: list[Line] = [[(head, "bold")], [(queue, "bold")]]
    if summary.crash:
        lines += wrap(f"the run crashed: {summary.crash}", "red", indent="  ")
        resume = command_hint("resume")
        lines.append([(f"fix the cause, then `{resume}` continues where this stopped", "red")])
    per_stage = (timings or {}).get("stages", {})
    rows = []
    waits = []
    for st in summary.stages:
        d = per_stage.get(st.name)
        if d is None:
            figures = (q(st.durations, "p50"), q(st.durations, "p95"), q(st.durations, "max"))
        else:
            figures = (ms(d["duration_p50"]), ms(d["duration_p95"]), ms(d["duration_max"]))
            if st.name != "outcome":  # the outcome stage has no gate of its own
                waits.append((st.name, ms(d["gate_wait_p50"]), ms(d["gate_wait_p95"])))
        rows.append((st.name, str(st.done), str(st.failed), str(st.retried), *figures))
    title = "Stages (whole run)" if timings is not None else "Stages"
    lines += block(title, ("stage", "done", "failed", "retried", "p50", "p95", "max"), rows)
    uncounted = []
    for st in (st for st in summary.stages if st.uncounted):
        noun, what = UNCOUNTED.get(st.name, (f"{st.name} call", "given back (service out, memory)"))
        uncounted.append(f"{count(st.uncounted, noun)} {what}")
    if uncounted:  # not in `retried`: that is the retries charged to their papers
        lines += wrap(
            ", ".join(uncounted) + " (retries not counted against the papers)", "", indent="  "
        )
    if waits:
        lines += block("Waits before each stage's gate (whole run)", ("stage", "p50", "p95"), waits)
    if summary.failures:
        lines.append([("Failures by kind (the last reason of each, whole)", "title")])
        for kind, n in sorted(summary.failures.items(), key=lambda kv: (-kv[1], kv[0])):
            label = f"  {kind:<14} {n:>5}  "
            reason = wrap(summary.reasons.get(kind, ""), "yellow", width=WIDTH - len(label))
            lines.append([(label, ""), *reason[0]])
            lines += [[(" " * len(label), ""), *rest] for rest in reason[1:]]
    if summary.slowest:
        slowest = ((i, f"{work:.2f}", f"{wait:.2f}") for i, work, wait in summary.slowest)
        lines += block(
            "Slowest papers (by their own work; time spent waiting apart)",
            ("id", "work s", "waited s"),
            slowest,
            label_width=56,
        )
    minutes = max(summary.wall_seconds / 60, 1e-9)
    lines.append(
        [(f"total wall time: {summary.wall_seconds:.1f} s ({dur(summary.wall_seconds)}), "
          f"{summary.done / minutes:.1f} papers/min over the run", "bold")]
    )  # fmt: skip
    lag = summary.lag
    if lag.count:
        lines.append(
            [(f"event-loop lag over the run: p50 {q(lag, 'p50')}  p99 {q(lag, 'p99')}  "
              f"max {q(lag, 'max')}  ({lag.count} samples)", "")]
        )  # fmt: skip
    else:
        lines.append(
            [("event-loop lag over the run: not sampled (a run shorter than one 10 ms sample)",
              "")]
        )  # fmt: skip
    m = summary.memory
    if m is not None and not m.limit:  # no reading yet: a run shorter than one sample
        lines.append([("memory: not sampled (a run shorter than one 250 ms sample)", "")])
    elif m is not None:
        lines.append(
            [(f"memory: {m.pauses} pauses ({dur(m.paused_seconds)} paused), {m.shed} papers "
              f"shed, {m.recycled} processes recycled (limit {gib(m.limit)} GiB, {m.source})",
              "yellow" if m.pauses or m.shed else "")]
        )  # fmt: skip
    if summary.stamp_mismatches:
        lines += wrap(
            f"{count(summary.stamp_mismatches, 'PDF')} "
            f"{'carries' if summary.stamp_mismatches == 1 else 'carry'} another paper's arXiv "
            "stamp (the metadata "
            "of their IDs may not be theirs; their records' checks.stamp_mismatch): "
            + ", ".join(summary.stamp_examples)
            + (", ..." if summary.stamp_mismatches > len(summary.stamp_examples) else ""),
            "yellow",
        )
    for message in summary.messages[-10:]:
        lines += wrap(message, "yellow", indent="  ")
    return Lines(lines)


def summary_dict(summary: SummaryData, timings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The end-of-run summary as one JSON line (--log-format json); `"event": "summary"`.
    `timings` (whole-run stage timings from the database, seconds) is included when given."""
    t = summary.totals
    lag = summary.lag

    def ms_or_none(value: float, count: int) -> float | None:
        return round(value * 1000, 2) if count else None

    return {
        "event": "summary",
        "run_id": summary.run_id,
        "status": summary.status,
        "crash": summary.crash,
        "done": summary.done,
        "failed": summary.failed,
        "queue": {"done": t.done, "failed": t.failed, "remaining": t.remaining},
        "wall_seconds": round(summary.wall_seconds, 3),
        "failures": summary.failures,
        "reasons": summary.reasons,
        "slowest": [
            {"id": i, "work_seconds": round(work, 3), "wait_seconds": round(wait, 3)}
            for i, work, wait in summary.slowest
        ],
        "stamp_mismatches": {
            "count": summary.stamp_mismatches,
            "examples": summary.stamp_examples,
        },
        "stages": {
            st.name: {
                "done": st.done,
                "failed": st.failed,
                "retried": st.retried,
                "uncounted": st.uncounted,
                "p50_ms": ms_or_none(st.durations.p50, st.durations.count),
                "p95_ms": ms_or_none(st.durations.p95, st.durations.count),
                "max_ms": ms_or_none(st.durations.max, st.durations.count),
            }
            for st in summary.stages
        },
        "lag_p50_ms": ms_or_none(lag.p50, lag.count),
        "lag_p99_ms": ms_or_none(lag.p99, lag.count),
        "lag_max_ms": ms_or_none(lag.max, lag.count),
        "timings": None if timings is None else timings["stages"],
        "messages": summary.messages[-10:],
        "memory": memory_dict(summary.memory),
    }

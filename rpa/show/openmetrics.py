"""`rpa status` figures as OpenMetrics text, for Prometheus' node_exporter textfile collector.

`render_openmetrics(status)` is pure: the `rpa status --json` dict (and, during a run, the
run's live snapshot) in, text out. Every metric is a gauge: the figures are states and sliding
windows, not monotonic counters, and gauges read the same in OpenMetrics and in the older
Prometheus text format the textfile collector parses (where `# UNIT` and `# EOF` are comments).

Reading the status and writing the file are `rpa.report.status`'s (`write_status_metrics`,
`write_metrics_file`): nothing here opens the queue or a file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from rpa.run.snapshot import RunSnapshot

__all__ = ["render_openmetrics"]

Labels = dict[str, str]
Sample = tuple[Labels, float | None]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def gauge(self, name: str, help_text: str, samples: Iterable[Sample]) -> None:
        """One metric family; samples whose value is None (no data) are left out."""
        self.lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} gauge")
        if name.endswith("_seconds"):
            self.lines.append(f"# UNIT {name} seconds")
        for labels, value in samples:
            if value is None:
                continue
            if labels:
                inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
                self.lines.append(f"{name}{{{inner}}} {_number(value)}")
            else:
                self.lines.append(f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join([*self.lines, "# EOF"]) + "\n"


_QUANTILES = (("0.5", "p50"), ("0.95", "p95"))


def render_openmetrics(status: dict[str, Any], run: RunSnapshot | None = None) -> str:
    """The status dict (schema: README) as OpenMetrics text; `run` adds the live figures of
    the run writing the file (gates, loop lag, workers, extraction processes)."""
    w = _Writer()
    w.gauge(
        "rpa_status_generated_timestamp_seconds",
        "When these figures were read from the queue database (Unix time).",
        [({}, status["generated_at"])],
    )
    totals = status["totals"]
    w.gauge(
        "rpa_queue_jobs",
        "Jobs in the queue by state (queued, in_progress, retry_scheduled, done, failed).",
        [({"state": k}, v) for k, v in totals.items() if k != "total"],
    )
    w.gauge(
        "rpa_stage_jobs",
        "Jobs by checkpoint stage and state (waiting, leased, retry_scheduled, final).",
        [
            ({"stage": stage, "state": state}, n)
            for stage, states in status["stages"].items()
            for state, n in states.items()
        ],
    )
    stuck = status["stuck"]
    w.gauge(
        "rpa_stuck_jobs",
        "Jobs leased by a dead run or past their lease expiry (resume reclaims them).",
        [({}, stuck["count"])],
    )
    oldest = min((s["since"] for s in stuck["oldest"] if s["since"]), default=None)
    w.gauge(
        "rpa_stuck_oldest_timestamp_seconds",
        "Last update of the oldest stuck job (Unix time); absent when none is stuck.",
        [({}, oldest)],
    )
    w.gauge(
        "rpa_failed_jobs",
        "Jobs failed for good, by error kind.",
        [({"kind": f["kind"] or "unknown"}, f["count"]) for f in status["failures"]],
    )
    retries = status["retries"]
    w.gauge(
        "rpa_retry_next_timestamp_seconds",
        "Earliest next attempt of a retry-scheduled job (Unix time); absent when none.",
        [({}, retries["next"][0]["next_attempt_at"] if retries["next"] else None)],
    )
    timings = status["timings"]
    window = f"{round(timings['window_seconds'])}s"
    stages = timings["stages"]
    w.gauge(
        "rpa_stage_attempts",
        "Stage attempts in the timing window, by stage and outcome.",
        [
            ({"stage": stage, "outcome": outcome, "window": window}, n)
            for stage, v in stages.items()
            for outcome, n in v["outcomes"].items()
        ],
    )
    w.gauge(
        "rpa_stage_duration_seconds",
        "Stage attempt duration percentiles over the timing window (quantile 1 = max).",
        [
            ({"stage": stage, "quantile": q, "window": window}, v[f"duration_{key}"])
            for stage, v in stages.items()
            for q, key in (*_QUANTILES, ("1", "max"))
        ],
    )
    w.gauge(
        "rpa_stage_gate_wait_seconds",
        "Wait before a stage's gate, percentiles over the timing window.",
        [
            ({"stage": stage, "quantile": q, "window": window}, v[f"gate_wait_{key}"])
            for stage, v in stages.items()
            for q, key in _QUANTILES
        ],
    )
    w.gauge(
        "rpa_throughput_papers_per_minute",
        "Papers completed per minute over the last 1, 5 and 15 minutes.",
        [
            ({"window": f"{m}m"}, status["throughput"][f"last_{m}m_papers_per_min"])
            for m in (1, 5, 15)
        ],
    )
    runs = status["runs"]
    w.gauge(
        "rpa_run_info",
        "Recent runs (newest first in `rpa status`): command and status.",
        [({"run": r["id"], "command": r["command"], "status": r["status"]}, 1) for r in runs],
    )
    w.gauge(
        "rpa_run_done_jobs",
        "Jobs a recent run completed.",
        [({"run": r["id"]}, r["done"]) for r in runs],
    )
    w.gauge(
        "rpa_run_failed_jobs",
        "Jobs a recent run failed for good.",
        [({"run": r["id"]}, r["failed"]) for r in runs],
    )
    w.gauge(
        "rpa_run_papers_per_minute",
        "A recent run's average throughput (to its end, or to now while it runs).",
        [({"run": r["id"]}, r["papers_per_min"]) for r in runs],
    )
    w.gauge(
        "rpa_run_start_timestamp_seconds",
        "When a recent run started (Unix time).",
        [({"run": r["id"]}, r["started_at"]) for r in runs],
    )
    w.gauge(
        "rpa_run_end_timestamp_seconds",
        "When a recent run ended (Unix time); absent while it runs.",
        [({"run": r["id"]}, r["ended_at"]) for r in runs],
    )
    w.gauge(
        "rpa_run_waiting_since_timestamp_seconds",
        "Since when a run waits (a full disk, memory, a host down, the next retry: `rpa "
        "status` says what; Unix time, as of its last heartbeat); absent while it does not.",
        [({"run": r["id"]}, r.get("waiting_since")) for r in runs],
    )
    hosts = status["hosts"]
    w.gauge(
        "rpa_host_breaker_open",
        "1 when the host refused us (403) and downloads from it are stopped.",
        [({"host": h["host"]}, int(h["breaker_open"])) for h in hosts],
    )
    w.gauge(
        "rpa_host_cooldown_until_timestamp_seconds",
        "No request to the host before this (Retry-After; Unix time).",
        [({"host": h["host"]}, h["cooldown_until"]) for h in hosts],
    )
    if run is not None:
        _live(w, run)
    return w.text()


def _live(w: _Writer, run: RunSnapshot) -> None:
    rid = {"run": run.run_id}
    w.gauge(
        "rpa_live_gate_in_use",
        "Holders inside a gate now (rate gates: requests in the current period).",
        [({**rid, "gate": g.name}, g.in_use) for g in run.gates],
    )
    w.gauge(
        "rpa_live_gate_capacity",
        "Capacity of a gate.",
        [({**rid, "gate": g.name}, g.capacity) for g in run.gates],
    )
    w.gauge(
        "rpa_live_gate_waiting",
        "Tasks waiting before a gate now.",
        [({**rid, "gate": g.name}, g.waiting) for g in run.gates],
    )
    w.gauge(
        "rpa_live_gate_wait_seconds",
        "Wait before a gate, percentiles over the last minute.",
        [
            ({**rid, "gate": g.name, "quantile": q}, getattr(g, f"wait_{key}"))
            for g in run.gates
            for q, key in _QUANTILES
        ],
    )
    lag = run.lag
    w.gauge(
        "rpa_live_loop_lag_seconds",
        "Event-loop lag over the last minute (quantile 1 = max).",
        [
            ({**rid, "quantile": q}, value)
            for q, value in (("0.5", lag.p50), ("0.99", lag.p99), ("1", lag.max))
        ],
    )
    w.gauge(
        "rpa_live_workers",
        "Logical workers of the run, busy or idle.",
        [
            ({**rid, "state": "busy"}, run.workers_busy),
            ({**rid, "state": "idle"}, run.workers_total - run.workers_busy),
        ],
    )
    p = run.pool
    w.gauge(
        "rpa_live_extract_processes",
        "Extraction workers: configured, alive, busy; replaced, crashed, timed out so far.",
        [
            ({**rid, "state": state}, value)
            for state, value in (
                ("configured", p.workers),
                ("alive", p.alive),
                ("busy", p.busy),
                ("replaced", p.replaced),
                ("crashed", p.crashed),
                ("timed_out", p.timed_out),
            )
        ],
    )
    for name, unit, value in (
        ("rpa_live_papers_per_minute", "papers per minute", run.papers_per_min),
        ("rpa_live_pages_per_second", "pages per second", run.pages_per_s),
        ("rpa_live_megabytes_per_second", "MB (10^6 bytes) downloaded per second", run.mb_per_s),
    ):
        w.gauge(name, f"The run's throughput over the last minute: {unit}.", [(rid, value)])
    w.gauge(
        "rpa_live_eta_seconds",
        "Estimated time to empty the queue at the current throughput; absent when unknown.",
        [(rid, run.eta_seconds)],
    )
    m = run.memory
    if m is not None:
        w.gauge(
            "rpa_live_memory_bytes",
            "Memory in use and the limit that binds it (the cgroup's, else the machine's).",
            [({**rid, "kind": "used", "source": m.source}, m.used),
             ({**rid, "kind": "limit", "source": m.source}, m.limit)],
        )  # fmt: skip
        w.gauge(
            "rpa_live_memory_state",
            "The memory governor's state: 1 for the one it is in (ok, paused, shedding).",
            [({**rid, "state": st}, int(m.state == st)) for st in ("ok", "paused", "shedding")],
        )
        w.gauge(
            "rpa_live_memory_actions",
            "What the memory governor did so far: pauses, papers shed, processes recycled.",
            [({**rid, "action": "pauses"}, m.pauses), ({**rid, "action": "shed"}, m.shed),
             ({**rid, "action": "recycled"}, m.recycled)],
        )  # fmt: skip
        w.gauge(
            "rpa_live_memory_paused_seconds",
            "Seconds the run has spent paused for memory.",
            [(rid, m.paused_seconds)],
        )

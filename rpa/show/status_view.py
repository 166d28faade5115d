"""`rpa status` as lines (the same data as `--json`), every line at most 80 columns."""

from __future__ import annotations

import json
from typing import Any

from rpa.hints import command_hint
from rpa.show.fmt import WIDTH, Line, Lines, block, clip, dur, ms, when, wrap

__all__ = ["make_status"]


def _detail(text: str, indent: int = 6, style: str = "") -> list[Line]:
    """`text` under the line it explains, whole: wrapped, never cut (a reason can be long)."""
    pad = " " * indent
    return [[(pad, ""), *line] for line in wrap(text, style, width=WIDTH - indent)]


def make_status(status: dict[str, Any]) -> Lines:
    t = status["totals"]
    lines: list[Line] = [
        [(clip(f"Queue {status.get('database', '')}  (read {when(status['generated_at'])})", WIDTH),
          "bold")]
    ]  # fmt: skip
    lines += block(
        "Totals",
        ("queued", "in progress", "retry sched.", "done", "failed", "total"),
        [tuple(str(t[k]) for k in ("queued", "in_progress", "retry_scheduled", "done",
                                    "failed", "total"))],
        labels=False,
    )  # fmt: skip
    lines += block(
        "By stage",
        ("stage", "waiting", "leased", "retry sched.", "final"),
        (
            (
                stage,
                *(str(row.get(k, 0)) for k in ("waiting", "leased", "retry_scheduled", "final")),
            )
            for stage, row in status["stages"].items()
        ),
    )
    stuck = status["stuck"]
    if stuck["count"]:
        lines.append([(f"Stuck: {stuck['count']} (`rpa resume` reclaims them)", "title")])
        for s in stuck["oldest"]:
            lines.append([(clip(f"  {s['id']}  {s['stage']}  {s['reason']}  since "
                                f"{when(s['since'])}", WIDTH), "")])  # fmt: skip
            lines += _detail(f"lease owner {s['lease_owner']}")
    else:
        lines.append([("Stuck: none", "")])
    if status["failures"]:
        lines.append([("Failures by kind", "title")])
        for f in status["failures"]:
            lines.append(
                [(clip(f"  {f['kind']:<14} {f['count']:>7}  e.g. {f['sample_id']}", WIDTH), "")]
            )
            lines += _detail(f["sample_message"] or "", style="yellow")
        failures, retry = command_hint("failures"), command_hint("retry")
        lines.append([(f"  `{failures}` lists them; `{retry}` puts them back in the queue", "")])
    retries = status["retries"]
    if retries["next"]:
        lines.append([(f"Retry scheduled: {retries['count']}", "title")])
        for r in retries["next"]:
            lines.append([(clip(f"  {r['id']}  attempts {r['attempts']}  next "
                                f"{when(r['next_attempt_at'])}", WIDTH), "")])  # fmt: skip
            lines += _detail(f"{r['error_kind']}: {r['error_message']}", style="yellow")
    timings = status["timings"]
    lines += block(
        f"Stage timings (last {round(timings['window_seconds'] / 60)} min)",
        ("stage", "attempts", "p50", "p95", "max", "wait p50", "wait p95"),
        (
            (stage, str(v["attempts"]), ms(v["duration_p50"]), ms(v["duration_p95"]),
             ms(v["duration_max"]), ms(v["gate_wait_p50"]), ms(v["gate_wait_p95"]))
            for stage, v in timings["stages"].items()
        ),
        label_width=9,
    )  # fmt: skip
    lines += _user_stages(status.get("user_stages") or {})
    tp = status["throughput"]
    lines.append(
        [(f"Throughput: {tp['last_1m_papers_per_min']} papers/min (1 min), "
          f"{tp['last_5m_papers_per_min']} (5 min), {tp['last_15m_papers_per_min']} (15 min)", "")]
    )  # fmt: skip
    for h in status["hosts"]:
        if h["breaker_open"] or h["cooling_down"]:
            state = "refused us (breaker open)" if h["breaker_open"] else (
                f"down: probed again at {when(h['cooldown_until'])}"
                if (h["reason"] or "").startswith("down since")
                else f"cooling down until {when(h['cooldown_until'])}")  # fmt: skip
            lines.append([(clip(f"host {h['host']}: {state}", WIDTH), "yellow")])
            lines += _detail(h["reason"] or "", style="yellow")
    held = status.get("held") or {}
    if held.get("count"):
        lines.append([(clip(f"held: {held['count']} queued papers wait for a host that refused "
                            "us; the next run asks again", WIDTH), "yellow")])  # fmt: skip
        lines += _detail(f"{held['sample_id']}: {held['sample_kind']}: "
                         f"{held['sample_message']}", style="yellow")  # fmt: skip
    settings = status.get("settings") or {}
    if settings:
        lines.append([("Settings of this queue (a resume uses these)", "title")])
        for key, value in settings.items():
            text = value if isinstance(value, str) else json.dumps(value)
            if key.startswith("stage.") and isinstance(value, dict):  # a stage of yours
                text = _stage_setting(value)
            lines.append([(clip(f"  {key:<17} {text}", WIDTH), "")])
    runs = status["runs"]
    lines += block(
        "Runs (newest first)",
        ("run", "status", "started", "done", "failed", "papers/min"),
        (
            (r["id"], r["status"], when(r["started_at"]), str(r["done"]), str(r["failed"]),
             str(r["papers_per_min"]))
            for r in runs
        ),
        label_width=24,
    )  # fmt: skip
    for r in runs:
        if r["status"] in ("running", "dead"):
            text = (
                f"{r['id']}: {r['command']} on {r['host']}, pid {r['pid']}, "
                f"last heartbeat {when(r['heartbeat_at'])}{_silence(r, status['generated_at'])}"
            )
            lines += _detail(text, indent=4)
            if r.get("waiting"):
                lines += _detail(_waiting(r, status["generated_at"]), style="yellow")
    return Lines(lines)


def _silence(run: dict[str, Any], now: float) -> str:
    """How long ago a live run's last heartbeat was; a run silent for more than two beats
    (killed, paused, cut off: which, no one can tell yet) is called so, with when it counts
    as dead."""
    if run["status"] != "running" or not run["heartbeat_at"]:
        return ""
    ago = max(0.0, now - run["heartbeat_at"])
    beat = (run["dead_after"] - 5.0) / 3  # rpa.queue.model.dead_after
    if ago <= 2 * beat + 1:
        return f" ({ago:.0f}s ago)"
    return f" ({ago:.0f}s ago: silent; dead once {run['dead_after']:.0f}s pass without one)"


def _stage_setting(v: dict[str, Any]) -> str:
    """A stage the queue keeps, in a line: its call first."""
    after = f", after {'+'.join(v.get('after') or [])}" if v.get("after") else ""
    return (
        f"{v.get('call')} ({v.get('kind')}, {v.get('concurrency')} at once, rate "
        f"{v.get('rate') or 'none'}, timeout {v.get('timeout')}s, version {v.get('version')}"
        f"{after})"
    )


def _waiting(run: dict[str, Any], now: float) -> str:
    """What a run waits for, since when and for how long (a dead run: what it last said)."""
    since = run.get("waiting_since")
    lasted = f" ({dur(now - since)})" if since is not None else ""
    said = "it last said it was waiting" if run["status"] == "dead" else "waiting"
    return f"{said} since {when(since)}{lasted} for {run['waiting']}"


def _user_stages(stages: dict[str, Any]) -> list[Line]:
    """The user's stages (rpa.stages): papers per state, versions, failures by kind."""
    if not stages:
        return []
    lines = block(
        "Your stages",
        ("stage", "done", "running", "retry", "failed", "versions"),
        (
            (name, str(v["done"]), str(v["running"]), str(v["retry"]), str(v["failed"]),
             ", ".join(v["versions"]))
            for name, v in stages.items()
        ),
        label_width=12,
    )  # fmt: skip
    for name, v in stages.items():
        for kind, n in sorted(v["failures"].items(), key=lambda kv: -kv[1]):
            lines += _detail(f"{name}: {n} failed with {kind}", indent=4, style="yellow")
    return lines

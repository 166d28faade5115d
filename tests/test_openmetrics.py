"""--metrics-file: the status as OpenMetrics text, checked line by line (and with
prometheus_client's own parser when it is installed), written atomically."""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from test_render import snapshot
from test_status import NOW, build_queue

from rpa.queue import open_store, reads
from rpa.report import write_metrics_file
from rpa.show.openmetrics import render_openmetrics

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = rf'{NAME}="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(\{{{LABEL}(?:,{LABEL})*\}})? (\S+)$")
META = re.compile(rf"^# (HELP|TYPE|UNIT) ({NAME})(?: (.*))?$")


def status_of(path: Path) -> dict[str, Any]:
    store = open_store(path, readonly=True)
    try:
        return reads.status(store, NOW)
    finally:
        store.close()


@pytest.fixture
def status(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "q.db"
    build_queue(path)
    return status_of(path)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Check the exposition format strictly and return {(name, labels): value}."""
    assert text.endswith("\n# EOF\n")
    lines = text[: -len("# EOF\n")].splitlines()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    seen: list[str] = []  # families in order; each appears once, its metadata first
    meta: dict[str, dict[str, str]] = {}
    for line in lines:
        assert line, "blank lines are not allowed"
        if line.startswith("#"):
            m = META.match(line)
            assert m, f"bad metadata line: {line!r}"
            kind, name, rest = m.groups()
            assert name.startswith("rpa_")
            if kind == "HELP":
                assert name not in meta, f"family {name} appears twice"
                seen.append(name)
                meta[name] = {}
            assert seen and seen[-1] == name, f"metadata of {name} is not together"
            assert kind not in meta[name], f"two {kind} lines for {name}"
            meta[name][kind] = rest or ""
            if kind == "TYPE":
                assert rest == "gauge"
            if kind == "UNIT":
                assert name.endswith("_" + (rest or ""))
            continue
        m = SAMPLE.match(line)
        assert m, f"bad sample line: {line!r}"
        name, labels, value = m.groups()
        assert seen and name == seen[-1], f"sample {name} outside its family"
        assert {"HELP", "TYPE"} <= set(meta[name])
        number = float(value)
        assert not math.isnan(number)
        pairs = tuple(re.findall(rf'({NAME})="((?:[^"\\]|\\.)*)"', labels or ""))
        assert (name, pairs) not in samples, f"duplicate series: {line!r}"
        samples[(name, pairs)] = number
    return samples


def test_status_figures_as_openmetrics(status: dict[str, Any]) -> None:
    samples = parse(render_openmetrics(status))
    assert samples[("rpa_queue_jobs", (("state", "done"),))] == 3
    assert samples[("rpa_queue_jobs", (("state", "in_progress"),))] == 6
    assert samples[("rpa_stage_jobs", (("stage", "queued"), ("state", "leased")))] == 6
    assert samples[("rpa_stuck_jobs", ())] == 3
    assert samples[("rpa_failed_jobs", (("kind", "not_found"),))] == 1
    assert samples[("rpa_retry_next_timestamp_seconds", ())] == NOW + 300
    key = (("stage", "download"), ("quantile", "0.95"), ("window", "900s"))
    assert samples[("rpa_stage_duration_seconds", key)] == pytest.approx(0.096)
    assert samples[("rpa_stage_gate_wait_seconds", key)] == pytest.approx(0.095)
    max_key = (("stage", "download"), ("quantile", "1"), ("window", "900s"))
    assert samples[("rpa_stage_duration_seconds", max_key)] == 0.5
    # a stage with no attempts has no percentile samples (no data is not zero)
    assert not [k for k in samples if k[0] == "rpa_stage_duration_seconds" and
                ("stage", "outcome") in k[1]]  # fmt: skip
    assert samples[("rpa_throughput_papers_per_minute", (("window", "5m"),))] == 0.6
    run_a = (("run", "run-a"), ("command", "run"), ("status", "running"))
    assert samples[("rpa_run_info", run_a)] == 1
    assert samples[("rpa_run_done_jobs", (("run", "run-a"),))] == 3
    assert ("rpa_run_end_timestamp_seconds", (("run", "run-a"),)) not in samples
    assert not any(name.startswith("rpa_live_") for name, _ in samples)


def test_live_figures_of_a_run_and_label_escaping(status: dict[str, Any]) -> None:
    status["hosts"] = [
        {"host": 'we"ird\\host', "cooldown_until": NOW + 60, "cooling_down": True,
         "breaker_open": True, "reason": "403\nAccess Denied"}
    ]  # fmt: skip
    status["failures"][0]["kind"] = 'odd "kind"\n'
    samples = parse(render_openmetrics(status, snapshot()))
    assert samples[("rpa_host_breaker_open", (("host", 'we\\"ird\\\\host'),))] == 1
    assert ("rpa_failed_jobs", (("kind", 'odd \\"kind\\"\\n'),)) in samples
    rid = ("run", "20260101T000000-abcdef")
    assert samples[("rpa_live_gate_waiting", (rid, ("gate", "extract")))] == 18
    assert samples[("rpa_live_gate_capacity", (rid, ("gate", "download")))] == 64
    assert samples[("rpa_live_loop_lag_seconds", (rid, ("quantile", "0.99")))] == 0.0031
    assert samples[("rpa_live_workers", (rid, ("state", "idle")))] == 1
    assert samples[("rpa_live_extract_processes", (rid, ("state", "replaced")))] == 1
    assert samples[("rpa_live_papers_per_minute", (rid,))] == 74.5


def test_prometheus_client_parses_it(status: dict[str, Any]) -> None:
    parser = pytest.importorskip("prometheus_client.openmetrics.parser")
    status["failures"][0]["kind"] = 'odd "kind"\n'
    families = {
        f.name: f
        for f in parser.text_string_to_metric_families(render_openmetrics(status, snapshot()))
    }
    assert all(f.type == "gauge" for f in families.values())
    jobs = {s.labels["state"]: s.value for s in families["rpa_queue_jobs"].samples}
    assert jobs == {"queued": 1, "in_progress": 6, "retry_scheduled": 1, "done": 3, "failed": 2}
    kinds = {s.labels["kind"] for s in families["rpa_failed_jobs"].samples}
    assert 'odd "kind"\n' in kinds
    assert families["rpa_stage_duration_seconds"].unit == "seconds"


def test_write_metrics_file_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "rpa.prom"
    write_metrics_file(target, "first\n# EOF\n")
    write_metrics_file(target, "second\n# EOF\n")
    assert target.read_text() == "second\n# EOF\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # readable by the collector
    assert os.listdir(tmp_path) == ["rpa.prom"]  # no temporary file left behind
    with pytest.raises(OSError):
        write_metrics_file(tmp_path / "missing" / "rpa.prom", "x")


def test_status_command_writes_the_metrics_file(cli: Cli, tmp_path: Path) -> None:
    build_queue(cli.db)
    target = tmp_path / "status.prom"
    result = cli.run("status", "--db", str(cli.db), "--metrics-file", str(target), "--json")
    assert result.returncode == 0, result.stderr
    samples = parse(target.read_text())
    assert samples[("rpa_queue_jobs", (("state", "failed"),))] == 2
    bad = cli.run("status", "--db", str(cli.db), "--metrics-file", str(tmp_path / "no" / "x"))
    assert bad.returncode == 2 and "metrics file" in bad.stderr

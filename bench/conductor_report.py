"""The markdown report of `bench.conductor` (its JSON in, text out)."""

from __future__ import annotations

from typing import Any

__all__ = ["markdown"]

#: issue 20's targets for one main process with free extraction, papers/s
TARGETS = {"tar": 600.0, "http": 300.0}
_LABEL = {
    "tar": "arXiv-style tars (`--pdf-tar`)",
    "local": "local folder (`--pdf-url file://`)",
    "http": "HTTP, loopback mirror",
}
#: (key, column, format, scale)
_COLUMNS: tuple[tuple[str, str, str, float], ...] = (
    ("papers_s", "papers/s (whole process)", "{:.0f}", 1.0),
    ("steady_papers_s", "papers/s (steady: 10th–90th percentile of records)", "{:.0f}", 1.0),
    ("wall", "wall, s", "{:.1f}", 1.0),
    ("first_record_s", "first record after, s", "{:.2f}", 1.0),
    ("main_ms_per_paper", "main-process CPU per paper, ms", "{:.2f}", 1.0),
    ("main_busy", "main process busy, % of one core", "{:.0f}", 100.0),
    ("steady_main_ms_per_paper", "main-process CPU per paper, steady, ms", "{:.2f}", 1.0),
    ("steady_main_busy", "main process busy, steady, % of one core", "{:.0f}", 100.0),
    ("extract_ms_per_paper", "extraction processes' CPU per paper, ms", "{:.2f}", 1.0),
    ("lag_max", "lag max, ms", "{:.1f}", 1.0),
    ("lag_p99", "lag p99, ms", "{:.2f}", 1.0),
    ("other_load", "other programs' load, cores", "{:.2f}", 1.0),
)


def _cell(summary: dict[str, Any], key: str, fmt: str, scale: float) -> str:
    s = summary.get(key)
    if s is None:
        return "–"
    mid = fmt.format(s["median"] * scale)
    if s["min"] == s["max"]:
        return mid
    return f"{mid} ({fmt.format(s['min'] * scale)}–{fmt.format(s['max'] * scale)})"


def markdown(results: dict[str, Any]) -> str:
    """The report: machine, command, one table (sources as rows), targets, reading notes."""
    machine = results["machine"]
    n = results["papers"]
    lines = [
        f"# One rpa main process with free extraction (the conductor) — {machine['date']}",
        "",
        f"`{results['command']}` on `{results['tree_git']}` ({results['tree']}). "
        f"{n:,} real papers ({results.get('bytes', 0) / 1e6:,.0f} MB: the 32 of "
        "`../shared/corpus/real` under many names), every extraction the null one "
        "(`BENCH_RPA_EXTRACTOR=null`: a one-line text, the PDF not parsed). Whole processes "
        "under `bench.measure`, fresh SQLite queue and output folder each, "
        f"`--workers {results['workers']} --rate-limits '' --metadata off --no-progress`; "
        f"medians (min–max) of {results['repeat']}, the sources' order rotated every repeat.",
        "",
        "| machine | |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in machine.items()),
        f"| mirror | {results.get('mirror', '?')} on 127.0.0.1 |",
        "",
        "| source | " + " | ".join(c[1] for c in _COLUMNS) + " |",
        "| --- |" + " --- |" * len(_COLUMNS),
    ]
    sources = results.get("sources", {})
    for name, entry in sources.items():
        cells = [_cell(entry["summary"], key, fmt, sc) for key, _c, fmt, sc in _COLUMNS]
        lines.append(f"| {_LABEL.get(name, name)} | " + " | ".join(cells) + " |")
    lines += ["", "| target (issue 20) | figure | |", "| --- | --- | --- |"]
    for name, target in TARGETS.items():
        if name in sources:
            got = sources[name]["summary"]["papers_s"]["median"]
            met = "met" if got >= target else "MISSED"
            lines.append(f"| {name}: ≥ {target:.0f} papers/s | {got:.0f} | {met} |")
    lines += [
        "",
        "Main-process CPU per paper is the whole process's (getrusage from `bench.measure`, "
        "start-up, enqueue or tar indexing and shutdown included) ÷ papers; `1000 ÷ that` is "
        "the rate one main process could reach were it alone on its core. The extraction "
        "processes' CPU is the tree's minus the main process's (fork server included). Lag: "
        "the outside probe (`bench/lagprobe`), first loop iteration to the last.",
        "",
    ]
    return "\n".join(lines)

"""The markdown report of `bench.conductor` (its JSON in, text out).

python -m bench.conductor_report RESULTS.json > RESULTS.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.main_process import summary

__all__ = ["derive", "main", "markdown"]

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
    ("main_bound_papers_s", "papers/s one main process could do on its own core", "{:.0f}", 1.0),
    ("extract_ms_per_paper", "extraction processes' CPU per paper, ms", "{:.2f}", 1.0),
    ("server_ms_per_paper", "mirror's CPU per paper, ms", "{:.2f}", 1.0),
    ("lag_max", "lag max, ms", "{:.1f}", 1.0),
    ("lag_p99", "lag p99, ms", "{:.2f}", 1.0),
    ("other_load", "other programs' load, cores", "{:.2f}", 1.0),
)


def derive(run: dict[str, float], papers: int) -> dict[str, float]:
    """A run's figures plus those computed from them (kept in the JSON for reading)."""
    steady = run.get("steady_main_ms_per_paper") or 0.0
    run["main_bound_papers_s"] = 1000 / steady if steady > 0 else 0.0
    if run.get("server_cpu"):  # HTTP only
        run["server_ms_per_paper"] = 1000 * run["server_cpu"] / papers
    return run


def _cell(summary: dict[str, Any], key: str, fmt: str, scale: float) -> str:
    s = summary.get(key)
    if s is None:
        return "–"
    mid = fmt.format(s["median"] * scale)
    if s["min"] == s["max"]:
        return mid
    return f"{mid} ({fmt.format(s['min'] * scale)}–{fmt.format(s['max'] * scale)})"


def markdown(results: dict[str, Any]) -> str:
    """The report: machine, command, one table (a column a source), targets, reading notes."""
    machine = results["machine"]
    n = results["papers"]
    lines = [
        f"# One rpa main process with free extraction (the conductor) — {machine['date']}",
        "",
        f"`{results['command']}`, rpa of `{results['tree_git'].split(' ')[0]}` "
        f"({results['tree']}). "
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
    ]
    sources = results.get("sources", {})
    lines += [
        "| figure | " + " | ".join(_LABEL.get(name, name) for name in sources) + " |",
        "| --- |" + " --- |" * len(sources),
    ]
    for key, label, fmt, scale in _COLUMNS:
        cells = [_cell(entry["summary"], key, fmt, scale) for entry in sources.values()]
        if any(cell != "–" for cell in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| target (issue 20) | figure | |", "| --- | --- | --- |"]
    for name, target in TARGETS.items():
        if "papers_s" in sources.get(name, {}).get("summary", {}):
            got = sources[name]["summary"]["papers_s"]["median"]
            met = "met" if got >= target else "MISSED"
            lines.append(f"| {name}: ≥ {target:.0f} papers/s | {got:.0f} | {met} |")
    lines += [
        "",
        "Main-process CPU per paper is the whole process's (getrusage from `bench.measure`, "
        "start-up, enqueue or tar indexing and shutdown included) ÷ papers. Steady: the main "
        "process's CPU (its /proc/PID/stat, read every 20 ms from outside) between the 10th "
        "and the 90th percentile of the records' times, ÷ the records written meanwhile; "
        "`1000 ÷ that` is the rate one main process could sustain were a whole core its own "
        "(it uses more than one thread, so that is an estimate). The extraction "
        "processes' CPU is the tree's minus the main process's (fork server included). Lag: "
        "the outside probe (`bench/lagprobe`), first loop iteration to the last.",
        "",
    ]
    profiled = {k: e["profile"] for k, e in sources.items() if "threads_ms" in e.get("profile", {})}
    if profiled:
        lines += [
            "## Main-process CPU per paper, by thread and step (py-spy, one more run each)",
            "",
            "Busy samples (100 Hz, `--threads --nonblocking`) × 10 ms ÷ papers; the step is the "
            "innermost frame that names one (`bench.main_process.step_of`). py-spy counts a "
            "thread blocked in the kernel (an fsync: D state) as busy, so these are the threads' "
            "time, not only CPU: their sum exceeds the main process's CPU per paper above.",
            "",
        ]
        for name, prof in profiled.items():
            threads = ", ".join(f"{k} {v:.2f}" for k, v in prof["threads_ms"].items())
            both = "; ".join(f"{k} {v:.2f}" for k, v in prof["thread_step_ms"].items())
            lines += [
                f"**{_LABEL.get(name, name)}**: total {prof['total_ms']:.2f} ms; by thread: "
                f"{threads}",
                "",
                f"by thread / step: {both}",
                "",
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the markdown of a results JSON (derived figures filled in where missing)."""
    args = sys.argv[1:] if argv is None else argv
    results = json.loads(Path(args[0]).read_text())
    for entry in results.get("sources", {}).values():
        entry["runs"] = [derive(run, results["papers"]) for run in entry["runs"]]
        entry["summary"] = summary(entry["runs"])
    print(markdown(results), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

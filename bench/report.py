"""Render the benchmark's results (a plain dict, also saved as JSON) as one markdown report."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["render"]

Runs = list[dict[str, Any]]

TARGETS = {
    "ratio": 0.95,
    "lag_p99": 5.0,
    "lag_max": 50.0,
    "main_pct": 15.0,
    "enqueue": 15.0,
    "status": 1.0,
}


def _num(value: float, fmt: str) -> str:
    return fmt.format(value)


def cell(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """median (min–max) of repeated values."""
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return "–"
    med = _num(statistics.median(values), fmt)
    if len(values) == 1:
        return med
    return f"{med} ({_num(min(values), fmt)}–{_num(max(values), fmt)})"


def _get(runs: Runs, key: str) -> list[float]:
    return [float(r[key]) for r in runs if key in r]


def _ratios(runs: Runs, base: Runs, key: str = "pages_s") -> list[float]:
    """Per-repeat ratio: run i against the base measured in the same repeat."""
    return [a[key] / b[key] for a, b in zip(runs, base, strict=False) if b.get(key)]


def _adjusted(runs: Runs, base: Runs, cores: int) -> list[float]:
    def per_core(r: dict[str, Any]) -> float:
        return float(r["pages_s"]) / max(0.1, cores - float(r["foreign"]))

    return [per_core(a) / per_core(b) for a, b in zip(runs, base, strict=False)]


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("**met**" if ok else "**MISSED**")


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def render(res: dict[str, Any]) -> str:
    out: list[str] = []
    w = out.append
    m = res["machine"]
    c = res["config"]
    w(f"# rpa benchmark — {m['date']}\n")
    w(f"Command: `{c['command']}`\n")
    w("| machine | |\n| --- | --- |")
    for key, value in m.items():
        w(f"| {key} | {value} |")
    w(f"| mirror | {c['server']} |")
    w(
        f"| papers | {c['papers']} real papers ({c['pages_per_copy']} pages, "
        f"{c['mb_per_copy']:.1f} MB) × {c['copies']} copies = {c['jobs']} jobs, "
        f"{c['pages']} pages |"
    )
    if c.get("pdfium_copies"):
        n = c["pdfium_copies"]
        w(
            f"| papers, pdfium arms | × {n} copies = {c['papers'] * n} jobs, "
            f"{c['pages_per_copy'] * n} pages (pdfium is ~15× faster: more copies keep "
            "start-up a small part of its runs) |"
        )
    w(
        f"| repeats | {c['repeat']} (arms interleaved, order rotated every repeat; rpa next to "
        "its ceiling) |"
    )
    w(f"| extraction workers | {c['extract_workers']} (rpa default: one per core) |")
    if c.get("nice"):
        w(f"| niceness of every measured run | {c['nice']:+d} (`--nice`) |")
    w("")
    w(
        "Figures are `median (min–max)` over the repeats. *Other load* is CPU that programs "
        "outside the benchmark used meanwhile, in cores (the machine may be shared); each arm "
        "waits for a quiet moment before it starts.\n"
    )
    arms: dict[str, Runs] = res.get("arms", {})
    verdicts: list[tuple[str, str, str, bool | None]] = []
    if arms:
        _section_1(w, arms, c)
        _section_23(w, arms, verdicts)
    if res.get("download"):
        _section_4(w, res["download"], c)
    if res.get("queue"):
        _section_5(w, res["queue"], verdicts)
    if res.get("quality"):
        _section_6(w, res["quality"], arms)
    if verdicts:
        w("## Targets\n")
        w("| target | goal | measured | verdict |\n| --- | --- | --- | --- |")
        for name, goal, value, ok in verdicts:
            w(f"| {name} | {goal} | {value} | {_verdict(ok)} |")
        w("")
    if res.get("profile"):
        w("## Profiles\n")
        w(res["profile"])
    for note in res.get("notes", []):
        w(f"- {note}")
    return "\n".join(out) + "\n"


def _section_1(w: Callable[[str], None], arms: dict[str, Runs], c: dict[str, Any]) -> None:
    w("## 1. Ceiling: extraction alone over the local files (no HTTP, no queue)\n")
    w("| figure | pages/s | papers/s | other load |\n| --- | --- | --- | --- |")
    pool = f"{c['extract_workers']}-process pool"
    rows = [
        ("ceiling:pypdf", f"pypdf, {pool} (the ceiling)"),
        ("single:pypdf", "pypdf, single process (r)"),
        ("fn:pypdf", f"rpa's `extract_pdf` (pypdf + text file + analysis), {pool}"),
        ("ceiling:pdfium", f"pdfium, {pool}"),
        ("single:pdfium", "pdfium, single process"),
    ]
    for key, label in rows:
        runs = arms.get(key)
        if runs:
            w(
                f"| {label} | {cell(_get(runs, 'pages_s'), '{:.1f}')} | "
                f"{cell(_get(runs, 'papers_s'))} | {cell(_get(runs, 'foreign'))} |"
            )
    if arms.get("ceiling:pypdf"):
        cpu = [1000 * r["cpu"] / (r["pages_s"] * r["wall"]) for r in arms["ceiling:pypdf"]]
        w(f"| pypdf pool: CPU per page, ms | {cell(cpu, '{:.0f}')} | | |")
    pool_runs, single = arms.get("ceiling:pypdf"), arms.get("single:pypdf")
    if pool_runs and single:
        w(f"| pool ÷ r (pypdf) | {cell(_ratios(pool_runs, single))} | | |")
    fn_runs = arms.get("fn:pypdf")
    if pool_runs and fn_runs:
        w(f"| `extract_pdf` pool ÷ ceiling | {cell(_ratios(fn_runs, pool_runs))} | | |")
    w("")


DESIGNS = [
    ("rpa:pypdf", "rpa, pypdf"),
    ("naive:blocking", "naive: blocking calls on the loop"),
    ("naive:threads", "naive: asyncio.to_thread"),
    ("rpa:pdfium", "rpa, --extractor pdfium"),
]


def _section_23(
    w: Callable[[str], None],
    arms: dict[str, Runs],
    verdicts: list[tuple[str, str, str, bool | None]],
) -> None:
    designs = [(k, label) for k, label in DESIGNS if arms.get(k)]
    if not designs:
        return
    ceiling = arms.get("ceiling:pypdf", [])
    cores = os.cpu_count() or 1
    w("## 2–3. End to end over the loopback mirror: rpa and the naive designs it replaces\n")
    w(
        "200 workers (coroutines) each; the same papers from the same mirror in the same run. "
        "rpa is the real CLI (`rpa run ... --no-progress`); lag is rpa's own LagProbe (10 ms "
        "sleeps) after the first second; main-process CPU is the run phase (imports excluded).\n"
    )
    w("| figure | " + " | ".join(label for _, label in designs) + " |")
    w("| --- |" + " --- |" * len(designs))

    def row(label: str, fn: Callable[[Runs, str], str]) -> None:
        w(f"| {label} | " + " | ".join(fn(arms[k], k) for k, _ in designs) + " |")

    def ratio(runs: Runs, key: str) -> str:
        base = arms.get("ceiling:pdfium", []) if key == "rpa:pdfium" else ceiling
        return cell(_ratios(runs, base)) if base else "–"

    def adjusted(runs: Runs, key: str) -> str:
        base = arms.get("ceiling:pdfium", []) if key == "rpa:pdfium" else ceiling
        return cell(_adjusted(runs, base, cores)) if base else "–"

    def share(runs: Runs, key: str) -> str:
        base = arms.get("ceiling:pdfium", []) if key == "rpa:pdfium" else ceiling
        if not base or key.startswith("naive"):
            return "–"
        pairs = [
            (r["extract_cpu"] / r["wall"]) / (b["cpu"] / b["wall"])
            for r in runs
            for b in base
            if b.get("repeat") == r.get("repeat")
        ]
        return cell(pairs)

    def per_page(runs: Runs, key: str) -> str:
        return cell([1000 * r["extract_cpu"] / (r["pages_s"] * r["wall"]) for r in runs], "{:.0f}")

    row("papers/s", lambda r, k: cell(_get(r, "papers_s")))
    row("pages/s", lambda r, k: cell(_get(r, "pages_s"), "{:.1f}"))
    row("ratio to the ceiling (its extractor's pool, same repeat)", ratio)
    row("same, adjusted for other load (estimate, see note)", adjusted)
    row("cores busy extracting ÷ the ceiling's (same repeat; see note)", share)
    row("loop lag p50, ms", lambda r, k: cell(_get(r, "lag_p50")))
    row("loop lag p99, ms", lambda r, k: cell(_get(r, "lag_p99"), "{:.1f}"))
    row("loop lag max, ms", lambda r, k: cell(_get(r, "lag_max"), "{:.0f}"))
    row("lag samples > 5 ms / > 50 ms", lambda r, k: _over(r))
    row("main-process CPU, s", lambda r, k: cell(_get(r, "main_cpu"), "{:.1f}"))
    row("main-process CPU, % of one core", lambda r, k: cell(_get(r, "main_pct"), "{:.1f}"))
    row("main-process peak RSS, MB", lambda r, k: cell(_get(r, "main_rss"), "{:.0f}"))
    row("extraction processes CPU, s", lambda r, k: cell(_get(r, "extract_cpu"), "{:.1f}"))
    row("extraction processes CPU per page, ms", per_page)
    row("wall, s", lambda r, k: cell(_get(r, "wall"), "{:.1f}"))
    row("mirror CPU, s", lambda r, k: cell(_get(r, "server_cpu")))
    row("other load, cores", lambda r, k: cell(_get(r, "foreign")))
    w("")
    w(
        "*Adjusted for other load*: each run's pages/s divided by the cores left to it "
        f"({cores} minus the other load seen during that run), over the same for the ceiling. "
        "An estimate, fair when the machine is saturated and the other programs share the cores "
        "evenly with the extraction processes (both at niceness 0 relative to them); the plain "
        "ratio is the measured one.\n"
    )
    w(
        "*Cores busy extracting*: the extraction processes' CPU seconds per wall second in the "
        "rpa run, over the same for the ceiling's pool. It says how much of the machine rpa "
        "keeps extracting, and it does not move with this VM's speed, which drifts by 10-20 % "
        "between adjacent runs (see *CPU per page*: the same pypdf work)."
        "\n"
    )
    rpa_runs = arms.get("rpa:pypdf")
    if rpa_runs:
        groups = sorted({g for r in rpa_runs for g in r.get("threads", {})})
        parts = [
            f"{g} {cell([r['threads'].get(g, 0.0) for r in rpa_runs], '{:.1f}')} s" for g in groups
        ]
        w(f"rpa (pypdf) main-process CPU by thread, whole process life: {'; '.join(parts)}.\n")
        worst = [r.get("lag_worst", [])[:4] for r in rpa_runs]
        w(
            "Worst lag samples of each rpa (pypdf) run, (seconds into the run, ms): "
            + "; ".join(", ".join(f"({t:g}, {ms:g})" for t, ms in run) for run in worst)
            + ".\n"
        )
        buckets = [r.get("lag_over5_by_5s") for r in rpa_runs]
        if any(buckets):
            w(
                "Lag samples > 5 ms of each rpa (pypdf) run by 5 s of the run (start s: count): "
                + "; ".join(", ".join(f"{t}: {n}" for t, n in b or []) for b in buckets)
                + ".\n"
            )
        ratios = _ratios(rpa_runs, ceiling)
        med = _median(ratios)
        verdicts.append(
            ("end to end ÷ ceiling", "≥ 0.95", cell(ratios), None if med is None else med >= 0.95)
        )
        for key, name, goal, limit in (
            ("lag_p99", "loop lag p99 (200 workers, every core extracting)", "< 5 ms", 5.0),
            ("lag_max", "loop lag max", "< 50 ms", 50.0),
            ("main_pct", "main-process CPU at the extraction-bound rate", "< 15 % of a core", 15.0),
        ):
            values = _get(rpa_runs, key)
            med = _median(values)
            verdicts.append(
                (name, goal, cell(values, "{:.1f}"), None if med is None else med < limit)
            )


def _over(runs: Runs) -> str:
    a = cell(_get(runs, "lag_over5"), "{:.0f}")
    b = cell(_get(runs, "lag_over50"), "{:.0f}")
    n = cell(_get(runs, "lag_samples"), "{:.0f}")
    return f"{a} / {b} of {n}"


def _section_4(w: Callable[[str], None], dl: dict[str, Runs], c: dict[str, Any]) -> None:
    w(f"## 4. Download only (no extraction), {c['download_concurrency']} downloads at once\n")
    w(
        f"{c['download_files']} files, {c['download_mb']:.0f} MB per run from the mirror. "
        "CPU is the downloading process's (getrusage, download phase only).\n"
    )
    w("| variant | MB/s | main-process CPU s per GB | mirror CPU s per GB | other load |")
    w("| --- | --- | --- | --- | --- |")
    labels = {
        "rpa": "rpa's Downloader + rpa's clients (to disk: sha256, fsync, rename)",
        "rpa-client": "rpa's clients, body dropped",
        "one-pool": "one client, one pool of 64 (keep-alive 64), body dropped",
        "httpx-defaults": "httpx.AsyncClient() defaults, body dropped",
        "tuned": "best found: 8 clients × 8 connections, aiter_raw, sniffio; body dropped",
        "rpa-sniffio": "rpa's Downloader + rpa's clients, with sniffio importable",
        "rpa-tuned": "rpa's Downloader (to disk) over the best-found clients",
    }
    for key, label in labels.items():
        runs = dl.get(key)
        if runs:
            w(
                f"| {label} | {cell(_get(runs, 'mb_s'), '{:.0f}')} | "
                f"{cell(_get(runs, 'cpu_per_gb'))} | {cell(_get(runs, 'server_cpu_per_gb'))} | "
                f"{cell(_get(runs, 'foreign'))} |"
            )
    w("")


def _section_5(
    w: Callable[[str], None], q: dict[str, Any], verdicts: list[tuple[str, str, str, bool | None]]
) -> None:
    w("## 5. Queue\n")
    w("| figure | median (min–max) | peak RSS, MB |\n| --- | --- | --- |")
    claim: Runs = q.get("claim", [])
    if claim:
        w(
            f"| claim (256 a batch) + complete, one connection, jobs/s "
            f"({claim[0]['direct']['jobs']} jobs) | "
            f"{cell([r['direct']['per_second'] for r in claim], '{:.0f}')} | |"
        )
        lifecycle = cell([r["lifecycle"]["per_second"] for r in claim], "{:.0f}")
        w(
            "| full lifecycle via rpa's DbThread, 200 coroutines (claim, 2 checkpoints, "
            f"complete), jobs/s | {lifecycle} | |"
        )
    enq: Runs = q.get("enqueue", [])
    n = q.get("ids", 0)
    if enq:
        secs = [r["seconds"] for r in enq]
        w(
            f"| enqueue {n:,} IDs (`enqueue_file`, fresh database), s | {cell(secs)} | "
            f"{cell([r['maxrss_mb'] for r in enq], '{:.0f}')} |"
        )
        med = _median(secs)
        verdicts.append(
            (f"enqueue {n:,} IDs", "< 15 s", cell(secs), None if med is None else med < 15)
        )
    inproc: Runs = q.get("status_inproc", [])
    if inproc:
        w(
            f"| `collect_status` in process on {inproc[0]['total']:,} jobs, s | "
            f"{cell([r['seconds'] for r in inproc], '{:.3f}')} | "
            f"{cell([r['maxrss_mb'] for r in inproc], '{:.0f}')} |"
        )
    for key, label in (("status_cli", "`rpa status`"), ("status_json", "`rpa status --json`")):
        runs: Runs = q.get(key, [])
        if runs:
            secs = [r["seconds"] for r in runs]
            w(
                f"| {label} (new process, imports included), s | {cell(secs, '{:.3f}')} | "
                f"{cell([r['rss'] for r in runs], '{:.0f}')} |"
            )
            if key == "status_cli":
                med = _median(secs)
                verdicts.append(
                    (
                        f"`rpa status` on {n:,} jobs",
                        "< 1 s",
                        cell(secs, "{:.3f}"),
                        None if med is None else med < 1,
                    )
                )
    if inproc and inproc[0].get("profile"):
        top = ", ".join(f"{name} {secs:.3f} s" for name, secs in inproc[0]["profile"])
        w(f"\n`collect_status` cumulative time by function (cProfile): {top}.")
    w("")


def _section_6(w: Callable[[str], None], quality: dict[str, Any], arms: dict[str, Runs]) -> None:
    s = quality["summary"]
    w("## 6. Fast path: pdfium vs pypdf\n")
    lines = [
        f"Single process, the {s['papers']} papers: pypdf {s['seconds'][0]:.1f} s, pdfium "
        f"{s['seconds'][1]:.1f} s: **{s['speedup']:.1f}× faster**",
    ]
    for key, base, label in (
        ("ceiling:pdfium", "ceiling:pypdf", "process pool (ceiling)"),
        ("rpa:pdfium", "rpa:pypdf", "rpa end to end"),
    ):
        if arms.get(key) and arms.get(base):
            lines.append(f"{label} pages/s pdfium ÷ pypdf: {cell(_ratios(arms[key], arms[base]))}")
    lines.append(
        f"text agreement (Dice over words, NFKC, lower case): median {s['bag_median']:.3f}, "
        f"lowest {s['bag_min']:.3f}; reading-order agreement median {s['order_median']:.3f}; "
        f"same title {s['same_title']}/{s['papers']}, same reference count "
        f"{s['same_references']}/{s['papers']}"
    )
    for line in lines:
        w(f"- {line}")
    w("")
    w(
        "| paper | pages | words pypdf / pdfium | words agree | order agrees | title same | "
        "refs pypdf / pdfium | s pypdf / pdfium | only pypdf has | only pdfium has | "
        "line-end hyphens pypdf / pdfium | ligature chars / U+FFFE etc. |"
    )
    w("| --- |" + " --- |" * 11)
    for r in quality["rows"]:
        w(
            f"| {r['paper']} | {r['pages'][0]} | {r['words'][0]} / {r['words'][1]} | "
            f"{r['bag']:.3f} | {r['order']:.3f} | {'yes' if r['same_title'] else 'no'} | "
            f"{r['references'][0]} / {r['references'][1]} | "
            f"{r['seconds'][0]:.2f} / {r['seconds'][1]:.2f} | {' '.join(r['only_pypdf'])} | "
            f"{' '.join(r['only_pdfium'])} | {r['hyphen_eol'][0]} / {r['hyphen_eol'][1]} | "
            f"{r['ligatures'][0]}+{r['ligatures'][1]} / {r['odd_chars'][0]}+{r['odd_chars'][1]} |"
        )
    w("")

"""What the key-outcome analysis costs a paper, and what it finds, before and after a change.

    python -m bench.analysis [--repeat 7] [--before REV [--variants N]] [--steps] [--dump FILE]
                             [--json FILE]

Each real paper of ../shared/corpus/real is extracted once per extractor (pypdf, pdfium) with
rpa's own `extract_pdf`, into a temporary folder; its pages are read back from the text file
(as `analyze` gets them in rpa) with its /Info metadata. Then `analyze` runs over all papers,
`--repeat` times (after one warm-up pass); the figure is the median over the repeats of the
pass's time divided by the number of papers: milliseconds a paper, on one core, in this
process, as CPU time of this thread (`time.thread_time`: on a shared machine, wall time
counts the other programs' turns too). The text cleaning rpa does before writing the text
(`rpa.extract.pdf._clean`) is timed the same way, on the pages as written.

`--steps` times each step of `analyze` where it runs (each function it calls, looked up in
rpa.extract.outcome, wrapped in a timer: ~1 us a call more), the fastest of the passes.

`--before REV` times `analyze` as it was at REV as well (loaded from git, as
bench.quality_text does), on the same pages, interleaved with the current code's passes, and
lists every paper whose record differs between the two (field by field); `--variants N`
compares them on N altered copies of each paper as well (lines deleted, doubled, upper-cased,
numbered, spaced out, swapped; seeded by the paper's name; every third without metadata).
`--dump FILE` writes every paper's record (both extractors) as JSON, for a diff between two
trees:

    PYTHONPATH=/tmp/old-tree python bench/analysis.py --repeat 1 --dump old.json

(running the file, not the module, so that rpa is imported from the old tree: the dump then
includes that tree's text cleaning as well as its analysis).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import load_papers, machine_info
from bench.quality_text import _git, _metadata, _quiet, load_before, read_pages
from rpa.extract.outcome import analyze
from rpa.extract.pdf import extract_pdf

__all__ = ["main"]

EXTRACTORS = ("pypdf", "pdfium")
Analyze = Callable[[list[str], dict[str, str]], dict[str, object]]
#: one paper: (name, its pages as rpa wrote them, its /Info metadata)
Paper = tuple[str, list[str], dict[str, str]]


def _papers(extractor: str, folder: Path) -> list[Paper]:
    out = []
    for paper in load_papers():
        text = folder / f"{paper.path.stem}.{extractor}.txt"
        with _quiet():
            result = extract_pdf(str(paper.path), str(text), extractor)
        if not result["ok"]:
            print(f"{paper.path.stem} ({extractor}): {result.get('message')}", file=sys.stderr)
            continue
        out.append((paper.path.stem, read_pages(text), _metadata(paper.path, extractor)))
    return out


def _pass(fn: Analyze, papers: list[Paper]) -> float:
    """Milliseconds a paper of one pass of `fn` over `papers`."""
    start = time.thread_time()
    for _, pages, info in papers:
        fn(pages, info)
    return (time.thread_time() - start) * 1000 / len(papers)


def _clean_pass(papers: list[Paper]) -> float:
    from rpa.extract import pdf

    clean: Callable[[str], str] | None = getattr(pdf, "_clean", None)
    if clean is None:
        return float("nan")
    start = time.thread_time()
    for _, pages, _ in papers:
        for page in pages:
            clean(page)
    return (time.thread_time() - start) * 1000 / len(papers)


#: what `analyze` calls, by the names it looks up in rpa.extract.outcome: since the third
#: pass page_lines is NFKC and the split of every page, and nfkc page 1's alone (for a tree
#: before 2026-12-07's second pass: nonblank_lines, strip_line_numbers and its page_lines)
STEPS = (
    "nfkc",
    "nonblank_lines",
    "strip_line_numbers",
    "page_lines",
    "split_pages",
    "title",
    "outline",
    "abstract",
    "find_arxiv_stamp",
    "authors",
    "headings",
    "word_count",
    "references",
)


def _steps(papers: list[Paper], repeat: int) -> dict[str, float]:
    """Milliseconds a paper of each step of `analyze`, and of the whole, where they run: the
    fastest of `repeat` passes."""
    import rpa.extract.outcome as package

    spent = dict.fromkeys(STEPS, 0.0)
    originals = {name: getattr(package, name) for name in STEPS if hasattr(package, name)}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any) -> Any:
            start = time.thread_time()
            try:
                return fn(*args)
            finally:
                spent[name] += time.thread_time() - start

        return step

    best = {name: float("inf") for name in (*originals, "total")}
    try:
        for name, fn in originals.items():
            setattr(package, name, timed(name, fn))
        for _ in range(repeat):
            spent.update(dict.fromkeys(STEPS, 0.0))
            total = _pass(analyze, papers)
            best["total"] = min(best["total"], total)
            for name in originals:
                best[name] = min(best[name], spent[name] * 1000 / len(papers))
    finally:
        for name, fn in originals.items():
            setattr(package, name, fn)
    return best


def _altered(pages: list[str], rng: random.Random) -> list[str]:
    """A copy of a paper's pages with a few lines deleted, doubled, upper-cased, numbered
    at either end, spaced out or swapped: layouts the corpus does not have, for --variants."""
    out = []
    for page in pages:
        lines = page.split("\n")
        for _ in range(rng.randint(0, 6)):
            if not lines:
                break
            i, j, op = rng.randrange(len(lines)), rng.randrange(len(lines)), rng.random()
            if op < 0.2:
                del lines[i]
            elif op < 0.4:
                lines.insert(i, lines[i])
            elif op < 0.55:
                lines[i] = lines[i].upper()
            elif op < 0.7:
                lines[i] = f"{rng.randint(0, 30)} {lines[i]}"
            elif op < 0.8:
                lines[i] += str(rng.randint(0, 30))
            elif op < 0.9:
                lines[i] = lines[i].replace(" ", "  ")
            else:
                lines[i], lines[j] = lines[j], lines[i]
        out.append("\n".join(lines))
    return out


def _differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.analysis", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="timed passes (default 7)")
    parser.add_argument("--before", metavar="REV", help="also time analyze as it was at REV")
    parser.add_argument("--dump", type=Path, help="write every paper's record here (JSON)")
    parser.add_argument("--json", type=Path, help="write the figures here (JSON)")
    parser.add_argument("--extractors", default=",".join(EXTRACTORS))
    parser.add_argument("--steps", action="store_true", help="time each step of analyze")
    parser.add_argument(
        "--variants",
        type=int,
        default=0,
        metavar="N",
        help="with --before: also compare the records of N altered copies of each paper",
    )
    args = parser.parse_args(argv)
    extractors = [e for e in args.extractors.split(",") if e]
    figures: dict[str, dict[str, Any]] = {}
    dump: dict[str, dict[str, Any]] = {}
    changed: dict[str, dict[str, list[Any]]] = {}
    compared = 0
    with tempfile.TemporaryDirectory(prefix="rpa-bench-analysis-") as tmp:
        folder = Path(tmp)
        before = load_before(args.before, folder) if args.before else None
        for extractor in extractors:
            papers = _papers(extractor, folder)
            after_ms: list[float] = []
            before_ms: list[float] = []
            clean_ms: list[float] = []
            _pass(analyze, papers)  # warm-up: regex caches, imports
            if before is not None:
                _pass(before, papers)
            for _ in range(args.repeat):
                if before is not None:
                    before_ms.append(_pass(before, papers))
                after_ms.append(_pass(analyze, papers))
                clean_ms.append(_clean_pass(papers))
            figures[extractor] = {
                "papers": len(papers),
                "analysis_ms": _median(after_ms),
                "analysis_ms_all": after_ms,
                "clean_ms": _median(clean_ms),
            }
            if before is not None:
                figures[extractor]["before_ms"] = _median(before_ms)
                figures[extractor]["before_ms_all"] = before_ms
            if args.steps:
                figures[extractor]["steps_ms"] = _steps(papers, args.repeat)
            for name, pages, info in papers:
                record = analyze(pages, info)
                dump[f"{extractor}/{name}"] = record
                if before is None:
                    continue
                rng = random.Random(f"{extractor}/{name}")
                altered = [(pages, info)] + [
                    (_altered(pages, rng), info if k % 3 else {}) for k in range(args.variants)
                ]
                for k, (some_pages, some_info) in enumerate(altered):
                    compared += 1
                    with contextlib.suppress(Exception):
                        diff = _differences(
                            before(some_pages, some_info), analyze(some_pages, some_info)
                        )
                        if diff:
                            changed[f"{extractor}/{name}" + (f" (altered {k})" if k else "")] = diff
    machine = machine_info()
    print(f"# The outcome analysis, ms a paper (median of {args.repeat} passes)\n")
    for key, value in machine.items():
        print(f"- {key}: {value}")
    rev = _git("rev-parse", "--short", args.before).strip() if args.before else ""
    print()
    head = "| extractor | papers | analysis, ms/paper | text cleaning, ms/paper |"
    rule = "| --- | --- | --- | --- |"
    if rev:
        head = head.replace("analysis,", f"analysis before ({rev}), ms/paper | analysis after,")
        rule += " --- |"
    print(head)
    print(rule)
    for extractor, fig in figures.items():
        before_cell = f" {fig['before_ms']:.2f} |" if rev else ""
        print(
            f"| {extractor} | {fig['papers']} |{before_cell} {fig['analysis_ms']:.2f} "
            f"| {fig['clean_ms']:.2f} |"
        )
    if args.steps:
        print("\n| step of analyze | " + " | ".join(f"{e}, ms/paper" for e in figures) + " |")
        print("| --- |" + " --- |" * len(figures))
        names = [n for n in (*STEPS, "total") if all(n in f["steps_ms"] for f in figures.values())]
        for name in names:
            cells = " | ".join(f"{f['steps_ms'][name]:.3f}" for f in figures.values())
            print(f"| {name} | {cells} |")
    if rev:
        print(f"\nRecords that differ from {rev}'s: {len(changed)} of {compared}")
        for key, diff in changed.items():
            print(f"- {key}: {json.dumps(diff, ensure_ascii=False)[:2000]}")
    if args.dump:
        args.dump.write_text(json.dumps(dump, ensure_ascii=False, indent=1, sort_keys=True))
    if args.json:
        report = {"machine": machine, "figures": figures, "compared": compared, "changed": changed}
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

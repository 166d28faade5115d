"""The ceiling: text extraction alone over local files, no HTTP, no queue, no rpa.

    python -m bench.ceiling REPORT.json FILE_LIST --workers W [--extractor pypdf|pdfium]
                            [--work text|rpa]

--workers 1 extracts in this process (single-process pages/s, "r"); W > 1 uses a
ProcessPoolExecutor of W forked processes, one paper per task, results are page counts only.
The clock starts before the pool exists, as rpa's includes starting its own.

Extraction runs at niceness --nice (default: rpa's --extract-nice default, 10), like rpa's
extraction processes: on a quiet machine this changes nothing, and when other programs load
the machine it exposes the ceiling to them exactly as much as rpa's extraction.

--work text (the default) is the extractor alone: open, every page's text, nothing else.
--work rpa runs rpa's own worker function (`rpa.extract.extract_pdf`: the same extraction plus
writing the text file and the key-outcome analysis), to tell the extraction function's cost
from the pipeline's.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rpa.config import Settings

__all__ = ["extract_pages"]


def _quiet(nice: int = 0) -> None:
    if nice:
        os.nice(nice)
    # pypdf logs a warning per odd font; the ceiling is pypdf's work, not log formatting.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


def _pypdf(path: str) -> int:
    from pypdf import PdfReader

    reader = PdfReader(path)
    for page in reader.pages:
        page.extract_text()
    return len(reader.pages)


def _pdfium(path: str) -> int:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path)
    try:
        count = len(pdf)
        for n in range(count):
            page = pdf[n]
            textpage = page.get_textpage()
            textpage.get_text_range()
            textpage.close()
            page.close()
        return count
    finally:
        pdf.close()


def _rpa(path: str, extractor: str, out_dir: str) -> int:
    from rpa.extract.pdf import extract_pdf

    text = os.path.join(out_dir, os.path.basename(path) + ".txt")
    result = extract_pdf(path, text, extractor)
    if not result.get("ok"):
        raise RuntimeError(f"{path}: {result}")
    pages = result["pages"]
    assert isinstance(pages, int)
    return pages


def extract_pages(path: str, extractor: str = "pypdf", work: str = "text", out: str = "") -> int:
    """Extract one file's text; returns its page count. Top-level, so the pool can pickle it."""
    if work == "rpa":
        return _rpa(path, extractor, out)
    return _pdfium(path) if extractor == "pdfium" else _pypdf(path)


def _cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("report", type=Path)
    parser.add_argument("file_list", type=Path)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--extractor", choices=("pypdf", "pdfium"), default="pypdf")
    parser.add_argument("--work", choices=("text", "rpa"), default="text")
    parser.add_argument("--nice", type=int, default=Settings().extract_nice)
    args = parser.parse_args(argv)
    files = [line for line in args.file_list.read_text().splitlines() if line]
    out = tempfile.mkdtemp(prefix="rpa-bench-ceiling-")
    extractor, work = args.extractor, args.work
    if extractor == "pdfium":
        import pypdfium2  # noqa: F401 - import cost outside the clock, as in a warm pool
    import pypdf  # noqa: F401

    start = time.perf_counter()
    cpu0 = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
    if args.workers == 1:
        _quiet(args.nice)
        pages = sum(extract_pages(f, extractor, work, out) for f in files)
    else:
        ctx = multiprocessing.get_context("fork")  # single-threaded parent: fork is safe
        pool = ProcessPoolExecutor(
            args.workers, mp_context=ctx, initializer=_quiet, initargs=(args.nice,)
        )
        with pool:
            n = len(files)
            pages = sum(pool.map(extract_pages, files, [extractor] * n, [work] * n, [out] * n))
    wall = time.perf_counter() - start
    cpu = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN) - cpu0
    shutil.rmtree(out, ignore_errors=True)
    args.report.write_text(
        json.dumps({"wall": wall, "pages": pages, "papers": len(files), "cpu": cpu})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

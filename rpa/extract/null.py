"""A benchmark-only extraction that does (almost) nothing: `bench.conductor` measures the main
process (`BENCH_RPA_EXTRACTOR=null` in rpa's environment), never a user.

    extract_null(pdf, text, extractor, run_id) -> the dict rpa.extract.pdf.extract_pdf returns

It never opens the PDF: it writes a one-line text to the text path and returns one page of
that line with an empty analysis, so the extraction processes cost next to nothing and every
other step of a paper (fetch, checks, queue, records) is what a real run does. It is loaded
by `rpa.extract.worker.load_extractor` in the process that extracts, and is no knob: no
flag, no config entry, no `RPA_` variable.
"""

from __future__ import annotations

import os

__all__ = ["ENV", "NULL_LINE", "extract_null"]

#: the environment variable that selects it (read by rpa.extract.worker.load_extractor)
ENV = "BENCH_RPA_EXTRACTOR"
#: the text every paper gets: a benchmark can tell that the null extraction ran
NULL_LINE = "null extraction (benchmark: the PDF was not parsed)"
_TEXT = f"[PAGE 1]\n{NULL_LINE}\n".encode()


def extract_null(
    pdf_path: str,
    text_path: str,
    extractor: str = "pypdf",
    run_id: str = "",
    *,
    sync: bool = True,
    data: bytes | None = None,
) -> dict[str, object]:
    """Write the one-line text (no fsync, no temporary name) and return a valid result."""
    del pdf_path, extractor, run_id, sync, data
    try:
        os.makedirs(os.path.dirname(text_path) or ".", exist_ok=True)
        fd = os.open(text_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, _TEXT)
        finally:
            os.close(fd)
    except OSError as exc:
        return {"ok": False, "kind": "write_error", "message": f"{type(exc).__name__}: {exc}"}
    return {
        "ok": True,
        "pages": 1,
        "chars": len(NULL_LINE),
        "page_errors": [],
        "outcome": {
            "title": "",
            "authors": [],
            "abstract": "",
            "abstract_truncated": False,
            "headings": [],
            "page_count": 1,
            "word_count": len(NULL_LINE.split()),
            "references": {"count": 0, "first": [], "items": []},
            "arxiv_stamp": None,
        },
        "warnings": 0,
    }

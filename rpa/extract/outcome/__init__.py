"""Key-outcome analysis of a paper's extracted text: pure functions, no I/O.

This runs inside the extraction worker process right after the text is extracted, so it must
never raise on odd input and must stay cheap (linear in the text, a few regex passes).

Everything here works on plain text (pypdf's or PDFium's), which has no font sizes or
positions: the heuristics lean on the shapes that survive extraction (numbering, known
heading words, header and author-line markers). They were checked against a corpus of one-
and two-column papers from many publishers (bench/quality_text.py measures them against the
truth in tests/data/truth.json), not tuned to single files; expect plausible, not perfect,
results. Title, authors and abstract are guesses from the text: rpa prefers arXiv's metadata
when it has it and records which one it used.

The record (`analyze`):

* title: the PDF's /Title when page 1 prints it too, else page 1's title lines;
* authors: names in order, without affiliation/footnote marks; [] when no confident guess
  (see `authors`);
* abstract: under an "Abstract" heading, or without one (a structured "Objectives." /
  "Background:" abstract, or the prose between the title block and the first section, as
  REVTeX and ACM journals print it), without footnote marks; capped at MAX_ABSTRACT_CHARS
  (4,000: a long structured abstract fits) by cutting at the last sentence end before the
  cap, in which case abstract_truncated is true (see `abstract`);
* headings: numbered outlines (1, 1.1 ...; REVTeX/IEEE I, A, 1 ...), known heading words,
  appendix headings, capitals headings where the paper uses them; wrapped headings joined;
* page_count, word_count, references ({count, first}), arxiv_stamp ({id, version, raw}).
"""

from __future__ import annotations

from .abstract import MAX_ABSTRACT_CHARS, abstract
from .authors import author_line, authors
from .front import is_author, is_header, title
from .headings import MAX_HEADINGS, headings
from .outline import outline
from .pages import page_lines, split_pages, word_count
from .references import MAX_REFERENCE_CHARS, references
from .stamp import find_arxiv_stamp
from .text import nfkc

__all__ = [
    "MAX_ABSTRACT_CHARS",
    "MAX_HEADINGS",
    "MAX_REFERENCE_CHARS",
    "analyze",
    "find_arxiv_stamp",
]


def _body_index(page1: list[str], body: list[str], count: int) -> int:
    """How many of page 1's first `count` lines survive in `body` (running headers and page
    numbers are dropped from it): the body index of page-1 line `count`."""
    j = 0
    for line in page1[:count]:
        if j < len(body) and body[j] == line:
            j += 1
    return j


def analyze(pages: list[str], metadata: dict[str, str]) -> dict[str, object]:
    """Summarise one paper's text as a JSON-able record of its key outcomes."""
    for memo in (is_header, is_author, author_line):
        memo.cache_clear()  # each paper's lines are read once per paper, not found in a cache
    raw, texts = page_lines([p or "" for p in pages])
    first = nfkc(pages[0] or "") if pages else ""
    lines, starts, page1, firsts = split_pages(raw)
    name, title_end = title(page1, metadata)
    where = outline(lines, firsts)
    body1 = lines[: starts[1]] if len(starts) > 1 else lines
    summary, body_start, truncated = abstract(
        lines, starts, _body_index(page1, body1, title_end), is_header, where
    )
    stamp = find_arxiv_stamp(first)
    if stamp is None:
        # Some arXiv-regenerated PDFs carry the stamp as their metadata title as well.
        stamp = find_arxiv_stamp(str(metadata.get("/Title") or metadata.get("title") or ""))
    return {
        "title": name,
        "authors": authors(page1, title_end, metadata),
        "abstract": summary,
        "abstract_truncated": truncated,
        "headings": headings(lines, body_start, where),
        "page_count": len(pages),
        "word_count": word_count(texts),  # (a line break ends a word too)
        "references": references(lines, where),
        "arxiv_stamp": stamp,
    }

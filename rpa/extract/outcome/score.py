"""Scoring an outcome record against the truth read off a paper (tests/data/truth.json).

Shared by bench/quality_text.py and the tests, so both measure the same thing:

* title: equal after whitespace/case normalisation, or a similarity of at least 0.9;
* authors: names compared by their letters (case, accents, spacing, dots ignored): the first
  author, and all of them (same names, same order);
* abstract: found (non-empty) when the paper has one; its start and end agree with the truth's
  (letters and digits compared, similarity >= 0.9 over the truth's length);
* headings: recall, the share of the true top-level headings found among the headings
  (each matched as the title is).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

__all__ = ["Score", "score"]


def _plain(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.lower().split())


def _key(text: str) -> str:
    return "".join(c for c in _plain(text) if c.isalnum())


def _similar(a: str, b: str) -> bool:
    return a == b or difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= 0.9


def title_matches(found: str, truth: str) -> bool:
    return _similar(_plain(found), _plain(truth))


def heading_matches(found: str, truth: str) -> bool:
    return _key(found) == _key(truth) or _similar(_plain(found), _plain(truth))


@dataclass(frozen=True, slots=True)
class Score:
    """One paper's result; the abstract and author fields are None where truth has none."""

    title: bool
    first_author: bool | None
    all_authors: bool | None
    abstract_found: bool | None
    abstract_start: bool | None
    abstract_end: bool | None
    headings_found: int
    headings_true: int

    @property
    def headings_recall(self) -> float:
        return self.headings_found / self.headings_true if self.headings_true else 1.0


def score(outcome: dict[str, Any], truth: dict[str, Any]) -> Score:
    """Compare one outcome record (analyze's output) with one truth record."""
    found_authors = [_key(a) for a in outcome.get("authors") or []]
    true_authors = [_key(a) for a in truth.get("authors") or []]
    first = all_ = None
    if true_authors:
        first = bool(found_authors) and found_authors[0] == true_authors[0]
        all_ = found_authors == true_authors
    abstract = _key(str(outcome.get("abstract") or ""))
    found = start = end = None
    if truth.get("abstract_start"):
        want_start = _key(truth["abstract_start"])
        want_end = _key(truth.get("abstract_end") or "")
        found = bool(abstract)
        start = found and _similar(abstract[: len(want_start)], want_start)
        end = found and bool(want_end) and _similar(abstract[-len(want_end) :], want_end)
    heads = [str(h) for h in outcome.get("headings") or []]
    true_heads = [str(h) for h in truth.get("headings") or []]
    hits = sum(1 for t in true_heads if any(heading_matches(h, t) for h in heads))
    return Score(
        title=title_matches(str(outcome.get("title") or ""), str(truth.get("title") or "")),
        first_author=first,
        all_authors=all_,
        abstract_found=found,
        abstract_start=start,
        abstract_end=end,
        headings_found=hits,
        headings_true=len(true_heads),
    )


def is_truth_key(name: str) -> bool:
    """truth.json's keys are file stems; "_about" and other "_" keys are notes."""
    return not name.startswith("_") and re.fullmatch(r"[\w.+-]+", name) is not None

"""Where a paper's headings can be: the lines `headings` and `references` look at one by one.

A paper has ~900 lines and ~5 known headings; testing every line in Python cost most of the
analysis. The lines that may be headings are found here with passes at C speed (map and
compress over the lines' first characters and lengths, one regex pass over the short lines
joined), and only those are looked at in Python. Each test is a superset of what
`is_known_heading`, `references_heading` and the numbered-heading patterns accept, so the
headings found are the same as a line-by-line pass would find.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress

from .headings import (
    APPENDIX_WORD,
    KNOWN_HEADINGS,
    REFERENCE_KEYS,
    SECTION_NUMBER,
    is_known_heading,
)

__all__ = ["Outline", "outline"]

# The same over lines joined by newlines: every line's heading key in one pass
_SECTION_NUMBERS = re.compile(SECTION_NUMBER.pattern.replace(r"\s+", r"[^\S\n]+"), re.MULTILINE)
_NON_LOWER_LINES = re.compile(r"[^a-z\n]+")
_FIRST = operator.itemgetter(0)


class _FirstChars(dict[str, bool]):
    """A line's first characters -> what they may start, computed once per string (looked up
    at C speed, with map, for every line of a paper)."""

    def __init__(self, test: Callable[[str], bool]) -> None:
        super().__init__()
        self.test = test

    def __missing__(self, c: str) -> bool:
        ok = self.test(c)
        if len(self) < 100_000:  # (bounded: a text of many scripts has many two-letter starts)
            self[c] = ok
        return ok


def _outline_start(two: str) -> bool:
    """May a line that starts with these two characters match NUMBERED ("1 ", "12.3"),
    _ROMAN ("IV. "), _LETTERED ("B. ") or _APPENDIX_SECTION ("B ", "C. ")?"""
    first, second = two[:1], two[1:]
    return (
        first.isdecimal()
        or (first in ("I", "V", "X") and second in ("I", "V", "X", "."))
        or (
            first in ("A", "B", "C", "D", "E", "F", "G", "H")
            and (second == "." or second.isspace())
        )
    )


#: a numbered, Roman or lettered heading's first two characters
_OUTLINE_START = _FirstChars(_outline_start)
_TWO = operator.itemgetter(slice(2))
#: a known heading: an upper-case letter, or a letter or digit that is not lower case
_CAPITAL = _FirstChars(lambda c: (c.isalnum() and not c.islower()) or c.isupper())


@dataclass(frozen=True, slots=True)
class Outline:
    """Where a paper's headings can be, found once for `headings` and `references` without
    a Python step for most lines (a paper has ~900 lines, ~5 known headings): `known`, the
    lines `is_known_heading` accepts; `references`, what `references_heading` finds; and
    `numbered`, the lines whose first character may start a numbered heading."""

    known: list[int]
    references: int | None
    numbered: list[int]


def outline(lines: list[str]) -> Outline:
    """The Outline of non-blank `lines` (those of rpa.extract.outcome.text.page_lines)."""
    everyone = range(len(lines))
    firsts = list(map(_FIRST, lines))
    # A known heading is short, or starts with "Appendix" (checked exactly below); the keys
    # of the short lines come from one pass over them joined.
    fit = map(operator.and_, map((45).__ge__, map(len, lines)), map(_CAPITAL.__getitem__, firsts))
    short = list(compress(everyone, fit))
    keyed = _SECTION_NUMBERS.sub("", "\n".join([lines[i] for i in short])).lower()
    keys = _NON_LOWER_LINES.sub("", keyed).split("\n") if short else []
    known: set[int] = set()
    references = None
    for i, key in zip(short, keys, strict=True):
        if key in REFERENCE_KEYS and len(lines[i]) <= 40 and firsts[i].isupper():
            references = i
        if key in KNOWN_HEADINGS or key.startswith("appendix"):
            known.add(i)
    known.update(
        i
        for i in compress(everyone, map("Aa".__contains__, firsts))
        if APPENDIX_WORD.match(lines[i])
    )
    numbered = list(compress(everyone, map(_OUTLINE_START.__getitem__, map(_TWO, lines))))
    return Outline(
        known=sorted(i for i in known if is_known_heading(lines[i])),
        references=references,
        numbered=numbered,
    )

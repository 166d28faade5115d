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
#: the bytes heading_key drops: all but a-z (and the line breaks between the keys)
_NOT_A_Z_NL = bytes(b for b in range(256) if not (97 <= b <= 122 or b == 10))
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
_START = operator.methodcaller("start")
#: first characters worth a closer look (any non-ASCII one may be a capital or a digit)
_CAPITAL_FIRST = re.compile(r"[A-Z0-9]|[^\x00-\x7f]")
_OUTLINE_FIRST = re.compile(r"[0-9IVXA-H]|[^\x00-\x7f]")
_A_FIRST = re.compile(r"[Aa]")
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
    # one character a line: its first; a regex pass over these finds the lines worth a look
    firsts = "".join(map(_FIRST, lines))
    # A known heading is short and starts with a capital or a digit, or starts with
    # "Appendix" (each checked exactly below); the keys of the short lines come from one
    # pass over them joined.
    short = [
        i
        for i in map(_START, _CAPITAL_FIRST.finditer(firsts))
        if len(lines[i]) <= 45 and _CAPITAL[firsts[i]]
    ]
    keyed = _SECTION_NUMBERS.sub("", "\n".join([lines[i] for i in short])).lower()
    # only a-z and the line breaks stay (heading_key): as bytes, at C speed (what lower()
    # left outside ASCII is no a-z either)
    letters = keyed.encode("ascii", "ignore").translate(None, _NOT_A_Z_NL).decode("ascii")
    keys = letters.split("\n") if short else []
    known: set[int] = set()
    references = None
    for i, key in zip(short, keys, strict=True):
        if key in REFERENCE_KEYS and len(lines[i]) <= 40 and firsts[i].isupper():
            references = i
        if key in KNOWN_HEADINGS or key.startswith("appendix"):
            known.add(i)
    known.update(i for i in map(_START, _A_FIRST.finditer(firsts)) if APPENDIX_WORD.match(lines[i]))
    numbered = [
        i for i in map(_START, _OUTLINE_FIRST.finditer(firsts)) if _OUTLINE_START[lines[i][:2]]
    ]
    return Outline(
        known=sorted(i for i in known if is_known_heading(lines[i])),
        references=references,
        numbered=numbered,
    )

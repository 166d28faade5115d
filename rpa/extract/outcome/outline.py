"""Where a paper's headings can be: the lines `headings` and `references` look at one by one.

A paper has ~900 lines and ~5 known headings; testing every line in Python cost most of the
analysis. The lines that may be headings are found here with passes at C speed: the lines'
first characters as bytes (translate, then compress: the lines that start with a capital,
a digit or an outline's letter), their lengths (map), one regex pass over the short
capitals' lines joined for their keys and one over the numbered ones for the numbering
patterns; only the few lines these leave are looked at in Python. The passes find exactly
the lines `is_known_heading`, `references_heading` and the numbering patterns accept
(tests/test_outcome_fast.py), so the headings are those a line-by-line pass would find.
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
    is_known_heading,
    known_by_key,
)

__all__ = ["Outline", "outline"]

# SECTION_NUMBER's letters, after a newline: every line's heading key in one pass over the
# lines joined (its digits and dots are no a-z: they go with the rest)
_SECTION_LETTERS = re.compile(r"\n(?:[IVX]{1,5}|[A-H])\.?[^\S\n]+")
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
        if len(self) < 100_000:  # (bounded: a text of many scripts has many first characters)
            self[c] = ok
        return ok


_START = operator.methodcaller("start")


def _bytes(chars: str) -> bytes:
    """A table for bytes.translate: 1 for each of these ASCII characters, 0 for any other."""
    return bytes(chr(b) in chars for b in range(256))


#: first characters worth a closer look (the first characters as ASCII bytes, one a line):
#: _CAPITAL's in ASCII (others are looked at one by one), an outline's (1, IV, B), "A"
_CAPITAL_BYTES = _bytes("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_OUTLINE_BYTES = _bytes("0123456789ABCDEFGHIVX")
_A_FIRST = re.compile("A")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
#: a key that starts with "appendix", among keys joined by newlines
_APPENDIX_KEY = re.compile(r"\nappendix")
#: a line NUMBERED, _ROMAN, _LETTERED or _APPENDIX_SECTION (rpa.extract.outcome.headings)
#: match, among lines joined by newlines (the newline before it matched)
_OUTLINE_LINE = re.compile(
    r"\n(?=(?:\d{1,2}(?:\.\d{1,2}){0,3}\.?|[IVX]{1,5}\.|[A-H]\.?)[^\S\n]+[A-Z])([^\n]*)"
)
#: a known heading: an upper-case letter, or a letter or digit that is not lower case
_CAPITAL = _FirstChars(lambda c: (c.isalnum() and not c.islower()) or c.isupper())


@dataclass(frozen=True, slots=True)
class Outline:
    """Where a paper's headings can be, found once for `headings` and `references` without
    a Python step for most lines (a paper has ~900 lines, ~5 known headings): `known`, the
    lines `is_known_heading` accepts; `references`, what `references_heading` finds;
    `numbered`, the lines a numbering pattern of `headings` matches (NUMBERED, _ROMAN,
    _LETTERED, _APPENDIX_SECTION: a numbered, Roman or lettered heading's start)."""

    known: list[int]
    references: int | None
    numbered: list[int]
    #: the first character of every line
    firsts: str
    #: the lines whose first character is not ASCII
    others: list[int]


def _pick(lines: list[str], at: list[int]) -> tuple[str, ...]:
    """The lines at these positions (one C call)."""
    if len(at) > 1:
        return operator.itemgetter(*at)(lines)  # type: ignore[no-any-return]
    return tuple(lines[i] for i in at)


def _positions(at: list[int], chosen: tuple[str, ...], found: list[str]) -> list[int]:
    """The positions among `at` (whose lines are `chosen`) of `found`, lines among those
    that a pattern matched, in order (told by their text: an equal line earlier would have
    matched first)."""
    out = []
    k = 0
    for text in found:
        k = chosen.index(text, k)
        out.append(at[k])
        k += 1
    return out


def outline(lines: list[str], firsts: str | None = None) -> Outline:
    """The Outline of non-blank `lines` (those of rpa.extract.outcome.pages.split_pages),
    whose first characters are `firsts` when split_pages gave them."""
    # one character a line: its first (as a byte: "?" for any non-ASCII one); passes over
    # these find the lines worth a look
    if firsts is None:
        firsts = "".join(map(_FIRST, lines))
    ascii_firsts = firsts.encode("ascii", "replace")
    rows = range(len(lines))
    others: list[int] = []
    if not firsts.isascii():
        others = list(map(_START, _NON_ASCII.finditer(firsts)))
    # A known heading is short and starts with a capital or a digit, or starts with
    # "Appendix" (each checked exactly below); the keys of the short lines come from one
    # pass over them joined.
    capital = list(compress(rows, ascii_firsts.translate(_CAPITAL_BYTES)))
    if others:
        more = compress(others, map(_CAPITAL.__getitem__, map(firsts.__getitem__, others)))
        capital = sorted([*capital, *more])
    short = list(compress(capital, map((46).__gt__, map(len, _pick(lines, capital)))))
    keyed = _SECTION_LETTERS.sub("\n", "\n" + "\n".join(_pick(lines, short))).lower()
    # only a-z and the line breaks stay (heading_key): as bytes, at C speed (what lower()
    # left outside ASCII is no a-z either)
    letters = keyed.encode("ascii", "ignore").translate(None, _NOT_A_Z_NL).decode("ascii")
    keys = letters.split("\n")[1:]
    by_key = set(compress(short, map(KNOWN_HEADINGS.__contains__, keys)))
    known: set[int] = set()  # the other lines is_known_heading may accept
    if "\nappendix" in letters:
        known.update(
            short[letters.count("\n", 0, m.start())] for m in _APPENDIX_KEY.finditer(letters)
        )
    references = None
    for i in compress(short, map(REFERENCE_KEYS.__contains__, keys)):
        if len(lines[i]) <= 40 and firsts[i].isupper():
            references = i
    appendix = list(map(_START, _A_FIRST.finditer(firsts)))
    known.update(compress(appendix, map(APPENDIX_WORD.match, _pick(lines, appendix))))
    numbered = list(compress(rows, ascii_firsts.translate(_OUTLINE_BYTES)))
    if others:
        more = compress(others, map(str.isdecimal, map(firsts.__getitem__, others)))
        numbered = sorted([*numbered, *more])
    chosen = _pick(lines, numbered)
    found = _OUTLINE_LINE.findall("\n" + "\n".join(chosen))
    return Outline(
        known=sorted(
            {i for i in by_key if known_by_key(lines[i])}.union(
                i for i in known.difference(by_key) if is_known_heading(lines[i])
            )
        ),
        references=references,
        numbered=_positions(numbered, chosen, found),
        firsts=firsts,
        others=others,
    )

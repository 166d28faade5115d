"""The reference list: its entries (numbered "[1]" / "1." or author-year) and the first few.

The list starts after the last "References"-like heading; APS papers have none, so the last
"[1]" that a "[2]" follows starts it there.
"""

from __future__ import annotations

import operator
import re
from itertools import compress

from .headings import references_heading
from .outline import Outline
from .text import WORD, join_lines

MAX_REFERENCE_CHARS = 400

_BRACKET = re.compile(r"^\[(\d{1,4})\]\s*")
_DOTTED = re.compile(r"^(\d{1,4})\.\s*(?=\S)")
_NOT_AUTHOR = re.compile(
    r"^(?:In|Proceedings|Proc\.|Journal|Association|Conference|Technical|IEEE|ACM|Ph\.D|"
    r"Available|Retrieved|URL|Accessed|Vol|Workshop|Transactions|Annual|International|The|A|"
    r"An|Advances|Lecture|Springer|University|Department|Press|Online|Association)\b"
)
_AUTHOR_START = re.compile(
    r"^(?:[A-Z][\w'’`´¨-]+(?: [A-Z][\w'’`´¨-]+)?,? (?:[A-Z]{1,3}\b|[A-Z]\.)"  # Smith J / Smith, J.
    r"|[A-Z][\w'’`´¨-]*\.? (?:[A-Z]\. )*(?:(?:van|von|de|der|den|la|le|di|da) )*[A-Z][\w'’`´¨-]+"
    r"[,.\s]"  # Jane Smith, / J. Smith.
    r"|(?:van|von|de|di|da|le|la|del) [A-Z])"
)
_YEAR = re.compile(r"\b(?:1[89]|20)\d\d[a-z]?\b")
_APPENDIX_FIRST = re.compile(r"[A-H]")
_A_Z = frozenset("abcdefghijklmnopqrstuvwxyz")
_BRACKET_FIRST = re.compile(r"\[")
_DIGIT = re.compile(r"\d")
_CLOSED = operator.methodcaller("endswith", (".", ")", "]"))
_FIRST = operator.itemgetter(0)
_APPENDIX_HEADING = re.compile(r"^(?:[A-H](?:\.\d{1,2})*\.?\s+[A-Z][a-z][^.,]{0,80}|Appendix.*)$")


def _numbered_entries(
    lines: list[str], firsts: str, pattern: re.Pattern[str], first: re.Pattern[str]
) -> list[list[str]]:
    """The entries that numbers 1, 2, 3 ... start (one or two may be missed); `firsts` are the
    lines' first characters, `first` finds those the numbers start with."""
    at = [m.start() for m in first.finditer(firsts)]
    starts: list[tuple[int, str]] = []
    expected = 1
    for i, m in zip(at, map(pattern.match, map(lines.__getitem__, at)), strict=True):
        if m and expected <= int(m.group(1)) <= expected + 2:
            expected = int(m.group(1)) + 1
            starts.append((i, lines[i][m.end() :]))
    ends = [i for i, _ in starts[1:]] + [len(lines)] if starts else []
    return [[text, *lines[i + 1 : end]] for (i, text), end in zip(starts, ends, strict=True)]


def _may_have_year(text: str) -> bool:
    """Has `text` what a _YEAR match starts with ("18", "19" or "20": a C search each)?"""
    return "19" in text or "20" in text or "18" in text


def _has_year(lines: list[str]) -> bool:
    """Has one of `lines` a year (_YEAR)? Told from them joined by spaces: a year is a word
    of its own (a word boundary on both sides), and no line break is inside one."""
    text = " ".join(lines)
    return _may_have_year(text) and _YEAR.search(text) is not None


def _year_ends(lines: list[str], start: int, i: int) -> bool:
    """Does the first year of the entry that starts at line `start`, in its first lines
    before line i (at most 4), end it ("Doe J, Roe R. 1997.": it still lacks its title)?
    Only when its text ends with a digit, or a digit and a-z ("1997a"), can it."""
    end = min(i, start + 4)
    tail = lines[end - 1].rstrip(" .")
    if tail and not (tail[-1].isdecimal() or (tail[-1] in _A_Z and tail[-2:-1].isdecimal())):
        return False  # (most entries: "... Press." ends in a letter after a letter)
    so_far = " ".join(lines[start:end]).rstrip(" .")
    if not _may_have_year(so_far):
        return False
    year = _YEAR.search(so_far)
    return year is not None and year.end() == len(so_far)


def _author_year_entries(lines: list[str], firsts: str) -> list[list[str]]:
    """Entries that start with their authors, a year among their first lines: an entry goes
    on while its last line ends no sentence; the list ends at an appendix heading."""
    size = len(lines)
    for m in _APPENDIX_FIRST.finditer(firsts, 1):
        line = lines[m.start()]
        if _APPENDIX_HEADING.match(line) and not _YEAR.search(line):
            size = m.start()
            break
    # an entry can start only after a line that ends a sentence (most lines: it goes on)
    closed = map(_CLOSED, map(str.rstrip, lines[: size - 1]))
    starts = [0]
    for i in compress(range(1, size), closed):
        if (
            not _year_ends(lines, starts[-1], i)
            and _AUTHOR_START.match(lines[i]) is not None
            and _NOT_AUTHOR.match(lines[i]) is None
            and _has_year(lines[i : i + 3])
        ):
            starts.append(i)
    if not size:
        return []
    ends = [*starts[1:], size]
    return [lines[a:b] for a, b in zip(starts, ends, strict=True)]


def _section_entries(section: list[str], firsts: str) -> list[list[str]]:
    head = section[:10]
    if any(_BRACKET.match(ln) for ln in head):
        entries = _numbered_entries(section, firsts, _BRACKET, _BRACKET_FIRST)
    elif any((m := _DOTTED.match(ln)) and m.group(1) == "1" for ln in head):
        entries = _numbered_entries(section, firsts, _DOTTED, _DIGIT)
    else:
        entries = _author_year_entries(section, firsts)
    return [e for e in entries if WORD.search(e[0]) or any(map(WORD.search, e))]


def _needs_join_lines(joined: str) -> bool:
    return len(joined) >= MAX_REFERENCE_CHARS or "- " in joined


_ENDS_HYPHEN = operator.methodcaller("endswith", "-")


def _items(entries: list[list[str]]) -> list[str]:
    """join_lines(entry, MAX_REFERENCE_CHARS)[:MAX_REFERENCE_CHARS] of each entry: its lines
    joined by spaces, at C speed, cut at the cap; join_lines only for those a line of which
    (but the last) ends with a hyphen (their joined text has "- "). (Without one, join_lines
    joins by spaces too, and stops at the line that takes it past the cap.)"""
    items = list(map(" ".join, entries))
    for i in compress(range(len(items)), map(_needs_join_lines, items)):
        if "- " in items[i] and any(map(_ENDS_HYPHEN, entries[i][:-1])):
            items[i] = join_lines(entries[i], MAX_REFERENCE_CHARS)[:MAX_REFERENCE_CHARS]
        else:
            items[i] = items[i][:MAX_REFERENCE_CHARS]
    return items


def references(lines: list[str], where: Outline | None = None) -> dict[str, object]:
    """The count of entries, the first few, and all of them (`items`, each at most
    MAX_REFERENCE_CHARS); `where` is the lines' Outline, if made."""
    entries: list[list[str]] = []
    heading = references_heading(lines) if where is None else where.references
    firsts = "".join(map(_FIRST, lines)) if where is None else where.firsts
    if heading is not None:
        entries = _section_entries(lines[heading + 1 :], firsts[heading + 1 :])
    if len(entries) < 2:
        # No usable heading (APS style has none): take the last "[1]" that a "[2]" follows.
        ones = [m.start() for m in _BRACKET_FIRST.finditer(firsts)]
        for i in reversed([i for i in ones if lines[i].startswith("[1]")]):
            if any(ln.startswith("[2]") for ln in lines[i + 1 : i + 40]):
                entries = _numbered_entries(lines[i:], firsts[i:], _BRACKET, _BRACKET_FIRST)
                break
    items = _items(entries)
    return {"count": len(entries), "first": items[:5], "items": items}

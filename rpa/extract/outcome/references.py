"""The reference list: its entries (numbered "[1]" / "1." or author-year) and the first few.

The list starts after the last "References"-like heading; APS papers have none, so the last
"[1]" that a "[2]" follows starts it there.
"""

from __future__ import annotations

import re

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
_APPENDIX_FIRST = frozenset("ABCDEFGH")
_APPENDIX_HEADING = re.compile(r"^(?:[A-H](?:\.\d{1,2})*\.?\s+[A-Z][a-z][^.,]{0,80}|Appendix.*)$")


def _numbered_entries(lines: list[str], pattern: re.Pattern[str]) -> list[list[str]]:
    entries: list[list[str]] = []
    expected = 1
    for line in lines:
        m = pattern.match(line)
        if m and expected <= int(m.group(1)) <= expected + 2:
            expected = int(m.group(1)) + 1
            entries.append([line[m.end() :]])
        elif entries:
            entries[-1].append(line)
    return entries


def _author_year_entries(lines: list[str]) -> list[list[str]]:
    entries: list[list[str]] = []
    for i, line in enumerate(lines):
        first = line[:1] in _APPENDIX_FIRST  # (a set lookup spares most lines the regex)
        if i and first and _APPENDIX_HEADING.match(line) and not _YEAR.search(line):
            break
        if entries and not entries[-1][-1].rstrip().endswith((".", ")", "]")):
            entries[-1].append(line)  # (most lines: the entry goes on)
            continue
        # An entry whose first year ends it ("Doe J, Roe R. 1997.") still lacks its title.
        so_far = " ".join(entries[-1][:4]).rstrip(" .") if entries else ""
        year = _YEAR.search(so_far)
        starts = not entries or (
            not (year and year.end() == len(so_far))
            and _AUTHOR_START.match(line) is not None
            and _NOT_AUTHOR.match(line) is None
            and any(_YEAR.search(ln) for ln in lines[i : i + 3])
        )
        if starts:
            entries.append([line])
        else:
            entries[-1].append(line)
    return entries


def _section_entries(section: list[str]) -> list[list[str]]:
    head = section[:10]
    if any(_BRACKET.match(ln) for ln in head):
        entries = _numbered_entries(section, _BRACKET)
    elif any((m := _DOTTED.match(ln)) and m.group(1) == "1" for ln in head):
        entries = _numbered_entries(section, _DOTTED)
    else:
        entries = _author_year_entries(section)
    return [e for e in entries if any(WORD.search(line) for line in e)]


def references(lines: list[str], where: Outline | None = None) -> dict[str, object]:
    """The count of entries, the first few, and all of them (`items`, each at most
    MAX_REFERENCE_CHARS); `where` is the lines' Outline, if made."""
    entries: list[list[str]] = []
    heading = references_heading(lines) if where is None else where.references
    if heading is not None:
        entries = _section_entries(lines[heading + 1 :])
    if len(entries) < 2:
        # No usable heading (APS style has none): take the last "[1]" that a "[2]" follows.
        firsts = [i for i, ln in enumerate(lines) if ln.startswith("[1]")]
        for i in reversed(firsts):
            if any(ln.startswith("[2]") for ln in lines[i + 1 : i + 40]):
                entries = _numbered_entries(lines[i:], _BRACKET)
                break
    items = [join_lines(e, MAX_REFERENCE_CHARS)[:MAX_REFERENCE_CHARS] for e in entries]
    return {"count": len(entries), "first": items[:5], "items": items}

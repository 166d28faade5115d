"""The abstract: under an "Abstract" heading, or without one, and capped at a sentence end.

Found in this order, on the first two pages:

1. after an "Abstract"/"Summary" heading, or the same word run in ("Abstract. We ...",
   IEEE's "Abstract—We ...");
2. else, on page 1 after the title block, a structured abstract's first label
   ("Objectives. ...", "Background: ..."), as Hindawi and many medical journals print them;
3. else, on page 1 after the title block and before the first section heading, the first
   run of prose lines: REVTeX/APS put the abstract under the "(Dated: ...)" line, ACM
   journals between the author lines and "CCS Concepts", neither with a heading.

It ends at a keyword/classification line, a section heading, a footnote line, or the end of
its page (an abstract does not run over a page), and loses the footnote marks typesetting
left in it. It is capped at MAX_ABSTRACT_CHARS: a longer one is cut at the last sentence end
before the cap, and the record says so ("abstract_truncated").
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .headings import is_heading_at
from .outline import Outline
from .text import abstract_start, join_lines, strip_footnote_marks

MAX_ABSTRACT_CHARS = 4_000

_ABSTRACT_END = re.compile(
    r"^(?:key\s?words|index terms|ccs concepts|acm reference format|additional key words|"
    r"subjects?\b|pacs(?:\s+numbers?)?\s*:?\s*\d|msc\b|mathematics subject classification|jel\b|"
    r"general terms|categories and subject descriptors|note added\b)",
    re.IGNORECASE,
)
#: what _ABSTRACT_END can start with: the first letters of its words in either case, and
#: what a case-insensitive regex takes for them ("İ" and "ı" for i, "ſ" for s, "K" for k)
END_FIRST = frozenset("kicaspmjgnKICASPMJGN\u0130\u0131\u017f\u212a")
# A footnote at the foot of the column: "∗ Research supported by ...", "⋆Equal contribution"
_FOOTNOTE = re.compile(r"^[∗*†‡§¶⋆]\s*\S")
_MARKS = frozenset("∗*†‡§¶⋆")
_LABEL = re.compile(
    r"^(?:Objectives?|Background|Purpose|Aims?|Context|Motivation|Importance|Rationale)"
    r"\s*[.:]\s+[A-Z(]"
)
_SENTENCE_END = re.compile(r"[.!?][\"”’)]?(?=\s+[\"“(]?[A-Z0-9])")
_ABBREVIATION = re.compile(
    r"(?:\b(?:e\.g|i\.e|et al|etc|Fig|Figs|Eq|Eqs|Ref|Refs|Sec|vs|cf|Dr|Mr|Ms|No|Vol|pp|Inc)"
    r"|\b[A-Z])\.$"
)
_RUN_IN_FOOTNOTE = re.compile(r"(?<=[.!?])\s+[∗†‡⋆§¶]\s?[A-Z].*$")
_ENDS_CLOSED = re.compile(r"[.!?)\]]$")
_ENDS_SENTENCE = re.compile(r"[.!?]$")
#: what an "Abstract" or "Summary" line starts with (rpa.extract.outcome.text.abstract_start)
_ABSTRACT_FIRST = re.compile(r"[AaSsſ]")


class _Stops:
    """Does line i end an abstract (it is not part of it)? The known and numbered headings
    come from the lines' Outline: the others are no headings."""

    def __init__(self, lines: list[str], where: Outline) -> None:
        self.lines = lines
        self.known = set(where.known)
        self.numbered = set(where.numbered)

    def __call__(self, i: int) -> bool:
        line = self.lines[i]
        first = line[:1]
        if i in self.known or (first in END_FIRST and _ABSTRACT_END.match(line)):
            return True
        if first in _MARKS and _FOOTNOTE.match(line):
            return True
        return i in self.numbered and is_heading_at(self.lines, i, self.known)


def _prose(line: str) -> bool:
    """A line of running text (not a name, affiliation, header or e-mail line)."""
    words = line.split()
    if len(words) < 8 or "@" in line or not line[:1].isupper():
        return False
    lower = sum(1 for w in words if w[:1].islower())
    return lower >= 0.5 * len(words)


def cap(text: str, limit: int = MAX_ABSTRACT_CHARS) -> tuple[str, bool]:
    """`text` cut to at most `limit` characters at its last sentence end (a word end if no
    sentence ends in the second half), and whether it was cut."""
    if len(text) <= limit:
        return text, False
    head = text[: limit + 1]
    ends = [
        m.end() for m in _SENTENCE_END.finditer(head) if not _ABBREVIATION.search(head[: m.end()])
    ]
    if ends and ends[-1] >= limit // 2:
        return head[: ends[-1]].strip(), True
    return head[: head.rstrip().rfind(" ")].rstrip(" ,;:") or text[:limit], True


def _body(
    lines: list[str], stops: _Stops, i: int, page_end: int, first: str
) -> tuple[list[str], int]:
    """The abstract's lines from line i (with `first`, its run-in text, before them)."""
    body = [first] if first else []
    j = i
    size = len(first)
    while j < min(page_end, len(lines)) and size < MAX_ABSTRACT_CHARS + 200:
        if stops(j):
            break
        body.append(lines[j])
        size += len(lines[j]) + 1
        j += 1
    # A last line that ends no sentence after one that did is a link or a credit line under
    # the abstract ("github.com/allenai/papermage"), not its end.
    if body:  # a footnote run into the last line: "... matrix model. ⋆ Research supported"
        body[-1] = _RUN_IN_FOOTNOTE.sub("", body[-1])
    if (
        len(body) >= 2
        and not _ENDS_CLOSED.search(strip_footnote_marks(body[-1]))
        and _ENDS_SENTENCE.search(strip_footnote_marks(body[-2]))
    ):
        body.pop()
    return body, j


def _page_end(starts: list[int], i: int, total: int) -> int:
    return next((s for s in starts if s > i), total)


def abstract(
    lines: list[str],
    starts: list[int],
    front_end: int,
    is_noise: Callable[[str], bool],
    where: Outline,
) -> tuple[str, int, bool]:
    """The abstract, the index of the line after it (0 when there is none) and whether it
    was cut at the cap. `front_end` is the first line after the title and author block,
    `is_noise` tells page-1 header lines (licence, dates) from text, and `where` is the
    lines' Outline."""
    stops = _Stops(lines, where)
    two_pages = starts[2] if len(starts) > 2 else len(lines)
    limit = min(two_pages, 400)
    found: tuple[list[str], int] | None = None
    # The first "Abstract" line, unless a known heading comes first (the body has begun: a
    # "Summary" after "1 Introduction" is no abstract): only lines that start with a letter
    # of "Abstract" or "Summary", and the known headings, are looked at.
    heads = [m.start() for m in _ABSTRACT_FIRST.finditer(where.firsts, 0, limit)]
    for i in sorted({*heads, *(k for k in where.known if k < limit)}):
        first = abstract_start(lines[i])
        if first is None:
            if i in stops.known:
                break
            continue
        end = _page_end(starts, i + (not first), len(lines))  # a heading ending a page
        found = _body(lines, stops, i + 1, end, first)
        break
    if found is None:
        page1_end = _page_end(starts, 0, len(lines))
        region = range(min(front_end, page1_end), page1_end)
        if any(map(stops, range(region.start))):
            region = range(0)  # the "title" was a section heading: there is no front matter
        # only before the first section: what follows it is the paper's body
        region = range(region.start, next(filter(stops, region), region.stop))
        label = next((i for i in region if _LABEL.match(lines[i])), None)
        if label is not None:
            found = _body(lines, stops, label, page1_end, "")
        else:
            for i in region:
                if is_noise(lines[i]) or not _prose(lines[i]):
                    continue
                body, end = _body(lines, stops, i, page1_end, "")
                if sum(len(b) for b in body) >= 250:
                    found = body, end
                break
    if found is None:
        return "", 0, False
    body, end = found
    text, cut = cap(strip_footnote_marks(join_lines(body)))
    return text, end, cut

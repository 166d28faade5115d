"""arXiv's vertical ID stamp on page 1, however the extractor laid it out."""

from __future__ import annotations

import re
from collections.abc import Mapping

from rpa.errors import InvalidIdError
from rpa.ids import parse_id

from .text import MONTHS as _MONTHS

__all__ = ["STAMP", "find_arxiv_stamp", "stamp_mismatch"]


def _stamp_pattern(version: str) -> re.Pattern[str]:
    return re.compile(
        r"arXiv\s*:\s*(?P<id>\d{4}\s*\.\s*\d{4,5}|[a-z]+(?:-[a-z]+)?(?:\.[A-Z]{2})?\s*/\s*\d{7})"
        rf"\s*v\s*(?P<ver>{version})"
        r"(?:\s*\[\s*(?P<cat>[A-Za-z-]+(?:\s*\.\s*[A-Za-z-]+)?)\s*\])?"
        rf"(?:\s*(?P<day>\d{{1,2}})\s*(?P<mon>{_MONTHS})\s*(?P<year>(?:19|20)\d\d))?"
    )


# New-style (2301.00001) and old-style (hep-th/9108004, math.AG/0101001) arXiv identifiers,
# with `\s*` everywhere because pypdf renders the vertical stamp with odd spacing.
_STAMP = _stamp_pattern(r"\d+")
# With all whitespace squashed out, "v1 16 Aug" reads "v116Aug": take the fewest version
# digits that let a date follow. (A v12 stamped on day 3 is then misread as v1: ambiguous.)
_STAMP_SQUASHED = _stamp_pattern(r"\d+?")
_SPACES = re.compile(r"\s+")


#: the "X" of "arXiv" or of "viXra" (group 1 for the first), whitespace allowed between
_X = re.compile(r"X(?=(\s*i\s*v)|\s*r\s*a)")


def _stamp_word(text: str) -> bool:
    """Is "arXiv" or "viXra" in the text without its whitespace? Told around each "X" (a
    page has few), not by squashing the page."""
    for m in _X.finditer(text):
        before = "ar" if m.group(1) is not None else "vi"
        head = text[: m.start()].rstrip()
        if head.endswith(before[1]) and head[:-1].rstrip().endswith(before[0]):
            return True
    return False


def find_arxiv_stamp(text: str) -> dict[str, object] | None:
    """Find arXiv's vertical ID stamp in page-1 text, however pypdf laid it out.

    Tried in order: the text as is, the text reversed (rotated text sometimes comes out
    backwards), and both with all whitespace removed (one glyph per line, or spaced glyphs).
    """
    if not _stamp_word(text):
        return None  # each of the four ways below needs "arXiv" or "viXra" (backwards)
    squashed = "".join(text.split())  # what re.sub(r"\s+", "", text) gives, at C speed
    for candidate, pattern in (
        (text, _STAMP),
        (text[::-1], _STAMP),
        (squashed, _STAMP_SQUASHED),
        (squashed[::-1], _STAMP_SQUASHED),
    ):
        match = pattern.search(candidate)
        if match is None:
            continue
        ident = _SPACES.sub("", match["id"])
        version = int(match["ver"])
        if pattern is _STAMP:
            raw = " ".join(match.group(0).split())
        else:
            raw = f"arXiv:{ident}v{version}"
            if match["cat"]:
                raw += f" [{match['cat']}]"
            if match["day"]:
                raw += f" {int(match['day'])} {match['mon']} {match['year']}"
        return {"id": ident, "version": version, "raw": raw}
    return None


STAMP = _STAMP
#: an old-style ID's subject class ("math.AG/0101001"): stamps and IDs give it or not
_SUBJECT_CLASS = re.compile(r"\.[^/]*(?=/)")


def _paper(ident: str) -> str:
    return _SUBJECT_CLASS.sub("", ident.lower())


def stamp_mismatch(stamp: Mapping[str, object] | None, paper_id: str) -> str | None:
    """The stamped ID ("2301.00002v1") when the arXiv stamp on page 1 names another paper
    than `paper_id` (the job's ID), so that the record tells that the PDF and the metadata
    fetched for the ID may not be the same paper; None when they agree, there is no stamp,
    or the job's ID is not an arXiv ID. Another version of the same paper is no mismatch."""
    if not stamp or not stamp.get("id"):
        return None
    try:
        paper = parse_id(paper_id)
    except InvalidIdError:
        return None
    if not paper.is_arxiv or _paper(str(stamp["id"])) == _paper(paper.base):
        return None
    return f"{stamp['id']}v{stamp.get('version')}"

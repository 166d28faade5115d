"""Page 1's front matter: header lines (venue, dates, licence, stamp) and the title.

The title's position matters as much as its text: the author block is read right after it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from itertools import repeat

from .authors import author_line
from .stamp import STAMP
from .text import (
    AFFILIATION,
    CONNECTORS,
    MARKERS,
    MONTHS,
    WORD,
    abstract_start,
    alpha_words,
    two_words,
)

# Header and footer lines: what they start with, and what they have anywhere. (One pattern
# with both, searched case-insensitively, tried every alternative at every position of every
# line: most of the title's cost. The second is searched only where one of _NOISE_WORDS is.)
_NOISE_START = re.compile(
    r"^(?:proceedings|journal|transactions|vol\.|volume|issue|received|accepted|published|"
    r"submitted|revised|available online|draft|preprint|typeset|to appear|under review|"
    r"citation:|academic editor|editor|corresponding author|keywords|doi)\b"
    r"|^c\s+(?:19|20)\d\d\b"  # PDFium: "c 2007 Association for ..."
    r"|^(?:research|original|review|short|technical)\s+(?:article|paper|communication|report)"
    r"(?:\s+\S*\d\S*)?$"
    r"|^(?:\S ){4,}",  # letter-spaced banners such as "R E S E A R C H  A R T I C L E"
    re.IGNORECASE,
)
_NOISE_ANYWHERE = re.compile(
    r"\b(?:vol\.|volume \d|issn|isbn|doi\b|doi:|https?://|www\.|pp\.\s*\d|pages \d)"
    r"|©|c©|\(c\)\s*\d{4}"
    r"|copyright|licen[cs]e|creative commons|open access|all rights reserved"
    r"|ournal\b|publishing|publisher",
    re.IGNORECASE,
)
#: one of these is in every line _NOISE_ANYWHERE finds (lower case)
_NOISE_WORDS = re.compile(
    r"vol\.|volume |issn|isbn|doi|http|www\.|pp\.|pages |©|\(c\)|copyright|licen"
    r"|creative commons|open access|all rights reserved|ournal|publish"
)


def _noise(line: str) -> bool:
    """A venue, volume, date, licence or banner line."""
    if _NOISE_START.match(line):
        return True
    low = line.lower()
    if not low.isascii():  # what else a case-insensitive regex takes for an ASCII letter
        low = low.replace("ı", "i").replace("ſ", "s").replace("\u0307", "")  # (İ: i + U+0307)
    return _NOISE_WORDS.search(low) is not None and _NOISE_ANYWHERE.search(line) is not None


_DATE_LINE = re.compile(rf"\b(?:{MONTHS})[a-z]*\.?\b.*\b(?:19|20)\d\d\b", re.IGNORECASE)
_AUTHOR_MARKS = re.compile(r"[a-z\u00e0-\u024f]\d{1,2}(?:[,∗*†‡]|\s|$)")
_AUTHOR_MARKERS = re.compile(rf"[{MARKERS}].*[{MARKERS}]")
_AUTHOR_AND = re.compile(
    r"[A-Z][\w.'’-]*(?:\s+[A-Z][\w.'’-]*){0,3},?\s+(?:and|AND)\s+[A-Z][\w.'’-]*\s+[A-Z]"
)
_TWO_COMMAS = re.compile(r",.*,")
_DIGIT = re.compile(r"\d")


def _author_shaped(line: str) -> bool:
    """An author line's shape: affiliation digits glued to a name, two footnote markers,
    "A B and C D" at its start, or a comma-separated list of names (each pattern tried only
    when the line has what it needs). An e-mail address alone is weaker: sidebars have them."""
    return (
        (line.count(",") >= 2 and _TWO_COMMAS.search(line) is not None)
        or (_DIGIT.search(line) is not None and _AUTHOR_MARKS.search(line) is not None)
        or _AUTHOR_MARKERS.search(line) is not None
        or (("and" in line or "AND" in line) and _AUTHOR_AND.match(line) is not None)
    )


_MARKS_LINE = re.compile(r"^(?:[,;]|and\s|\d{1,2}(?:,\d{1,2})*$|[a-z]$|[∗*†‡§¶⋆])")
_PLACEHOLDER = re.compile(
    r"^(?:untitled|title|no title|document\d*|paper|manuscript|slides?|template|proceedings\b.*"
    r"|journal of\b.*|.*\.(?:dvi|tex|pdf|docx?|rtf|ps|eps|indd|qxd|txt|odt))$",
    re.IGNORECASE,
)
# "Disk-Based Storage for Scalable Video - Circuits and Systems for Video Technology, IEEE
# Transactions on": digital libraries append the venue to the metadata title.
_VENUE_TAIL = re.compile(
    r"\s+[-–—]\s+(?=[^-–—]*\b(?:IEEE|ACM|Transactions|Journal|Proceedings|Conference|"
    r"Symposium|Workshop|Letters)\b)[^-–—]*$"
)
_MARK_OR_DIGIT = re.compile(f"[{MARKERS}\\d]")
_NON_LETTERS = re.compile(r"[\W\d_]+")
_LETTER = re.compile(r"[^\W\d_]")
_OFFICE_PREFIX = re.compile(r"^Microsoft (?:Word|PowerPoint) - ")


#: page-1 lines are asked about again for every place a title could start: each is read once
#: (the cache holds a few papers' front matter; an extraction process analyses one at a time)
_memo = functools.lru_cache(maxsize=2048)


@_memo
def is_header(line: str) -> bool:
    """A page-1 header or footer line: venue, volume, dates, licence, report number, stamp."""
    if ("arXiv" in line and STAMP.search(line)) or _noise(line):
        return True
    if not two_words(line) and any(map(str.isdigit, line)):
        return True  # "4969", "JCAP10(2008)003", "IASSNS-HEP-91/51"
    # (a date line has a year: 19.. or 20..)
    return (
        ("19" in line or "20" in line)
        and len(line.split()) <= 6
        and _DATE_LINE.search(line) is not None
    )


@_memo
def is_author(line: str) -> bool:
    return _author_shaped(line) and not is_header(line)


def _name_like(line: str) -> bool:
    words = line.split()
    return 2 <= len(words) <= 4 and all(w[:1].isupper() for w in words)


def _continues(title: str, nxt: str) -> bool:
    """Does line `nxt` continue a title whose text so far is `title`?"""
    if is_header(nxt) or not WORD.search(nxt) or len(title) + len(nxt) > 250 or "@" in nxt:
        return False
    if title.split()[-1].lower() in CONNECTORS and not _MARK_OR_DIGIT.search(nxt):
        return True  # "... Papers with" / "Persistent and Personalized ...": not done yet
    if is_author(nxt) or "@" in nxt or title.endswith(tuple("∗†‡⋆")) or nxt.lower() == "by":
        return False  # (a footnote mark ends a title: "... v6.31∗")
    if author_line(nxt):
        return False  # "Ludwig van Beethoven and Xiao-Ming Li"
    if nxt.endswith(",") and _name_like(nxt.rstrip(" ,")):
        return False  # "Greg J. Schwarz ," starts an author list
    last = title.split()[-1].lower()
    affiliation = not AFFILIATION.isdisjoint(
        map(str.strip, map(str.lower, nxt.split()), repeat(",."))
    )
    if affiliation and last not in CONNECTORS and nxt[:1].isupper() and not title.endswith(":"):
        return False  # "Department of Physics, ..."
    if last in CONNECTORS or title.endswith((":", "-", "–", "—")) or nxt[:1].islower():
        return True
    if _name_like(nxt):
        return len(title.split("\n")[-1]) >= 60  # only a long, wrapped line goes on
    return len(title.split("\n")[-1]) >= 40 or any(w in CONNECTORS for w in nxt.split())


def _title_at(lines: list[str], i: int) -> tuple[str, int]:
    """The title that would start at line i, and the index of the line after it."""
    parts = [lines[i]]
    for k, nxt in enumerate(lines[i + 1 : i + 5], start=i + 1):
        after = lines[k + 1] if k + 1 < len(lines) else ""
        if not _continues("\n".join(parts), nxt) or _MARKS_LINE.match(after):
            break  # (PDFium sets an author's marks, and the list's commas, on lines after it)
        parts.append(nxt)
    return clean_title(" ".join(parts)), i + len(parts)


def _text_title(lines: list[str]) -> tuple[str, int]:
    """The title from page-1 lines, and the index of the line after it (0 if none): the first
    line(s) after a header block, best placed.

    Each header line (venue, dates, licence, stamp) may end the block above a title; every
    such start is scored: a title is followed by an author line, is not one itself, and has
    a few words. The best score wins, the earliest on a tie.
    """
    lines = lines[:40]
    end = next((i for i, ln in enumerate(lines) if abstract_start(ln) is not None), len(lines))
    starts = [0] + [i + 1 for i in range(end) if is_header(lines[i])]
    best, best_after, best_score = "", 0, -10
    for start in starts:
        first = next(
            (
                i
                for i in range(start, end)
                if two_words(lines[i]) and len(lines[i]) <= 300 and not is_header(lines[i])
            ),
            None,
        )
        if first is None:
            continue
        title, after = _title_at(lines, first)
        score = (len(title.split()) >= 3) - 2 * is_author(lines[first])
        if after < len(lines) and is_author(lines[after]):
            score += 2
        if score > best_score:
            best, best_after, best_score = title, after, score
    return best, best_after


def clean_title(title: str) -> str:
    title = " ".join(title.split())
    return title.rstrip(MARKERS + ", ").strip()


def _letters(text: str) -> str:
    return _NON_LETTERS.sub("", text.lower())


def _locate(lines: list[str], title: str) -> int:
    """The index of the line after `title` printed on page 1, or 0 if it is not there."""
    want = _letters(title)
    for i, line in enumerate(lines[:40]):
        got = _letters(line)
        if len(got) < min(12, len(want)) or not want.startswith(got):
            continue
        j = i + 1
        while j < len(lines) and len(got) < len(want) and want.startswith(got + _letters(lines[j])):
            got += _letters(lines[j])
            j += 1
        if len(got) >= 0.8 * len(want):
            return j
    return 0


def _on_page(words: list[str], page: str) -> int:
    """How many of `words` (lower case) are among the words of `page` (WORD's runs of
    letters) in lower case: each looked for in the page's lower case, where a letter
    neither comes before nor after it. (Lower case maps each letter to one letter and any
    other character to no letter, but for "İ", "i" and U+0307 in lower case; and "Σ"
    depends on what follows it.)"""
    if "İ" in page or "Σ" in page or any("\u0307" in w for w in words):
        page_words = set(map(str.lower, alpha_words(page)))
        return sum(1 for w in words if w in page_words)
    low = page.lower()
    found = 0
    for word in words:
        at = low.find(word)
        while at >= 0:
            end = at + len(word)
            if not (at and _LETTER.match(low, at - 1)) and not _LETTER.match(low, end):
                found += 1
                break
            at = low.find(word, at + 1)
    return found


def _meta_title(metadata: dict[str, str], page1: str) -> str:
    """The metadata title if it is plausibly this paper's title, else ""."""
    raw = metadata.get("/Title") or metadata.get("title") or metadata.get("Title") or ""
    title = clean_title(unicodedata.normalize("NFKC", str(raw)))
    title = _OFFICE_PREFIX.sub("", title)
    title = _VENUE_TAIL.sub("", title)
    words = [w.lower() for w in alpha_words(title)]
    if len(title) < 6 or len(words) < 2 or _PLACEHOLDER.match(title) or STAMP.search(title):
        return ""
    # Producers often leave a stale or generic title: keep it only if page 1 says it too.
    if len(page1) >= 200 and _on_page(words, page1) < 0.6 * len(words):
        return ""
    return title


def title(lines: list[str], metadata: dict[str, str]) -> tuple[str, int]:
    """The title (the metadata's if page 1 agrees, else page 1's) and the index of the page-1
    line after it, where the author block starts (0 when it cannot be placed)."""
    text, after = _text_title(lines)
    meta = _meta_title(metadata, "\n".join(lines))
    if not meta:
        return text, after
    return meta, _locate(lines, meta) or after

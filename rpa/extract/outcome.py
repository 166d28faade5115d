"""Key-outcome analysis of a paper's extracted text: pure functions, no I/O.

This runs inside the extraction worker process right after the text is extracted, so it must
never raise on odd input and must stay cheap (linear in the text, a few regex passes).

Everything here works on pypdf's plain text, which has no font sizes or positions: the
heuristics lean on the shapes that survive extraction (numbering, known heading words, header
and author-line markers). They were checked against a corpus of one- and two-column papers from
many publishers, not tuned to single files; expect plausible, not perfect, results.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_ABSTRACT_CHARS", "MAX_HEADINGS", "analyze", "find_arxiv_stamp"]

MAX_ABSTRACT_CHARS = 2_000
MAX_HEADINGS = 100
MAX_REFERENCE_CHARS = 400

_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"


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


def find_arxiv_stamp(text: str) -> dict[str, object] | None:
    """Find arXiv's vertical ID stamp in page-1 text, however pypdf laid it out.

    Tried in order: the text as is, the text reversed (rotated text sometimes comes out
    backwards), and both with all whitespace removed (one glyph per line, or spaced glyphs).
    """
    squashed = re.sub(r"\s+", "", text)
    for candidate, pattern in (
        (text, _STAMP),
        (text[::-1], _STAMP),
        (squashed, _STAMP_SQUASHED),
        (squashed[::-1], _STAMP_SQUASHED),
    ):
        match = pattern.search(candidate)
        if match is None:
            continue
        ident = re.sub(r"\s+", "", match["id"])
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


# ---------------------------------------------------------------------------------- title


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_CONNECTORS = _words(
    "a an and as at between by for from in into of on or over the through to towards under "
    "using via with without is are do does that which we"
)
_NOISE = re.compile(
    r"^(?:proceedings|journal|transactions|vol\.|volume|issue|received|accepted|published|"
    r"submitted|revised|available online|draft|preprint|typeset|to appear|under review|"
    r"citation|academic editor|editor|corresponding author|keywords|doi)\b"
    r"|\b(?:vol\.|volume \d|issn|isbn|doi\b|doi:|https?://|www\.|pp\.\s*\d|pages \d)"
    r"|©|c©|\(c\)\s*\d{4}|copyright|licen[cs]e|creative commons|open access|all rights reserved"
    r"|ournal\b|publishing|publisher"
    r"|^(?:research|original|review|short|technical)\s+(?:article|paper|communication|report)$"
    r"|^(?:\S ){4,}",  # letter-spaced banners such as "R E S E A R C H  A R T I C L E"
    re.IGNORECASE,
)
_DATE_LINE = re.compile(rf"\b(?:{_MONTHS})[a-z]*\.?\b.*\b(?:19|20)\d\d\b", re.IGNORECASE)
_MARKERS = "∗*†‡§¶⋆♠♢♡♣"
# An author line: affiliation digits glued to a name, two footnote markers, "A B and C D", or
# a comma-separated list of names. (An e-mail address alone is weaker: sidebars have them.)
_AUTHOR = re.compile(
    r"[a-z\u00e0-\u024f]\d{1,2}(?:[,∗*†‡]|\s|$)"
    rf"|[{_MARKERS}].*[{_MARKERS}]"
    r"|^[A-Z][\w.'’-]*(?:\s+[A-Z][\w.'’-]*){0,3},?\s+(?:and|AND)\s+[A-Z][\w.'’-]*\s+[A-Z]"
    r"|,.*,"
)
_WORD = re.compile(r"[^\W\d_]{2,}")


def _alpha_words(line: str) -> list[str]:
    return _WORD.findall(line)


def _is_header(line: str) -> bool:
    """A page-1 header or footer line: venue, volume, dates, licence, report number, stamp."""
    if _STAMP.search(line) or _NOISE.search(line):
        return True
    if len(_alpha_words(line)) < 2 and any(c.isdigit() for c in line):
        return True  # "4969", "JCAP10(2008)003", "IASSNS-HEP-91/51"
    return len(line.split()) <= 6 and _DATE_LINE.search(line) is not None


def _is_author(line: str) -> bool:
    return _AUTHOR.search(line) is not None and not _is_header(line)


def _name_like(line: str) -> bool:
    words = line.split()
    return 2 <= len(words) <= 4 and all(w[:1].isupper() for w in words)


def _continues(title: str, nxt: str) -> bool:
    """Does line `nxt` continue a title whose text so far is `title`?"""
    if _is_header(nxt) or not _alpha_words(nxt) or len(title) + len(nxt) > 250:
        return False
    if _is_author(nxt) or "@" in nxt:
        return False
    last = title.split()[-1].lower()
    if last in _CONNECTORS or title.endswith((":", "-", "–", "—")) or nxt[:1].islower():
        return True
    if _name_like(nxt):
        return len(title.split("\n")[-1]) >= 60  # only a long, wrapped line goes on
    return len(title.split("\n")[-1]) >= 40 or any(w in _CONNECTORS for w in nxt.split())


def _title_at(lines: list[str], i: int) -> tuple[str, int]:
    """The title that would start at line i, and the index of the line after it."""
    parts = [lines[i]]
    for nxt in lines[i + 1 : i + 5]:
        if not _continues("\n".join(parts), nxt):
            break
        parts.append(nxt)
    return _clean_title(" ".join(parts)), i + len(parts)


def _text_title(page1: str) -> str:
    """The title from page-1 text: the first line(s) after a header block, best placed.

    Each header line (venue, dates, licence, stamp) may end the block above a title; every
    such start is scored: a title is followed by an author line, is not one itself, and has
    a few words. The best score wins, the earliest on a tie.
    """
    lines = [ln.strip() for ln in page1.splitlines() if ln.strip()][:40]
    end = next((i for i, ln in enumerate(lines) if _abstract_start(ln) is not None), len(lines))
    starts = [0] + [i + 1 for i in range(end) if _is_header(lines[i])]
    best, best_score = "", -10
    for start in starts:
        first = next(
            (
                i
                for i in range(start, end)
                if len(_alpha_words(lines[i])) >= 2 and not _is_header(lines[i])
            ),
            None,
        )
        if first is None:
            continue
        title, after = _title_at(lines, first)
        score = (len(title.split()) >= 3) - 2 * _is_author(lines[first])
        if after < len(lines) and _is_author(lines[after]):
            score += 2
        if score > best_score:
            best, best_score = title, score
    return best


def _clean_title(title: str) -> str:
    title = " ".join(title.split())
    return title.rstrip(_MARKERS + ", ").strip()


_PLACEHOLDER = re.compile(
    r"^(?:untitled|title|no title|document\d*|paper|manuscript|slides?|template|proceedings\b.*"
    r"|journal of\b.*|.*\.(?:dvi|tex|pdf|docx?|rtf|ps|eps|indd|qxd|txt|odt))$",
    re.IGNORECASE,
)


def _meta_title(metadata: dict[str, str], page1: str) -> str:
    """The metadata title if it is plausibly this paper's title, else ""."""
    raw = metadata.get("/Title") or metadata.get("title") or metadata.get("Title") or ""
    title = _clean_title(unicodedata.normalize("NFKC", str(raw)))
    title = re.sub(r"^Microsoft (?:Word|PowerPoint) - ", "", title)
    words = [w.lower() for w in _alpha_words(title)]
    if len(title) < 6 or len(words) < 2 or _PLACEHOLDER.match(title) or _STAMP.search(title):
        return ""
    page_words = {w.lower() for w in _alpha_words(page1)}
    if len(page1) >= 200:
        # Producers often leave a stale or generic title: keep it only if page 1 says it too.
        found = sum(1 for w in words if w in page_words)
        if found < 0.6 * len(words):
            return ""
    return title


# ------------------------------------------------------------------- abstract and headings

_ABSTRACT = re.compile(
    r"^(?:abstract|a\s?b\s?s\s?t\s?r\s?a\s?c\s?t|summary)\d{0,3}(?:\s*$|\s*[.:—–-]\s*(.*)$)",
    re.IGNORECASE,
)
_ABSTRACT_END = re.compile(
    r"^(?:key\s?words|index terms|ccs concepts|acm reference format|additional key words|"
    r"subjects?\b|pacs|msc|mathematics subject classification|jel|general terms)",
    re.IGNORECASE,
)
_NUMBERED = re.compile(r"^(?P<num>\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+(?P<text>[A-Z].*)$")
_ROMAN = re.compile(r"^(?P<num>[IVX]{1,5})\.\s+(?P<text>[A-Z].*)$")
_KNOWN_HEADINGS = _words(
    "introduction relatedwork relatedworks background conclusion conclusions "
    "conclusionsandfuturework conclusionandfuturework futurework discussion results "
    "resultsanddiscussion methods materialsandmethods methodology evaluation experiments "
    "limitations ethicsstatement acknowledgments acknowledgements acknowledgment "
    "acknowledgement references bibliography literaturecited referencesandnotes appendix "
    "appendices supplementarymaterial summary"
)
_REFERENCE_KEYS = _words("references bibliography literaturecited referencesandnotes workscited")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10}
_REFERENCE_LIKE = re.compile(r"^\S+\s+[A-Z]\.\s|\b(?:1[89]|20)\d\d\b|“|,.*,")


def _abstract_start(line: str) -> str | None:
    match = _ABSTRACT.match(line)
    return None if match is None else (match.group(1) or "")


def _heading_key(line: str) -> str:
    """Letters only, lower case, without a leading section number: "2. RELATED WORK" ->
    "relatedwork"; also undoes small-caps spacing such as "A CKNOWLEDGMENTS"."""
    line = re.sub(r"^(?:\d{1,2}(?:\.\d{1,2})*|[IVX]{1,5}|[A-H])\.?\s+", "", line)
    return re.sub(r"[^a-z]", "", line.lower())


def _is_known_heading(line: str) -> bool:
    if len(line) > 45 or not line[:1].isalnum() or line[:1].islower():
        return False  # "results." or "(Appendix B)." inside a sentence
    if re.search(r"\s\d{1,3}$", line):
        return False  # a table-of-contents line: "References 14"
    key = _heading_key(line)
    return key in _KNOWN_HEADINGS or re.fullmatch(r"appendix[a-z]?", key) is not None


def _plausible_heading_text(text: str) -> bool:
    words = text.split()
    if not 1 <= len(words) <= 12 or len(text) > 72 or "@" in text or "et al" in text:
        return False
    if text.endswith((".", ",", ";", ":", "-")) or words[-1].lower() in _CONNECTORS:
        return False  # a wrapped sentence (a list item), not a heading
    if re.search(r"\s\d{1,3}$", text) or re.search(r":\s+[a-z]", text):
        return False  # a table-of-contents line ("2 Methods 5") or a run-in list item
    letters = sum(c.isalpha() for c in text)
    return letters >= 0.6 * len(text.replace(" ", ""))


def _roman(numeral: str) -> int:
    values = [_ROMAN_VALUES[c] for c in numeral]
    return sum(-v if i + 1 < len(values) and v < values[i + 1] else v for i, v in enumerate(values))


def _follows(prev: tuple[int, ...] | None, cur: tuple[int, ...]) -> bool:
    """May section number `cur` come right after `prev` in an outline?"""
    if prev is None:
        return cur[0] <= 3 and all(n == 1 for n in cur[1:])
    k = len(cur)
    if k <= len(prev):
        return cur[: k - 1] == prev[: k - 1] and prev[k - 1] < cur[k - 1] <= prev[k - 1] + 2
    return k == len(prev) + 1 and cur[:-1] == prev and cur[-1] <= 2


def _longest_outline(cands: list[tuple[int, tuple[int, ...]]]) -> list[int]:
    """Positions of the longest chain of candidates that reads as an outline: stray numbered
    lines (affiliations, list items, table rows) rarely continue 1, 1.1, 1.2, 2 ..."""
    cands = cands[:600]  # bounds the quadratic search on pathological inputs
    best: list[int] = []
    prev_of: list[int] = []
    for i, (_, num) in enumerate(cands):
        length, link = (1, -1) if _follows(None, num) else (0, -1)
        for j in range(i):
            if best[j] and best[j] + 1 > length and _follows(cands[j][1], num):
                length, link = best[j] + 1, j
        best.append(length)
        prev_of.append(link)
    if not best or max(best) == 0:
        return []
    i = best.index(max(best))
    chain = []
    while i != -1:
        chain.append(cands[i][0])
        i = prev_of[i]
    return chain[::-1]


def _headings(lines: list[str], body_start: int) -> list[str]:
    arabic: list[tuple[int, tuple[int, ...]]] = []
    roman: list[tuple[int, tuple[int, ...]]] = []
    known: list[int] = []
    refs_at = _references_heading(lines)
    in_references = False
    for pos, line in enumerate(lines):
        if _is_known_heading(line):
            known.append(pos)  # and, when numbered, a link in the outline chain below
            in_references = pos == refs_at or (in_references and "appendix" not in line.lower())
        if pos < body_start or (in_references and _REFERENCE_LIKE.search(line)):
            continue  # page-1 affiliations ("1 Allen ...") and entries "1. J. Doe, ..." are not
        if (m := _NUMBERED.match(line)) and _plausible_heading_text(m["text"]):
            arabic.append((pos, tuple(int(n) for n in m["num"].split("."))))
        elif (m := _ROMAN.match(line)) and _plausible_heading_text(m["text"]):
            roman.append((pos, (_roman(m["num"]),)))
    chosen = set(known)
    for chain in (_longest_outline(arabic), _longest_outline(roman)):
        # A short chain of numbered lines none of which is a known heading is more likely a
        # numbered list in the text ("1. We propose ...") than the paper's outline.
        if len(chain) >= 4 or any(pos in chosen for pos in chain):
            chosen.update(chain)
    out: list[str] = []
    seen: set[str] = set()
    for pos in sorted(chosen):
        text = " ".join(lines[pos].split())
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return out[:MAX_HEADINGS]


def _join_lines(lines: list[str], limit: int = 10**6) -> str:
    """Join wrapped lines into one paragraph (up to ~limit chars), undoing hyphenation."""
    parts: list[str] = []
    size = 0
    for line in lines:
        if parts and parts[-1].endswith("-") and line[:1].islower():
            parts[-1] = parts[-1][:-1]
        elif parts:
            parts.append(" ")
        parts.append(line)
        size += len(line) + 1
        if size > limit:
            break
    return "".join(parts)


def _abstract(lines: list[str]) -> tuple[str, int]:
    """The abstract text and the index of the line after it (0 when there is none)."""
    for i, line in enumerate(lines[:400]):
        first = _abstract_start(line)
        if first is None:
            continue
        body = [first] if first else []
        j = i + 1
        while j < len(lines) and sum(len(b) for b in body) < MAX_ABSTRACT_CHARS:
            nxt = lines[j]
            if (
                _ABSTRACT_END.match(nxt)
                or _is_known_heading(nxt)
                or (_NUMBERED.match(nxt) and _plausible_heading_text(nxt.split(None, 1)[-1]))
            ):
                break
            body.append(nxt)
            j += 1
        return _join_lines(body, MAX_ABSTRACT_CHARS)[:MAX_ABSTRACT_CHARS].strip(), j
    return "", 0


# ---------------------------------------------------------------------------- references

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
        if i and _APPENDIX_HEADING.match(line) and not _YEAR.search(line):
            break
        prev = entries[-1][-1].rstrip() if entries else ""
        # An entry whose first year ends it ("Doe J, Roe R. 1997.") still lacks its title.
        so_far = " ".join(entries[-1][:4]).rstrip(" .") if entries else ""
        year = _YEAR.search(so_far)
        starts = not entries or (
            prev.endswith((".", ")", "]"))
            and not (year and year.end() == len(so_far))
            and _AUTHOR_START.match(line) is not None
            and _NOT_AUTHOR.match(line) is None
            and any(_YEAR.search(ln) for ln in lines[i : i + 3])
        )
        if starts:
            entries.append([line])
        else:
            entries[-1].append(line)
    return entries


def _references_heading(lines: list[str]) -> int | None:
    """Index of the last "References"-like heading: earlier ones may be a TOC or a subsection."""
    found = None
    for i, line in enumerate(lines):
        if len(line) <= 40 and line[:1].isupper() and _heading_key(line) in _REFERENCE_KEYS:
            found = i
    return found


def _section_entries(section: list[str]) -> list[list[str]]:
    head = section[:10]
    if any(_BRACKET.match(ln) for ln in head):
        entries = _numbered_entries(section, _BRACKET)
    elif any((m := _DOTTED.match(ln)) and m.group(1) == "1" for ln in head):
        entries = _numbered_entries(section, _DOTTED)
    else:
        entries = _author_year_entries(section)
    return [e for e in entries if any(_WORD.search(line) for line in e)]


def _references(lines: list[str]) -> dict[str, object]:
    entries: list[list[str]] = []
    heading = _references_heading(lines)
    if heading is not None:
        entries = _section_entries(lines[heading + 1 :])
    if len(entries) < 2:
        # No usable heading (APS style has none): take the last "[1]" that a "[2]" follows.
        firsts = [i for i, ln in enumerate(lines) if ln.startswith("[1]")]
        for i in reversed(firsts):
            if any(ln.startswith("[2]") for ln in lines[i + 1 : i + 40]):
                entries = _numbered_entries(lines[i:], _BRACKET)
                break
    first = [_join_lines(e, MAX_REFERENCE_CHARS)[:MAX_REFERENCE_CHARS] for e in entries[:5]]
    return {"count": len(entries), "first": first}


# ------------------------------------------------------------------------------- analyze


def _body_lines(pages: list[str]) -> list[str]:
    """All non-blank lines, without running headers/footers and bare page numbers.

    A line near the top or bottom of a page whose text (digits aside) recurs there on several
    pages is a running header ("18 A. FERRAGUTI AND G. MICHELI"): dropped, because it would
    otherwise read as a numbered heading or split a reference in two.
    """
    per_page = [[ln.strip() for ln in page.splitlines() if ln.strip()] for page in pages]

    def key(line: str) -> str:
        return re.sub(r"\d+", "#", line.lower())

    seen: dict[str, int] = {}
    for lines in per_page:
        for k in {key(ln) for ln in lines[:3] + lines[-3:]}:
            seen[k] = seen.get(k, 0) + 1
    repeated = {k for k, n in seen.items() if n >= max(3, len(pages) // 4)}
    out: list[str] = []
    for lines in per_page:
        for i, line in enumerate(lines):
            edge = i < 3 or i >= len(lines) - 3
            if edge and (key(line) in repeated or re.fullmatch(r"\d{1,4}", line)):
                continue
            out.append(line)
    return out


def analyze(pages: list[str], metadata: dict[str, str]) -> dict[str, object]:
    """Summarise one paper's text as a JSON-able record of its key outcomes."""
    pages = [unicodedata.normalize("NFKC", p or "") for p in pages]
    page1 = pages[0] if pages else ""
    lines = _body_lines(pages)
    abstract, body_start = _abstract(lines)
    stamp = find_arxiv_stamp(page1)
    if stamp is None:
        # Some arXiv-regenerated PDFs carry the stamp as their metadata title as well.
        stamp = find_arxiv_stamp(str(metadata.get("/Title") or metadata.get("title") or ""))
    return {
        "title": _meta_title(metadata, page1) or _text_title(page1),
        "abstract": abstract,
        "headings": _headings(lines, body_start),
        "page_count": len(pages),
        "word_count": sum(len(p.split()) for p in pages),
        "references": _references(lines),
        "arxiv_stamp": stamp,
    }

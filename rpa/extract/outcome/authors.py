"""Authors guessed from page 1: the names in the title block, in order, without their marks.

This is a guess from plain text (the record's `sources` says so): names are told from
affiliations by their shape alone. Tried in order:

1. ACM's "ACM Reference Format:" line, which lists every author in order, whatever the grid
   of author blocks above it looks like;
2. the lines between the title and the abstract: each is split into names at commas, "and",
   and the affiliation/footnote marks glued to names ("Kyle Lo†∗ Lucy Lu Wang†",
   "Theurer2,3,CharlesMunthali3", "Shenα,τ"); a line counts only if every piece is a name
   (two to five capitalised words or initials), so affiliation and address lines drop out;
   a row of names in columns with no separator is split by the e-mail row under it;
3. the PDF's /Author metadata, when each name's surname is on page 1.

An empty list means no confident guess.
"""

from __future__ import annotations

import functools
import operator
import re
import unicodedata
from itertools import compress, count

from .headings import NUMBERED, is_known_heading
from .text import AFFILIATION, abstract_start, words

MAX_AUTHORS = 200

_STOP = words(
    "the this a an of for in on at with to via is are we our by from abstract keywords "
    "introduction dated received accepted draft version article open access correspondence "
    "email e-mail editor editors chief journal proceedings collaboration contents summary "
    "published revised submitted online available"
)
_PARTICLES = words("van von de der den la le di da del dos du bin al ter ten")
_MEMBERSHIP = re.compile(
    r"^(?:(?:Student|Senior|Life|Graduate)\s+)?(?:Member|Fellow)(?:\s+IEEE)?$|^IEEE$|^ACM$"
)
#: the words _MEMBERSHIP can start with
_MEMBERSHIP_FIRST = words("Student Senior Life Graduate Member Fellow IEEE ACM")
_INITIALS = re.compile(r"^(?:[A-Z]\.)+(?:-[A-Z]\.)?$|^[A-Z]{1,2}$")
_MARK_CHARS = set("∗*†‡§¶⋆♠♢♡♣☯□⋄#$+%&@!?()[]{}|^~\ufffd,")
_SPACING_ACCENTS = {"´": "\u0301", "`": "\u0300", "¨": "\u0308", "ˆ": "\u0302", "˜": "\u0303"}
_SPACING = {v: k for k, v in _SPACING_ACCENTS.items()}
_NFKC_ACCENT = re.compile(r" ?([\u0300\u0301\u0302\u0303\u0308])")
_ACCENT_BEFORE = re.compile(r"([´`¨ˆ˜])([A-Za-zı])")
_ACCENT_AFTER = re.compile(r"([A-Za-z])([´`¨ˆ˜])")
_ANY_ACCENT = re.compile(r"[\u0300\u0301\u0302\u0303\u0308´`¨ˆ˜]")
_EMAIL = re.compile(r"[\w.+-]+(?=@)")
_STOP_LINE = re.compile(
    r"^(?:key\s?words|index terms|ccs concepts|\(dated|categories and subject|general terms)",
    re.IGNORECASE,
)
_NAME_PARTS = re.compile(r"[-’']")
_CAMEL = re.compile(r"[A-Z][^A-Z]*")
_BRACKETED = re.compile(r"\([^)]*\)|\{[^}]*\}")
_AND = re.compile(r"(?:^|\s+)(?:and|AND|&)\s+")
_NOT_A_Z = re.compile(r"[^a-z]")
_ACM_YEAR = re.compile(r"\.\s+(?:19|20)\d\d\.")
_ACM_SPLIT = re.compile(r",\s*(?:and\s+)?|\s+and\s+")
_META_NOISE = re.compile(r"\([^)]*\)|\{[^}]*\}|\bet al\.?")
_META_SPLIT = re.compile(r";|,|\s+and\s+")
_NOT_LETTER = re.compile(r"[\W\d_]")
_COMMA_OR_AT = re.compile(r"[,@]")
_LETTER_MARK = re.compile(r"^([a-z])(?:[A-Z]|$)")
_LIST_GOES_ON = re.compile(r"^(?:[,;)]|and\s|&)")
_SURNAME_MARKS = re.compile(r"[A-Z][\w’'-]+\d*(?:[,∗*†‡]|$)")


def _accents(text: str) -> str:
    """TeX accents as extraction leaves them: a spacing accent before the letter (pypdf's
    "Gy¨ongyi") or after it (PDFium's "Andre´"); NFKC makes each a space and a combining
    mark ("Andr ́e"). All become the accented letter."""
    if not _ANY_ACCENT.search(text):
        return text  # (most lines)

    def combine(letter: str, accent: str) -> str:
        letter = "i" if letter == "ı" else letter
        return unicodedata.normalize("NFC", letter + _SPACING_ACCENTS[accent])

    text = _NFKC_ACCENT.sub(lambda m: _SPACING[m[1]], text)
    text = _ACCENT_BEFORE.sub(lambda m: combine(m[2], m[1]), text)
    return _ACCENT_AFTER.sub(lambda m: combine(m[1], m[2]), text)


def _is_mark(c: str) -> bool:
    return c.isdigit() or c in _MARK_CHARS or "\u0370" <= c <= "\u03ff"


class _Marks(dict[str, bool]):
    """_is_mark of each character, computed once (looked up at C speed with map)."""

    def __missing__(self, c: str) -> bool:
        ok = _is_mark(c)
        if len(self) < 100_000:
            self[c] = ok
        return ok


_MARK = _Marks()


class _MarksOrSpaces(dict[str, bool]):
    """_is_mark or whitespace, of each character, computed once."""

    def __missing__(self, c: str) -> bool:
        ok = _is_mark(c) or c.isspace()
        if len(self) < 100_000:
            self[c] = ok
        return ok


_MARK_OR_SPACE = _MarksOrSpaces()
_ACM_START = operator.methodcaller("startswith", "ACM Reference Format")
_FIRST = operator.itemgetter(0)
_ASCII_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_LETTERS = _ASCII_UPPER | frozenset("abcdefghijklmnopqrstuvwxyz")
#: what _split_word strips before a name, and (with the digits that are not ASCII) after it
_LEADING_MARKS = "".join(sorted(_MARK_CHARS)) + "0123456789"
_TRAILING_MARKS = _LEADING_MARKS + "".join(map(chr, range(0x370, 0x400)))


def _split_word(word: str) -> tuple[str, bool]:
    """A word's name part, and whether marks followed it (they end a name)."""
    if all(map(_MARK.__getitem__, word)):
        return "", True
    word = word.lstrip(_LEADING_MARKS)
    while word and "\u0370" <= word[0] <= "\u03ff" and len(word) > 1 and word[1].isupper():
        word = word[1:]  # "αAllen Institute": a Greek affiliation mark
    if len(word) == 2 and word[1] == ")" and "a" <= word[0] <= "z":
        return "", True  # "Kamiya1,a)": a footnote letter
    end = len(word.rstrip(_TRAILING_MARKS))
    while end and _MARK[word[end - 1]]:  # (the digits that are not ASCII)
        end -= 1
    return word[:end], end < len(word)


def _name_word(word: str) -> bool:
    low = word.lower()
    if low in _PARTICLES or (word[:1] in _ASCII_UPPER and _INITIALS.match(word)):
        return True
    if len(word) < 2 or low.rstrip(".") in AFFILIATION or low in _STOP:
        return False
    if word.endswith(".") and len(word) > 3:
        return False
    if "-" in word or "’" in word or "'" in word:
        parts = _NAME_PARTS.split(word)
        return all(p[:1].isupper() and p.replace(".", "").isalpha() for p in parts if p)
    return word[:1].isupper() and word.replace(".", "").isalpha()


def _valid(name: list[str]) -> bool:
    if not 2 <= len(name) <= 5 or not all(map(_name_word, name)):
        return False
    if name[0].lower() in _PARTICLES:
        return False
    return any(not _INITIALS.match(w) and w.lower() not in _PARTICLES for w in name)  # a surname


def _camel(word: str) -> list[str]:
    """Split a name pypdf glued ("CharlesMunthali" -> Charles, Munthali); "McGee" stays."""
    parts = _CAMEL.findall(word)
    if len(parts) >= 2 and all(len(p) >= 3 for p in parts) and "".join(parts) == word:
        return parts
    return [word]


def _chunks(line: str, letters: set[str]) -> list[list[str]]:
    """The line split into would-be names (lists of words), at commas, "and" and marks;
    `letters` are the affiliation letters of this block ("a" of "aInstitute ...")."""
    line = _accents(line)
    if "(" in line or "{" in line:
        line = _BRACKETED.sub(" ", line)
    if "and" in line or "AND" in line or "&" in line:
        line = _AND.sub(" , ", line)
    out: list[list[str]] = []
    for piece in line.split(","):
        cur: list[str] = []
        for raw in piece.split():
            if raw in letters:
                word, marked = "", True
            elif raw[0] in _ASCII_LETTERS and raw[-1] in _ASCII_LETTERS:
                cur.append(raw)  # (most words: no mark to strip, no dot to drop)
                continue
            else:
                word, marked = _split_word(raw)
            if word:
                cur.append(word.rstrip(".") if len(word) > 3 and word[-2:-1].islower() else word)
            if marked and cur:
                out.append(cur)
                cur = []
        if cur:
            out.append(cur)
    out = [c for c in out if c[0] not in _MEMBERSHIP_FIRST or not _MEMBERSHIP.match(" ".join(c))]
    out = [_camel(c[0]) if len(c) == 1 else c for c in out]
    glued = [c for c in out if c[-1][-1:] in letters and len(c[-1]) > 3]
    if letters and len(glued) >= max(1, 0.6 * len(out)):
        # "Roisina, Delhayea" over "aInstitute ...": the a is a mark, glued to the name
        out = [[*c[:-1], c[-1][:-1]] if c in glued else c for c in out]
    return out


def _names(line: str, letters: set[str]) -> tuple[list[str], bool] | None:
    """The names on an author line, and whether it was a "NAME, Affiliation" line; None if it
    is not an author line."""
    chunks = _chunks(line, letters)
    if not chunks:
        return None
    if all(_valid(c) for c in chunks):
        return [" ".join(c) for c in chunks], False
    rest = {w.lower() for c in chunks[1:] for w in c}
    if _valid(chunks[0]) and rest & AFFILIATION and "," in line:
        return [" ".join(chunks[0])], True  # "TAL AUGUST, University of Washington, USA"
    return None


@functools.lru_cache(maxsize=2048)
def author_line(line: str) -> bool:
    """Does this line list two or more authors ("A. Smith, B. Jones and C. Li")?"""
    names = _names(line, set())
    return names is not None and not names[1] and len(names[0]) >= 2


def _by_emails(line: str, emails: list[str]) -> list[str] | None:
    """Names set in columns ("Zoltán Gyöngyi Hector Garcia-Molina Jan Pedersen") split where
    each column's e-mail name ("zoltan@", "jpederse@") starts."""
    ws = [_split_word(w)[0] for w in _accents(line).split()]
    if not 2 * len(emails) <= len(ws) <= 5 * len(emails) or not all(_name_word(w) for w in ws):
        return None

    def key(w: str) -> str:
        return _NOT_A_Z.sub("", unicodedata.normalize("NFKD", w).lower())

    cuts: list[int] = []
    for local in (_NOT_A_Z.sub("", e.lower()) for e in emails):
        at = next(
            (
                i
                for i in range(cuts[-1] + 2 if cuts else 0, len(ws) - 1)
                if local.startswith(key(ws[i])[:4])
                or (local[:1] == key(ws[i])[:1] and key(ws[i + 1])[:4] in local)
            ),
            None,
        )
        if at is None:
            return None
        cuts.append(at)
    if cuts[0] != 0:
        return None
    groups = [ws[a:b] for a, b in zip(cuts, [*cuts[1:], len(ws)], strict=True)]
    return [" ".join(g) for g in groups] if all(_valid(g) for g in groups) else None


def _acm_reference(lines: list[str]) -> list[str]:
    """The authors listed by "ACM Reference Format:", up to its ". 2023." year."""
    at = next(compress(count(), map(_ACM_START, lines)), None)
    if at is None:
        return []
    text = " ".join(lines[at + 1 : at + 8])
    m = _ACM_YEAR.search(text)
    if m is None:
        return []
    names = [n.strip() for n in _ACM_SPLIT.split(text[: m.start()])]
    if names and all(_valid(n.split()) for n in names):
        return names
    return []


def _metadata_authors(metadata: dict[str, str], page1: str) -> list[str]:
    """/Author split into names, each of whose surnames page 1 prints."""
    raw = _META_NOISE.sub(" ", str(metadata.get("/Author") or ""))
    names = [" ".join(n.split()) for n in _META_SPLIT.split(raw)]
    names = [n for n in names if n]

    def key(text: str) -> str:
        return _NOT_LETTER.sub("", unicodedata.normalize("NFKD", text).lower())

    page = key(page1)
    ok = all(_valid(n.split()) and key(n.split()[-1]) in page for n in names)
    return names if names and ok else []


def _region_end(lines: list[str], start: int) -> int:
    for i in range(start, min(len(lines), start + 30)):
        line = lines[i]
        if abstract_start(line) is not None or _STOP_LINE.match(line) or is_known_heading(line):
            return i
        if NUMBERED.match(line) and len(line) < 60 and not _COMMA_OR_AT.search(line):
            return i  # "1 Introduction" (affiliations "1 Allen Institute for AI" have no ",")
        ws = line.split()
        if len(ws) >= 10 and sum(map(str.islower, map(_FIRST, ws))) >= 0.5 * len(ws):
            return i  # running text: the abstract without a heading
    return min(len(lines), start + 30)


def authors(lines: list[str], title_end: int, metadata: dict[str, str]) -> list[str]:
    """The authors on page-1 `lines`, whose title ends before line `title_end`."""
    found = _acm_reference(lines)
    if not found and title_end:
        end = _region_end(lines, title_end)
        region = lines[title_end:end]
        letters = {m[1] for ln in region if (m := _LETTER_MARK.match(ln))}
        joined: list[str] = []
        for line in region:
            prev = joined[-1] if joined else ""
            if prev and (
                prev.endswith((",", " and", "&"))
                or _LIST_GOES_ON.match(line)
                or all(map(_MARK_OR_SPACE.__getitem__, line))
                or line in letters
                or ("," in prev and _SURNAME_MARKS.match(line))
            ):
                joined[-1] = f"{prev} {line}"  # a list wrapped, or marks set on lines of
            else:  # their own (PDFium: "Andrew E. Webb1" / ", Thomas A. Walsh1" / "and ...")
                joined.append(line)
        per_line: list[tuple[list[str], bool]] = []
        for i, line in enumerate(joined):
            names = _names(line, letters)
            if names is None:
                emails = [
                    e for ln in joined[i + 1 : i + 6] if "@" in ln for e in _EMAIL.findall(ln)
                ]
                split = _by_emails(line, emails[:8]) if len(emails) >= 2 else None
                names = (split, False) if split else None
            if names is not None:
                per_line.append(names)
        # One "Name, University ..." line alone is more likely an affiliation that looks
        # like a name ("Integrated Metabolomics, University of ...") than a layout.
        layout = sum(1 for _, affiliated in per_line if affiliated) >= 2
        found = [n for names, affiliated in per_line if layout or not affiliated for n in names]
    return found[:MAX_AUTHORS] or _metadata_authors(metadata, "\n".join(lines))

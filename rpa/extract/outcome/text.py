"""Shared line-level helpers: words, markers, page lines, line numbers, footnote marks.

Everything in the outcome package works on plain extracted text (pypdf's or PDFium's), which
has no fonts or positions: these helpers undo the few artefacts that would otherwise mislead
every heuristic (running headers, margin line numbers, footnote marks glued to words).
"""

from __future__ import annotations

import operator
import re
import unicodedata

MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
#: footnote and affiliation markers that typesetters put after names, titles and sentences
MARKERS = "∗*†‡§¶⋆♠♢♡♣☯□⋄"
WORD = re.compile(r"[^\W\d_]{2,}")


def _foldable() -> dict[str, str]:
    """Each presentation form and ligature letter -> its NFKC form: the Latin digraph letters
    (Ĳ ĳ Ŀ ŀ ŉ Ǆ-ǌ Ǳ-ǳ) and the presentation-form blocks (Latin and Armenian ligatures such as
    ﬁ ﬂ ﬀ ﬃ ﬄ ﬅ, Hebrew and Arabic presentation forms: U+FB00-U+FDFF, U+FE70-U+FEFF)."""
    ranges = [(0x132, 0x133), (0x13F, 0x140), (0x149, 0x149), (0x1C4, 0x1CC), (0x1F1, 0x1F3)]
    ranges += [(0xFB00, 0xFDFF), (0xFE70, 0xFEFF)]
    table = {}
    for low, high in ranges:
        for char in map(chr, range(low, high + 1)):
            if (folded := unicodedata.normalize("NFKC", char)) != char:
                table[char] = folded
    return table


_FOLD = _foldable()
#: control characters (C0 but tab and newline, DEL, C1), and the folded blocks as ranges (a
#: class of 805 single characters is ~3x slower to scan)
_ODD = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
    "\u0132\u0133\u013f\u0140\u0149\u01c4-\u01cc\u01f1-\u01f3\ufb00-\ufdff\ufe70-\ufeff]"
)


def _replace(match: re.Match[str]) -> str:
    char = match[0]
    return "\ufffd" if char <= "\x9f" else _FOLD.get(char, char)


def clean_characters(text: str) -> str:
    """`text` as rpa writes it: control characters as U+FFFD, ligatures and presentation
    forms as the letters they stand for ("ﬁ" -> "fi", so that `grep first` finds "ﬁrst").

    Both extractors give control characters for glyphs without a Unicode mapping (math fonts:
    0x10-0x13 are TeX's big parentheses); in a text file they are noise at best, and an ESC
    (seen in the corpus) drives a terminal. The forms are folded by NFKC, but only those:
    NFKC of the whole text would also turn x² into x2, 𝔤 and ℝ into g and R, ½ into 1⁄2,
    losing what the math says. One regex pass for both (~9x faster than str.translate with
    a mapping, which visits every character).
    """
    return _ODD.sub(_replace, text)


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


CONNECTORS = words(
    "a an and as at between by for from in into of on or over the through to towards under "
    "using via with without is are do does that which we"
)


_ABSTRACT = re.compile(
    r"^(?:abstract|a\s?b\s?s\s?t\s?r\s?a\s?c\s?t|summary)\d{0,3}(?:\s*$|\s*[.:—–-]\s*(.*)$)",
    re.IGNORECASE,
)
#: what _ABSTRACT can start with, ignoring case ("ſ" is an "s" to it)
_ABSTRACT_FIRST = frozenset("AaSsſ")
AFFILIATION = words(
    "university universidad universität universite université univ institute institut "
    "department dept college school faculty division laboratory laboratories lab labs center "
    "centre inc inc. corporation corp company group foundation foundations research sciences "
    "science technology technologies engineering hospital academy consortium ltd gmbh "
    "publishing association society program programme unit office council ministry agency "
    "observatory museum conservatory clinic polytechnic library archives press llc plc "
    "medical health healthcare hospitals systems labs solutions "
    "street avenue road lane drive boulevard box suite campus building "
    "usa u.s.a. uk china india germany france japan canada italy ireland iceland australia "
    "switzerland netherlands israel korea spain belgium poland brazil pakistan russia sweden "
    "denmark norway finland austria portugal greece singapore taiwan mexico"
)


def abstract_start(line: str) -> str | None:
    """The text after an "Abstract" heading on this line ("" if none), or None."""
    if line[:1] not in _ABSTRACT_FIRST:
        return None  # (most lines: no regex)
    match = _ABSTRACT.match(line)
    return None if match is None else (match.group(1) or "")


def alpha_words(line: str) -> list[str]:
    return WORD.findall(line)


def join_lines(lines: list[str], limit: int = 10**6) -> str:
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


_LEADING_NUMBER = re.compile(r"^(\d{1,4})(?=\s|$)")
_FIRST = operator.itemgetter(0)
_LAST = operator.itemgetter(-1)
_DIGITS = re.compile(r"\d+")


#: bytes -> b" " for ASCII whitespace (str.isspace), b"x" for any other byte (UTF-8 of the rest)
_SPACES = bytes(0x20 if chr(b).isspace() else 0x78 for b in range(128)) + b"x" * 128


def word_count(text: str) -> int:
    """len(text.split()) for an NFKC-normalised text, without making a string a word: the
    words are counted where a space is followed by a non-space, in the UTF-8 bytes. The
    whitespace NFKC keeps outside ASCII (U+0085, U+1680, U+2028, U+2029) takes the slow way."""
    if "\u2028" in text or "\u2029" in text or "\x85" in text or "\u1680" in text:
        return len(text.split())
    marks = text.encode("utf-8", "surrogatepass").translate(_SPACES)
    return marks.count(b" x") + marks.startswith(b"x")


def nfkc(text: str) -> str:
    """unicodedata.normalize("NFKC", text), normalising only the lines that need it: a page
    with one "²" or "𝑥" would otherwise be normalised whole, at ~20 ns a character. (A line
    break never composes with its neighbours, so line by line gives the same text.)"""
    if unicodedata.is_normalized("NFKC", text):
        return text
    return "\n".join(
        [
            line if unicodedata.is_normalized("NFKC", line) else unicodedata.normalize("NFKC", line)
            for line in text.split("\n")
        ]
    )


def nonblank_lines(text: str) -> list[str]:
    """The text's lines, stripped, without the blank ones."""
    return list(filter(None, map(str.strip, text.splitlines())))


def _candidates(line: str) -> list[tuple[int, int, int]]:
    """(value, start, end) of the numbers a margin line number could be in this line: the
    leading integer, and every suffix (1-4 digits) of the trailing digits, since pypdf glues
    the number to the text ("DC 2000511" is "DC 20005" on line 11)."""
    out = []
    if m := _LEADING_NUMBER.match(line):
        out.append((int(m.group(1)), 0, m.end()))
    end = len(line)
    while end and line[end - 1].isdecimal():  # what r"\d+$" finds, without its O(n) search
        end -= 1
    if end < len(line):
        run = line[end:]
        for k in range(1, min(4, len(run)) + 1):
            out.append((int(run[-k:]), len(line) - k, len(line)))
    return out


def _longest_run(values: set[int]) -> int:
    """The most consecutive integers among `values`."""
    best = 0
    for v in values:
        if v - 1 not in values:
            end = v + 1
            while end in values:
                end += 1
            best = max(best, end - v)
    return best


def strip_line_numbers(lines: list[str], min_run: int = 0) -> list[str]:
    """Remove a draft's margin line numbers (LaTeX `lineno`, review copies).

    pypdf glues them to the end of the line ("...abstract has 182 words.23"), PDFium puts them
    at its start ("13 This example ..."). They are told from numbers in the text by running
    on: a chain of lines, each carrying the previous one's number + 1 (a line or two may lack
    one), over much of a page of running text (a third of its lines long at least); or over
    `min_run` lines, once the paper is known to be line-numbered (a page of figures has only
    a few numbered lines).
    """
    if not (min_run or 12) <= len(lines) <= 5000:
        return lines  # (no page has 5,000 lines: a pathological text is left as it is)
    need = min_run or max(10, 0.4 * len(lines))
    # lines that start or end with a digit (at C speed): at least those that have a candidate
    edges = sum(map(str.isdecimal, map(_FIRST, lines))) + sum(map(str.isdecimal, map(_LAST, lines)))
    if edges < need:
        return lines  # fewer numbered lines than the shortest run that counts: no chain
    cands = [_candidates(line) for line in lines]
    if (
        sum(1 for c in cands if c) < need
        or _longest_run({v for c in cands for v, _, _ in c}) < need
    ):
        return lines  # a chain needs that many numbered lines, numbered n, n + 1, n + 2 ...
    # chain[i][k]: length of the run that starts with candidate k of line i, and its next link
    chain: list[list[tuple[int, tuple[int, int] | None]]] = [[] for _ in lines]
    for i in range(len(lines) - 1, -1, -1):
        for value, _, _ in cands[i]:
            best: tuple[int, tuple[int, int] | None] = (1, None)
            for j in range(i + 1, min(i + 4, len(lines))):
                for k, (other, _, _) in enumerate(cands[j]):
                    if other == value + 1 and chain[j][k][0] + 1 > best[0]:
                        best = (chain[j][k][0] + 1, (j, k))
                if best[1] is not None:
                    break
            chain[i].append(best)
    # the longest chain; on a tie the earliest, then the widest number ("129" over its "29");
    # then any other run of 3 or more on the page (figures and tables break the numbering)
    starts = sorted(
        (
            (chain[i][k][0], -i, cands[i][k][2] - cands[i][k][1], k)
            for i in range(len(lines))
            for k in range(len(cands[i]))
        ),
        reverse=True,
    )
    if not starts or starts[0][0] < need:
        return lines
    cut: dict[int, tuple[int, int]] = {}
    for length, neg_i, _, k in starts:
        if length < 3:
            break
        if -neg_i in cut:
            continue
        link: tuple[int, int] | None = (-neg_i, k)
        while link is not None and link[0] not in cut:
            i, k = link
            cut[i] = cands[i][k][1:]
            link = chain[i][k][1]
    if not min_run and sum(len(lines[i]) >= 40 for i in cut) < len(cut) / 3:
        return lines  # short lines numbered in a row are a list or a table, not a draft's
    out = []
    for i, line in enumerate(lines):
        if i in cut:
            a, b = cut[i]
            line = (line[:a] + " " + line[b:]).strip()
        if line:
            out.append(line)
    return out


def page_lines(pages: list[str]) -> tuple[list[str], list[int]]:
    """All non-blank lines, without running headers/footers, bare page numbers and margin
    line numbers; and the index of each page's first line in that list.

    A line near the top or bottom of a page whose text (digits aside) recurs there on several
    pages is a running header ("18 A. FERRAGUTI AND G. MICHELI"): dropped, because it would
    otherwise read as a numbered heading or split a reference in two.
    """
    raw = [nonblank_lines(page) for page in pages]
    per_page = [strip_line_numbers(lines) for lines in raw]
    if per_page != raw:  # a line-numbered draft: its pages of figures have short runs
        per_page = [strip_line_numbers(lines, min_run=3) for lines in raw]

    # Each edge line's key (lower case, digit runs as "#"), all made in one pass: joined
    edges = [lines[:3] + lines[-3:] for lines in per_page]
    unique = list({ln: None for edge in edges for ln in edge})
    folded = _DIGITS.sub("#", "\n".join(unique).lower()).split("\n") if unique else []
    key = dict(zip(unique, folded, strict=True))
    seen: dict[str, int] = {}
    for edge in edges:
        for k in {key[ln] for ln in edge}:
            seen[k] = seen.get(k, 0) + 1
    repeated = {k for k, n in seen.items() if n >= max(3, len(pages) // 4)}

    def kept(edge: list[str]) -> list[str]:
        # (a bare page number: what re.fullmatch(r"\d{1,4}", line) finds)
        return [ln for ln in edge if not (key[ln] in repeated or (len(ln) <= 4 and ln.isdecimal()))]

    out: list[str] = []
    starts: list[int] = []
    for lines in per_page:
        starts.append(len(out))
        if len(lines) <= 6:  # every line is near an edge
            out += kept(lines)
        else:  # only the first and last three lines can be headers: the rest goes as it is
            out += kept(lines[:3])
            out += lines[3:-3]
            out += kept(lines[-3:])
    return out, starts


# Footnote marks: a digit right after a clause's punctuation ("S2ORC,1 a corpus"), marker
# symbols glued to a word ("Transformers∗"), and either kind at the very end ("research.1").
_MARK_AFTER_PUNCT = re.compile(r"(?<=[^\W\d_]{2}[,.;:])\d{1,2}(?=\s)")
_GLUED_SYMBOL = re.compile(r"(?<=\w)[∗†‡§¶⋆]+")
_END_MARK = re.compile(r"(?<=[.!?)\]”’\"])\s*(?:\d{1,2}|[∗*†‡§¶⋆]+)$")


def strip_footnote_marks(text: str) -> str:
    """The text without the footnote marks typesetting left in it (superscripts come out of
    extraction as plain digits and symbols)."""
    text = _MARK_AFTER_PUNCT.sub("", text)
    text = _GLUED_SYMBOL.sub("", text)
    return _END_MARK.sub("", text).strip()

"""A paper's pages as lines: split and normalised once, running headers and margin numbers
dropped, and the words counted, with as few Python steps a line as can be.

These are the analysis's only passes over the whole text (~50,000 characters, ~900 lines a
paper): every other step reads the lines they give, or only page 1's, or only the lines the
first characters single out (rpa.extract.outcome.outline). So each pass here is a C call a
page or a line, never a Python step a character, and what one pass finds (each line's first
character) serves the next ones as well.
"""

from __future__ import annotations

import operator
import re
import unicodedata
from collections import Counter
from itertools import accumulate, chain, compress, filterfalse, pairwise, repeat
from typing import Literal

from .lineno import PageNumbers

__all__ = ["page_lines", "split_pages", "word_count"]

_NFKC: Literal["NFKC"] = "NFKC"
_FIRST = operator.itemgetter(0)
_LAST = operator.itemgetter(-1)


def page_lines(pages: list[str]) -> tuple[list[list[str]], list[str]]:
    """Each page's non-blank lines, stripped, of nfkc(page), with one split: NFKC-normalised
    (each line of a page that needs it: no line break composes with its neighbours),
    stripped after that (NFKC makes "´" a space and a mark). And each page's text,
    normalised, for word_count: the page as it is when normalised, else its normalised
    lines (every line break splitlines knows is whitespace: the same words).
    """
    out: list[list[str]] = []
    texts: list[str] = []
    for page in pages:
        lines = page.splitlines()
        if unicodedata.is_normalized("NFKC", page):
            texts.append(page)
        else:
            lines = list(map(unicodedata.normalize, repeat(_NFKC), lines))
            texts.append("\n".join(lines))
        out.append(list(filter(None, map(str.strip, lines))))
    return out, texts


#: Latin-1 bytes -> 0 for whitespace (str.isspace: ASCII's, U+0085, U+00A0), 1 for the rest
_NOT_SPACE = bytes(not chr(b).isspace() for b in range(256))
#: the whitespace NFKC keeps beyond Latin-1
_WIDE_SPACES = ("\u2028", "\u2029", "\u1680")


def word_count(texts: list[str]) -> int:
    """len("\\n".join(texts).split()) for NFKC-normalised texts, without making a string a
    word: a word starts at each non-space character whose previous one is a space, counted
    as bits of one integer (a byte a character, in Latin-1 with "?" for any other
    character: its lowest bit, 1 for a non-space). Each text is encoded on its own and the
    bytes joined (a page of Latin-1 is copied as it is; the joined text would be as wide as
    its widest page); the whitespace beyond Latin-1, where there is any, is made a line
    break first (a C call each)."""
    encoded = []
    for text in texts:
        for space in _WIDE_SPACES:
            if space in text:
                text = text.replace(space, "\n")
        encoded.append(text.encode("latin-1", "replace"))
    ones = int.from_bytes(b"\n".join(encoded).translate(_NOT_SPACE), "little")
    return (ones ^ (ones & (ones << 8))).bit_count()


#: ASCII bytes -> 1 for a digit, 0 for the rest
_DIGIT_BYTES = bytes(48 <= b <= 57 for b in range(256))
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _edge_digits(raw: list[list[str]], firsts: str, offsets: list[int]) -> list[int]:
    """edge_digits (rpa.extract.outcome.lineno) of each page: how many of its lines' first
    and last characters are digits, told from all the lines' first characters (`firsts`)
    and last ones (page i's lines from offsets[i] to offsets[i + 1]), joined: the ASCII digits
    counted at C speed, a page a call; the other scripts' digits (where the paper has any
    among these characters) one by one."""
    lasts = "".join(map(_LAST, chain.from_iterable(raw)))
    edge = firsts + lasts
    digits = edge.encode("ascii", "replace").translate(_DIGIT_BYTES)
    size = len(firsts)
    spans = list(pairwise(offsets))
    counts = [digits.count(1, a, b) + digits.count(1, size + a, size + b) for a, b in spans]
    if not edge.isascii() and any(map(str.isdecimal, _NON_ASCII.findall(edge))):
        # (a paper in a script with digits of its own: each page counted as edge_digits does)
        counts = [
            sum(map(str.isdecimal, firsts[a:b])) + sum(map(str.isdecimal, lasts[a:b]))
            for a, b in spans
        ]
    return counts


_DIGITS = re.compile(r"\d\d*")  # (\d+, but a pattern that starts with a set scans faster)
#: what _running_headers' first pass deletes from a key: the digits in ASCII, "#"
_DIGITS_AND_HASH = b"0123456789#"


def _repeated(keys: list[str] | list[bytes], pages: list[int], least: int) -> set[str | bytes]:
    """The keys found on at least `least` pages (once a page); `pages` are the pages of the
    lines whose keys these are."""
    seen = Counter(map(_FIRST, set(zip(keys, pages, strict=True))))
    return set(compress(seen.keys(), map(least.__le__, seen.values())))


def _running_headers(edges: list[list[str]], least: int) -> set[str]:
    """The edge lines whose text recurs, digits aside, on at least `least` pages: each line's
    key is its lower case with each digit run as "#" (one regex pass over them joined).

    That regex pass costs more than the rest (a digit run a match, and edges have many: page
    numbers, dates): it is made only for the lines whose coarser key, the key without its
    "#"s and characters outside ASCII (equal keys have equal coarse keys), recurs on enough
    pages. The coarse keys come from the edge lines joined, in ASCII bytes, at C speed (in
    lower case as bytes, unless "İ" or "K" (Kelvin), the only characters outside ASCII that
    lower case makes ASCII, are among them).
    """
    lines = list(chain.from_iterable(edges))
    if not lines:
        return set()
    pages = list(chain.from_iterable(map(repeat, range(len(edges)), map(len, edges))))
    joined = "\n".join(lines)  # (no line has a line break, nor gets one in lower case)
    if "İ" in joined or "\u212a" in joined:
        ascii_low = joined.lower().encode("ascii", "ignore")
    else:  # (no other character is ASCII in lower case: ASCII's lower case is enough)
        ascii_low = joined.encode("ascii", "ignore").lower()
    coarse_keys = ascii_low.translate(None, _DIGITS_AND_HASH).split(b"\n")
    repeated = _repeated(coarse_keys, pages, least)
    if not repeated:
        return set()
    at = [i for i, key in enumerate(coarse_keys) if key in repeated]
    some = [lines[i] for i in at]
    keys = _DIGITS.sub("#", "\n".join(some).lower()).split("\n")
    fine = _repeated(keys, [pages[i] for i in at], least)
    return set(compress(some, map(fine.__contains__, keys)))


def split_pages(raw: list[list[str]]) -> tuple[list[str], list[int], list[str], str]:
    """From each page's lines (`page_lines`): all the lines, without running headers and
    footers, bare page numbers and margin line numbers; the index of each page's first line
    in that list; page 1's lines (without margin line numbers, headers kept); and the first
    character of each line of the first list (for rpa.extract.outcome.outline).

    A line near the top or bottom of a page whose text (digits aside) recurs there on several
    pages is a running header ("18 A. FERRAGUTI AND G. MICHELI"): dropped, because it would
    otherwise read as a numbered heading or split a reference in two.
    """
    firsts = "".join(map(_FIRST, chain.from_iterable(raw)))
    offsets = list(accumulate(map(len, raw), initial=0))
    per_page = raw.copy()
    numbers: dict[int, PageNumbers] = {}  # the pages that may have margin numbers
    for i, digits in enumerate(_edge_digits(raw, firsts, offsets)):
        lines = raw[i]
        if 12 <= len(lines) <= 5000 and digits >= max(10, 0.4 * len(lines)):
            numbers[i] = PageNumbers(lines, digits)
            per_page[i] = numbers[i].cut()
    page1 = per_page[0] if per_page else []
    if any(per_page[i] is not raw[i] for i in numbers):
        # a line-numbered draft: its pages of figures have short runs
        per_page = [
            (numbers.get(i) or PageNumbers(lines)).cut(min_run=3) for i, lines in enumerate(raw)
        ]

    edges = [lines[:3] + lines[-3:] if len(lines) > 6 else lines for lines in per_page]
    dropped = _running_headers(edges, max(3, len(raw) // 4))
    # (a bare page number: what re.fullmatch(r"\d{1,4}", line) finds)
    unique = list(chain.from_iterable(edges))
    dropped.update(ln for ln in compress(unique, map(str.isdecimal, unique)) if len(ln) <= 4)
    out: list[str] = []
    starts: list[int] = []
    out_firsts: list[str] = []
    for i, lines in enumerate(per_page):
        starts.append(len(out))
        if lines is raw[i]:
            firsts_here = firsts[offsets[i] : offsets[i] + len(lines)]
        else:
            firsts_here = "".join(map(_FIRST, lines))
        if len(lines) <= 6:  # every line is near an edge
            kept = len(out)
            out += filterfalse(dropped.__contains__, lines)
            out_firsts.append("".join(map(_FIRST, out[kept:])))
        else:  # only the first and last three lines can be headers: the rest goes as it is
            head = list(filterfalse(dropped.__contains__, lines[:3]))
            tail = list(filterfalse(dropped.__contains__, lines[-3:]))
            out += head
            out += lines[3:-3]
            out += tail
            out_firsts += (*map(_FIRST, head), firsts_here[3:-3], *map(_FIRST, tail))
    return out, starts, page1, "".join(out_firsts)

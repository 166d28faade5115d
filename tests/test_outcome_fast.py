"""The outcome analysis's fast paths give what their plain definitions give.

Each fast path (issue 20: the analysis at ~1 ms a paper) replaces a plain definition (a regex
tried at every position, a split, a set of every word, a scan of every earlier candidate)
with fewer Python steps; the records must not change. Each test draws seeded random texts
from pieces that reach the edge cases (digits of other scripts, "İ" and "Σ" in lower case,
line breaks, marks, spaced stamps) and compares the fast path with the plain definition
written out here.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable

import pytest

from rpa.extract.outcome.abstract import END_FIRST
from rpa.extract.outcome.chains import _follows, longest_outline
from rpa.extract.outcome.front import _author_shaped, _on_page
from rpa.extract.outcome.headings import (
    NUMBERED,
    SECTION_NUMBER,
    _after_first_token,
    heading_key,
    is_known_heading,
    references_heading,
)
from rpa.extract.outcome.lineno import PageNumbers
from rpa.extract.outcome.outline import outline
from rpa.extract.outcome.pages import page_lines, word_count
from rpa.extract.outcome.references import _YEAR, MAX_REFERENCE_CHARS, _has_year, _items, _year_ends
from rpa.extract.outcome.stamp import _stamp_word
from rpa.extract.outcome.text import (
    MARKERS,
    WORD,
    join_lines,
    strip_footnote_marks,
)

ROUNDS = 20_000


def _texts(pieces: list[str], most: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(pieces, k=rng.randint(0, most))) for _ in range(ROUNDS)]


def _same(fast: Callable[[str], object], plain: Callable[[str], object], texts: list[str]) -> None:
    differ = [t for t in texts if fast(t) != plain(t)]
    assert not differ, differ[:3]


def test_word_count_is_split() -> None:
    pieces = [" ", "\t", "\n", "\r", "\x0b", "\x1c", "\x1f", "\x85", "\xa0", "ab", "é", "中"]
    pieces += ["😀", "\u2028", "\u2029", "\u1680", "\u2003", "\u3000"]
    texts = [unicodedata.normalize("NFKC", t) for t in _texts(pieces, 12, 1)]
    _same(lambda t: word_count([t]), lambda t: len(t.split()), texts)
    papers = [texts[k : k + 3] for k in range(0, len(texts), 3)]
    differ = [p for p in papers if word_count(p) != len("\n".join(p).split())]
    assert not differ, differ[:3]


def test_page_lines_are_the_normalised_pages_lines() -> None:
    """One split a page: its lines split, normalised (where the page needs it) and stripped
    are the normalised page's lines stripped; and the text it gives for word_count has the
    normalised pages' words."""
    pieces = [" ", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "ab"]
    pieces += ["´", "¨", "e\u0301", "\u0301", "\u0323\u0301", "²", "ﬁ", "\xa0", "\u3000", "…", "İ"]
    pieces += ["\u1100\u1161", "\uac00\u11a8", "ｱ", "\u2003", "\u1680", "\t", "9"]
    texts = _texts(pieces, 14, 7)
    papers = [texts[k : k + 3] for k in range(0, len(texts), 3)]

    def plain(pages: list[str]) -> tuple[list[list[str]], int]:
        normal = [unicodedata.normalize("NFKC", page) for page in pages]
        lines = [[ln.strip() for ln in page.splitlines() if ln.strip()] for page in normal]
        return lines, len("\n".join(normal).split())

    differ = []
    for pages in papers:
        lines, texts = page_lines(pages)
        if (lines, word_count(texts)) != plain(pages):
            differ.append(pages)
    assert not differ, differ[:3]


def _join_lines_plainly(lines: list[str], limit: int) -> str:
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


@pytest.mark.parametrize("limit", [5, 40, 10**6])
def test_join_lines(limit: int) -> None:
    pieces = ["ab-", "-", "cd", "Ef", "", "x- y", "long text " * 5]
    rng = random.Random(limit)
    for _ in range(ROUNDS):
        lines = rng.choices(pieces, k=rng.randint(0, 6))
        assert join_lines(lines, limit) == _join_lines_plainly(lines, limit), lines


def test_footnote_marks() -> None:
    after_punct = re.compile(r"(?<=[^\W\d_]{2}[,.;:])\d{1,2}(?=\s)")
    glued = re.compile(r"(?<=\w)[∗†‡§¶⋆]+")
    end = re.compile(r"(?<=[.!?)\]”’\"])\s*(?:\d{1,2}|[∗*†‡§¶⋆]+)$")

    def plain(text: str) -> str:
        return end.sub("", glued.sub("", after_punct.sub("", text))).strip()

    pieces = [*"ab,.;:12 \n∗†‡§¶⋆*)”", "١", "²", "  "]
    _same(strip_footnote_marks, plain, _texts(pieces, 10, 2))


def test_heading_key_and_first_token() -> None:
    def plain(line: str) -> str:
        return re.sub(r"[^a-z]", "", SECTION_NUMBER.sub("", line).lower())

    pieces = [*"IVXAHZk1. \n", "Introduction", "REFERENCES", "ß", "İ", "K", "١", "²", "  "]
    texts = _texts(pieces, 8, 3)
    _same(heading_key, plain, texts)
    _same(_after_first_token, lambda t: re.sub(r"^\S+\s+", "", t), texts)


def test_author_shape() -> None:
    plain = re.compile(
        r"[a-z\u00e0-\u024f]\d{1,2}(?:[,∗*†‡]|\s|$)"
        rf"|[{MARKERS}].*[{MARKERS}]"
        r"|^[A-Z][\w.'’-]*(?:\s+[A-Z][\w.'’-]*){0,3},?\s+(?:and|AND)\s+[A-Z][\w.'’-]*\s+[A-Z]"
        r"|,.*,"
    )
    pieces = ["Smith ", "J. ", "and ", "AND ", ", ", "a1", "é2 ", "∗", "†", "x", "\n", "1"]
    _same(_author_shaped, lambda t: plain.search(t) is not None, _texts(pieces, 8, 4))


def test_stamp_word() -> None:
    def plain(text: str) -> bool:
        squashed = "".join(text.split())
        return "arXiv" in squashed or "viXra" in squashed

    pieces = [*"arXivviX ra\n\t:", "\u2028", "\xa0", "X", "arXiv"]
    _same(_stamp_word, plain, _texts(pieces, 20, 5))


def test_title_words_on_page_one() -> None:
    pieces = ["ab", "Ab", "AB", "the", "İ", "i\u0307", "Σ", "σ", "ς", " ", ".", "2", "²", "K"]
    rng = random.Random(6)
    for page in _texts(pieces, 60, 7)[:5000]:
        words = [w.lower() for w in WORD.findall("".join(rng.choices(pieces, k=6)))]
        page_words = {w.lower() for w in WORD.findall(page)}
        assert _on_page(words, page) == sum(1 for w in words if w in page_words), (words, page)


def _longest_outline_plainly(cands: list[tuple[int, tuple[int, ...]]]) -> list[int]:
    """Every earlier candidate tried (_follows is the definition of what may come after
    what): the longest chain, the earliest of equals."""
    best: list[int] = []
    prev_of: list[int] = []
    for i, (_, num) in enumerate(cands):
        length, link = (1, -1) if _follows(None, num) else (0, -1)
        for j in range(i):
            if best[j] and _follows(cands[j][1], num) and best[j] + 1 > length:
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


def test_longest_outline() -> None:
    rng = random.Random(9)
    for _ in range(ROUNDS // 4):
        cands = [
            (i, tuple(rng.randint(0, 5) for _ in range(rng.randint(1, 3))))
            for i in range(rng.randint(0, 15))
        ]
        assert longest_outline(cands) == _longest_outline_plainly(cands), cands


def test_outline_is_what_the_line_tests_find() -> None:
    pieces = ["1 ", "2.1 ", "IV. ", "B. ", "A ", "Appendix ", "APPENDIX A", "Introduction"]
    pieces += ["References", "A CKNOWLEDGMENTS", "results", " 14", "x", "é", "١ ", ": Proofs"]
    rng = random.Random(10)
    for _ in range(ROUNDS // 10):
        lines = ["".join(rng.choices(pieces, k=rng.randint(1, 4))) for _ in range(40)]
        where = outline(lines)
        assert where.known == [i for i, ln in enumerate(lines) if is_known_heading(ln)]
        assert where.references == references_heading(lines)
        patterns = (
            NUMBERED,
            re.compile(r"^[IVX]{1,5}\.\s+[A-Z]"),
            re.compile(r"^[A-H]\.?\s+[A-Z]"),
        )
        numbered = [i for i, ln in enumerate(lines) if any(p.match(ln) for p in patterns)]
        assert where.numbered == numbered


def test_reference_years() -> None:
    """The author-year list's year tests against their plain definitions: a year among
    three lines, and an entry's first lines ending with their first year."""
    pieces = [*"18 19 20 1997a 2001b. 1899 20199 x٣ .", "١٩٩٧", "Doe J, Roe R.", "Press."]
    pieces += ["2023.", " . ", "(2020)", "pp. 1–10.", "19a", "ab2019", "2019_"]
    rng = random.Random(11)
    for _ in range(ROUNDS // 4):
        lines = ["".join(rng.choices(pieces, k=rng.randint(1, 5))) for _ in range(7)]
        assert _has_year(lines[:3]) == any(_YEAR.search(ln) for ln in lines[:3])
        start, i = sorted(rng.sample(range(7), 2))
        so_far = " ".join(lines[start : min(i, start + 4)]).rstrip(" .")
        year = _YEAR.search(so_far)
        assert _year_ends(lines, start, i) == bool(year and year.end() == len(so_far)), lines


def test_reference_items() -> None:
    """Each reference item is its entry's join_lines, cut at the cap."""
    pieces = ["a", "B", "-", " ", "x" * 90, "word- ", "- ", "co-", "\u00e9"]
    rng = random.Random(13)
    for _ in range(ROUNDS // 10):
        entries = [
            ["".join(rng.choices(pieces, k=rng.randint(1, 12))) for _ in range(rng.randint(1, 9))]
            for _ in range(5)
        ]
        want = [join_lines(e, MAX_REFERENCE_CHARS)[:MAX_REFERENCE_CHARS] for e in entries]
        assert _items(entries) == want, entries


def test_abstract_end_first_letters() -> None:
    """END_FIRST is every character the case-insensitive _ABSTRACT_END can start with."""
    first = re.compile(r"(?i)[kicaspmjgn]")
    found = {chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and first.match(chr(c))}
    assert found == END_FIRST


def _strip_line_numbers_plainly(lines: list[str], min_run: int) -> list[str]:
    """Margin line numbers as first defined: every line's candidates, every chain."""
    if not (min_run or 12) <= len(lines) <= 5000:
        return lines
    need = min_run or max(10, 0.4 * len(lines))
    cands: list[list[tuple[int, int, int]]] = []
    for line in lines:
        found = []
        if m := re.match(r"(\d{1,4})(?=\s|$)", line):
            found.append((int(m[1]), 0, m.end()))
        run = re.search(r"\d+$", line)
        for k in range(1, min(4, len(run[0]) if run else 0) + 1):
            found.append((int(line[-k:]), len(line) - k, len(line)))
        cands.append(found)
    values = {v for c in cands for v, _, _ in c}

    def run_from(value: int) -> int:
        size = 0
        while value + size in values:
            size += 1
        return size

    longest_run = max(map(run_from, values), default=0)
    if sum(1 for c in cands if c) < need or longest_run < need:
        return lines
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
    starts = sorted(
        (
            (chain[i][k][0], -i, c[2] - c[1], k)
            for i in range(len(lines))
            for k, c in enumerate(cands[i])
        ),
        reverse=True,
    )
    if not starts or starts[0][0] < need:
        return lines
    cut: dict[int, tuple[int, int]] = {}
    for length, neg_i, _, k in starts:
        link: tuple[int, int] | None = (-neg_i, k)
        while length >= 3 and link is not None and link[0] not in cut:
            cut[link[0]] = cands[link[0]][link[1]][1:]
            link = chain[link[0]][link[1]][1]
    if not min_run and sum(len(lines[i]) >= 40 for i in cut) < len(cut) / 3:
        return lines
    out = [
        (ln[: cut[i][0]] + " " + ln[cut[i][1] :]).strip() if i in cut else ln
        for i, ln in enumerate(lines)
    ]
    return [ln for ln in out if ln]


def _numbered_page(rng: random.Random) -> list[str]:
    words = ["The", "quick", "text", "of", "a", "line", "1.5", "2019", "x2", "(3)", "٣", "Table"]
    start, style = rng.randint(0, 300), rng.random()
    lines = []
    for i in range(rng.randint(0, 40)):
        body = " ".join(rng.choices(words, k=rng.randint(0, 12)))
        number = str(start + i) if rng.random() < 0.9 else str(rng.randint(0, 999))
        if style < 0.3 and rng.random() < 0.85:
            body = f"{number} {body}"  # PDFium: the number before the line
        elif style < 0.6 and rng.random() < 0.85:
            body += number  # pypdf: glued after it
        elif style < 0.8:
            body += f" {rng.randint(0, 99)}"  # a table's column
        if body.strip():
            lines.append(body.strip())
    return lines


def test_margin_line_numbers() -> None:
    rng = random.Random(12)
    for _ in range(ROUNDS // 4):
        lines = _numbered_page(rng)
        page = PageNumbers(lines)  # both passes of a line-numbered draft, one page's chains
        for min_run in (0, 3):
            assert page.cut(min_run) == _strip_line_numbers_plainly(lines, min_run), lines

"""rpa.extract.outcome.pages.split_pages gives what its plain definition gives.

split_pages finds running headers with a coarse key first and the exact key only for the
lines whose coarse key recurs, counts the edge digits of every page from the paper's first
and last characters joined, and gives its lines' first characters for the outline; the plain
definition here keys every edge line and counts every page's edge digits line by line. The
pages are drawn from pieces that reach the edge cases: headers that differ only in their
digits (of other scripts too), in case ("İ" and the Kelvin sign are ASCII in lower case), or
in a character outside ASCII; bare page numbers; margin line numbers.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from rpa.extract.outcome.lineno import PageNumbers, edge_digits
from rpa.extract.outcome.pages import split_pages

ROUNDS = 3_000
_DIGITS = re.compile(r"\d+")


def _split_plainly(raw: list[list[str]]) -> tuple[list[str], list[int], list[str], str]:
    """split_pages as first written: every edge line keyed, every page counted."""
    per_page = raw.copy()
    numbers: dict[int, PageNumbers] = {}
    for i, lines in enumerate(raw):
        if 12 <= len(lines) <= 5000 and edge_digits(lines) >= max(10, 0.4 * len(lines)):
            numbers[i] = PageNumbers(lines)
            per_page[i] = numbers[i].cut()
    page1 = per_page[0] if per_page else []
    if any(per_page[i] is not raw[i] for i in numbers):
        per_page = [(numbers.get(i) or PageNumbers(ln)).cut(min_run=3) for i, ln in enumerate(raw)]
    edges = [lines[:3] + lines[-3:] if len(lines) > 6 else lines for lines in per_page]
    key = {line: _DIGITS.sub("#", line.lower()) for edge in edges for line in edge}
    seen = Counter(k for edge in edges for k in {key[line] for line in edge})
    least = max(3, len(raw) // 4)
    dropped = {line for line, k in key.items() if seen[k] >= least}
    dropped |= {line for line in key if re.fullmatch(r"\d{1,4}", line)}
    out: list[str] = []
    starts: list[int] = []
    for lines in per_page:
        starts.append(len(out))
        for k, line in enumerate(lines):
            if not (line in dropped and (k < 3 or k >= len(lines) - 3)):
                out.append(line)
    return out, starts, page1, "".join(line[0] for line in out)


#: headers whose keys (lower case, digit runs as "#") are equal or nearly, a kind a paper
_HEADERS = [
    ["Page 12", "PAGE 7", "page ٣", "Ｐage 1", "Page 7 of 9"],
    ["İnce 4", "i\u0307nce 5", "ince 7", "ınce 7"],
    ["K 3", "k 4", "\u212a 7", "ｋ 7"],
    ["Title é", "Title e", "TITLE É 7", "Title"],
    ["12", "٣", "#4", "4#", "##", "#7", "7"],
    ["Journal of X, 2019", "A. Doe and B. Roe", "Journal of X, 7"],
]
_ASCII_WORDS = ["The", "text", "of", "a", "line", "1.5", "2019", "?", "x2"]
_WORDS = [*_ASCII_WORDS, "٣", "é"]
_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _paper(rng: random.Random) -> list[list[str]]:
    """A paper's pages: in ASCII or not, a header of three kinds, line-numbered or not."""
    ascii_only = rng.random() < 0.5
    header = [h for h in rng.choice(_HEADERS) if h.isascii() or not ascii_only] or ["7"]
    words = _ASCII_WORDS if ascii_only else _WORDS
    numerals = str.maketrans("", "") if ascii_only or rng.random() < 0.5 else _ARABIC_INDIC
    pages = []
    for _ in range(rng.randint(0, 12)):
        start = rng.randint(0, 300)
        lines = [
            " ".join(rng.choices(words, k=rng.randint(1, 16))) for _ in range(rng.randint(0, 30))
        ]
        if rng.random() < 0.2:  # a line-numbered draft's page
            lines = [f"{start + k} {line}".translate(numerals) for k, line in enumerate(lines)]
        for _ in range(rng.randint(0, 3)):
            at = rng.choice([0, 1, 2, len(lines), max(0, len(lines) - 1)])
            lines.insert(at, rng.choice(header).replace("7", str(rng.randint(0, 99))))
        pages.append(lines)
    return pages


def test_split_pages_is_its_plain_definition() -> None:
    rng = random.Random(14)
    for _ in range(ROUNDS):
        raw = _paper(rng)
        assert split_pages(raw) == _split_plainly(raw), raw

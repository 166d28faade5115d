"""A draft's margin line numbers (LaTeX `lineno`, review copies), found and removed.

pypdf glues them to the end of the line ("...abstract has 182 words.23"), PDFium puts them at
its start ("13 This example ..."). They are told from numbers in the text by running on: a
chain of lines, each carrying the previous one's number + 1 (a line or two may lack one),
over much of a page of running text (a third of its lines long at least); or over `min_run`
lines, once the paper is known to be line-numbered (a page of figures has only a few
numbered lines).

Most pages have too few lines that start or end with a digit for any chain (edge_digits, at
C speed); most others (a table's numbers) too few lines with a number where one is looked
for, counted before any candidate is made; the chains of the rest are found once a page
(`PageNumbers`) and read by both passes of rpa.extract.outcome.pages.split_pages.
"""

from __future__ import annotations

import operator
import re
from itertools import compress

__all__ = ["PageNumbers", "edge_digits"]

_LEADING_NUMBER = re.compile(r"(\d{1,4})(?=\s|$)")
_FIRST = operator.itemgetter(0)
_LAST = operator.itemgetter(-1)
#: (value, start, end) of a number a margin line number could be
Candidate = tuple[int, int, int]


def _candidates(line: str) -> list[Candidate]:
    """The numbers a margin line number could be in this line: the leading integer, and
    every suffix (1-4 digits) of the trailing digits, since pypdf glues the number to the
    text ("DC 2000511" is "DC 20005" on line 11)."""
    out = []
    if line[:1].isdecimal() and (m := _LEADING_NUMBER.match(line)):
        out.append((int(m.group(1)), 0, m.end()))
    if line[-1:].isdecimal():
        # what r"\d+$" finds, without its O(n) search: the ASCII digits, then any others
        size = len(line)
        end = len(line.rstrip("0123456789"))
        while end and line[end - 1].isdecimal():
            end -= 1
        for k in range(1, min(4, size - end) + 1):
            out.append((int(line[size - k :]), size - k, size))
    return out


def edge_digits(lines: list[str]) -> int:
    """How many of the lines' first and last characters are digits: at least the number of
    lines that have a candidate, counted at C speed."""
    return sum(map(str.isdecimal, map(_FIRST, lines))) + sum(map(str.isdecimal, map(_LAST, lines)))


def _numbered_lines(lines: list[str]) -> int:
    """How many lines have a candidate (_candidates), without making them: each line that
    ends with a digit, and each that starts with a number but does not end with a digit."""
    last = list(map(str.isdecimal, map(_LAST, lines)))
    first_only = compress(lines, map(operator.gt, map(str.isdecimal, map(_FIRST, lines)), last))
    return sum(last) + sum(1 for line in first_only if _LEADING_NUMBER.match(line))


def _long_edged(lines: list[str]) -> int:
    """How many lines of 40 characters or more start or end with a digit: at least the long
    lines that have a candidate."""
    edged = map(
        operator.or_, map(str.isdecimal, map(_FIRST, lines)), map(str.isdecimal, map(_LAST, lines))
    )
    return sum(map((40).__le__, map(len, compress(lines, edged))))


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


class PageNumbers:
    """One page's numbered-line chains, worked out once when first asked (`cut`), for any
    `min_run`: the cheap counts first, the chains only when the counts allow one."""

    __slots__ = ("_cands", "_cut", "_edges", "_numbered", "_out", "_run", "lines")

    def __init__(self, lines: list[str], edges: int = -1) -> None:
        self.lines = lines
        self._edges = edges
        self._cands: dict[int, list[Candidate]] | None = None
        self._run = -1
        self._cut: tuple[int, dict[int, tuple[int, int]]] | None = None
        self._out: list[str] | None = None
        self._numbered = -1

    def _candidates(self) -> dict[int, list[Candidate]]:
        if self._cands is None:
            lines = self.lines
            edged = map(
                operator.or_,
                map(str.isdecimal, map(_FIRST, lines)),
                map(str.isdecimal, map(_LAST, lines)),
            )
            found = {i: _candidates(lines[i]) for i in compress(range(len(lines)), edged)}
            self._cands = {i: c for i, c in found.items() if c}
        return self._cands

    def _chains(self) -> tuple[int, dict[int, tuple[int, int]]]:
        """The longest chain's length, and the cut (line -> the span of its number) of every
        chain of 3 or more, the longest first."""
        if self._cut is not None:
            return self._cut
        cands = self._candidates()
        # chain[i][k]: length of the run that starts with candidate k of line i, and its next
        # link; ahead[i]: value -> (length, k) of its longest run, the first k on a tie
        chain: dict[int, list[tuple[int, tuple[int, int] | None]]] = {}
        ahead: dict[int, dict[int, tuple[int, int]]] = {}
        longest = 0
        for i in sorted(cands, reverse=True):
            links: list[tuple[int, tuple[int, int] | None]] = []
            here: dict[int, tuple[int, int]] = {}
            for k, (value, _, _) in enumerate(cands[i]):
                best: tuple[int, tuple[int, int] | None] = (1, None)
                for j in (i + 1, i + 2, i + 3):
                    found = ahead.get(j)
                    if found is not None and (hit := found.get(value + 1)) is not None:
                        best = (hit[0] + 1, (j, hit[1]))
                        break
                links.append(best)
                if (old := here.get(value)) is None or best[0] > old[0]:
                    here[value] = (best[0], k)
                    if best[0] > longest:
                        longest = best[0]
            chain[i] = links
            ahead[i] = here
        # the longest chain; on a tie the earliest, then the widest number ("129" over its
        # "29"); then any other run of 3 or more on the page (figures and tables break the
        # numbering)
        starts = sorted(
            (
                (chain[i][k][0], -i, end - start, k)
                for i, cs in cands.items()
                for k, (_, start, end) in enumerate(cs)
                if chain[i][k][0] >= 3
            ),
            reverse=True,
        )
        cut: dict[int, tuple[int, int]] = {}
        for _, neg_i, _, k in starts:
            if -neg_i in cut:
                continue
            link: tuple[int, int] | None = (-neg_i, k)
            while link is not None and link[0] not in cut:
                i, k = link
                cut[i] = cands[i][k][1:]
                link = chain[i][k][1]
        self._cut = (longest, cut)
        return self._cut

    def cut(self, min_run: int = 0) -> list[str]:
        """The page's lines without their margin numbers (`lines` itself when it has none)."""
        lines = self.lines
        if not (min_run or 12) <= len(lines) <= 5000:
            return lines  # (no page has 5,000 lines: a pathological text is left as it is)
        need = min_run or max(10, 0.4 * len(lines))
        if self._edges < 0:
            self._edges = edge_digits(lines)
        if self._edges < need:
            return lines  # fewer numbered lines than the shortest run that counts: no chain
        if self._numbered < 0:
            self._numbered = _numbered_lines(lines)
        if self._numbered < need:
            return lines  # (most pages that get this far: their numbers are a table's)
        if not min_run and 3 * _long_edged(lines) < need:
            # the cut below needs a third of its lines (need at least) long: it cannot have
            # them (a table's or a list's numbers: most of the rest)
            return lines
        cands = self._candidates()
        if self._run < 0:
            self._run = _longest_run({v for c in cands.values() for v, _, _ in c})
        if self._run < need:
            return lines  # a chain needs that many numbered lines, numbered n, n + 1, n + 2 ...
        longest, cut = self._chains()
        if longest < need:
            return lines
        if not min_run and sum(len(lines[i]) >= 40 for i in cut) < len(cut) / 3:
            return lines  # short lines numbered in a row are a list or a table, not a draft's
        if self._out is None:
            out = lines.copy()
            for i, (a, b) in cut.items():
                line = lines[i]
                out[i] = (line[:a] + " " + line[b:]).strip()
            self._out = list(filter(None, out)) if "" in out else out
        return self._out

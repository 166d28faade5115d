"""Numbered outlines: the longest chain of section numbers that reads as an outline.

A paper's numbered lines are its sections (1, 1.1, 1.2, 2 ...; REVTeX/IEEE: I, A, 1, B, II
...) and strays: affiliations, list items, table rows, footnotes. The strays rarely continue
an outline, so the longest chain of numbers each of which may follow the one before is
taken for the paper's outline.
"""

from __future__ import annotations

__all__ = ["longest_outline", "roman_value", "style_outline"]

_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10}
#: a candidate: (its line, its number as integers: (2, 1) for "2.1")
Candidate = tuple[int, tuple[int, ...]]


def style_outline(cands: list[Candidate], dotted: set[int]) -> list[int]:
    """The longest outline whose sections are numbered alike ("4." or "4", not both): a
    footnote "4 To be released ..." must not stand in for section "4. DISPLAYING MATH"."""
    best: list[int] = []
    best_value = -1
    sections = {pos for pos, num in cands if len(num) == 1}
    for drop in (None, True, False):
        sub = [c for c in cands if len(c[1]) > 1 or drop is None or (c[0] in dotted) != drop]
        if drop is not None and len(sub) == len(cands):
            continue  # the same chain as with none dropped: no better
        chain = longest_outline(sub)
        tops = [p in dotted for p in chain if p in sections]
        value = len(chain) - 2 * sum(1 for t in tops if tops and t != tops[0])
        if value > best_value:
            best, best_value = chain, value
    return best


def roman_value(numeral: str) -> int:
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


def longest_outline(cands: list[Candidate]) -> list[int]:
    """Positions of the longest chain of candidates that reads as an outline: stray numbered
    lines (affiliations, list items, table rows) rarely continue 1, 1.1, 1.2, 2 ..."""
    if not cands:
        return []
    cands = cands[:600]  # bounds the search on pathological inputs
    best: list[int] = []
    prev_of: list[int] = []
    # The earlier candidates that `num` may follow (see _follows) are those whose number
    # starts with num's head and its last part less 1 or 2 (1.2 and 1.3 before 1.4; 2.1.3
    # before 2.2), and its head itself (1.1 after 1): for each such prefix (and each number)
    # the longest chain so far and its earliest candidate are kept, instead of testing every
    # earlier candidate.
    by_prefix: dict[tuple[int, ...], tuple[int, int]] = {}
    by_number: dict[tuple[int, ...], tuple[int, int]] = {}
    for i, (_, num) in enumerate(cands):
        head, last = num[:-1], num[-1]
        top, link = 0, -1
        for entry in (
            by_prefix.get((*head, last - 1)),
            by_prefix.get((*head, last - 2)),
            by_number.get(head) if last <= 2 and head else None,
        ):
            if entry is None or entry[0] < top:
                continue
            # the longest chain to follow; the earliest of equals, as a scan finds
            if entry[0] > top or (top and entry[1] < link):
                top, link = entry
        if top:
            length = top + 1
        else:
            length, link = (1 if _follows(None, num) else 0), -1
        best.append(length)
        prev_of.append(link)
        for cut in range(1, len(num) + 1):
            key = num[:cut]
            if (old := by_prefix.get(key)) is None or length > old[0]:
                by_prefix[key] = (length, i)
        if (old := by_number.get(num)) is None or length > old[0]:
            by_number[num] = (length, i)
    top = max(best)
    if top == 0:
        return []
    i = best.index(top)
    chain = []
    while i != -1:
        chain.append(cands[i][0])
        i = prev_of[i]
    return chain[::-1]

"""Section headings: numbered outlines, REVTeX/IEEE Roman outlines, known heading words.

Plain text has no font sizes, so a heading is told by its shape: a number that continues an
outline (1, 1.1, 1.2, 2 ...; I, A, 1, B, II ... in REVTeX and IEEE layouts), a line that is
one of the words papers use for sections (Introduction, References ...), an appendix line,
or, in papers whose known headings are unnumbered capitals, another line in capitals.
"""

from __future__ import annotations

import bisect
import operator
import re
from collections.abc import Iterable
from itertools import chain as chained
from typing import TYPE_CHECKING

from .text import CONNECTORS, count_letters, count_upper, squash, words

if TYPE_CHECKING:
    from .outline import Outline

MAX_HEADINGS = 100

NUMBERED = re.compile(r"^(?P<num>\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+(?P<text>[A-Z].*)$")
_ROMAN = re.compile(r"^(?P<num>[IVX]{1,5})\.\s+(?P<text>[A-Z].*)$")
# Second level under Roman sections ("A. Second-level heading"), and appendix sections after
# the references or an "Appendix" heading ("A Background & Terminology", "B. CHARGES").
_LETTERED = re.compile(r"^(?P<num>[A-H])\.\s+(?P<text>[A-Z].*)$")
_APPENDIX_SECTION = re.compile(r"^(?P<num>[A-H])\.?\s+(?P<text>[A-Z].*)$")
_APPENDIX = re.compile(
    r"^(?:appendix|appendices)(?:\s*(?:[A-Z]|\d{1,2}|\(\d{1,2}\)))?"
    r"(?:\s*[:.]\s*(?P<title>\S.*)|\s+(?P<plain>[A-Z]\S*(?:\s+\S+)*))?$",
    re.IGNORECASE,
)
KNOWN_HEADINGS = words(
    "introduction relatedwork relatedworks background conclusion conclusions "
    "conclusionsandfuturework conclusionandfuturework futurework discussion results "
    "resultsanddiscussion methods materialsandmethods methodology evaluation experiments "
    "limitations ethicsstatement ethicalconsiderations broaderimpact broaderimpacts "
    "acknowledgments acknowledgements acknowledgment acknowledgement references bibliography "
    "literaturecited referencesandnotes appendix appendices supplementarymaterial summary "
    "concludingremarks competinginterests conflictofinterest conflictsofinterest "
    "authorscontributions authorcontributions authordetails additionalfile additionalfiles "
    "abbreviations funding declarations supportinginformation supplementaryinformation "
    "dataavailability availabilityofdataandmaterials additionalinformationanddeclarations main"
)
# Main-body words: capitals among these tell that the paper's headings are unnumbered capitals
_MAIN_KEYS = words(
    "introduction background methods results discussion conclusion conclusions summary "
    "relatedwork materialsandmethods methodology"
)
REFERENCE_KEYS = words("references bibliography literaturecited referencesandnotes workscited")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10}
_FIRST_TOKEN = re.compile(r"^\S+\s+")
SECTION_NUMBER = re.compile(r"^(?:\d{1,2}(?:\.\d{1,2})*|[IVX]{1,5}|[A-H])\.?\s+")
_NON_LOWER = re.compile(r"[^a-z]")
_LAST = operator.itemgetter(-1)
_ENDS = re.compile(r"[.!?:)]")
_ASCII_UPPER = re.compile(r"[A-Z]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_START = operator.methodcaller("start")
APPENDIX_WORD = re.compile(r"(?i)appendi(?:x|ces)\b")
_PAGE_NUMBER_END = re.compile(r"\s\d{1,3}$")
#: what a section number of letters (I, IV, A) starts with
_SECTION_LETTERS = frozenset("IVXABCDEFGH")
#: the bytes heading_key drops: all but a-z
_NOT_A_Z = bytes(b for b in range(256) if not 97 <= b <= 122)
_APPENDIX_KEY = re.compile(r"appendix[a-z]?")
_REFERENCE_LIKE = re.compile(r"^\S+\s+[A-Z]\.\s|\b(?:1[89]|20)\d\d\b|“|,.*,")
_TOC_END = re.compile(r"\s\d{1,3}$")
_RUN_IN_ITEM = re.compile(r":\s+[a-z]")


def _ends_with_digit(text: str) -> bool:
    """Might `\\d$` match `text` (it ends with a digit, or with one and a line break)?"""
    return text[-1:].isdecimal() or (text[-1:] == "\n" and text[-2:-1].isdecimal())


def heading_key(line: str) -> str:
    """Letters only, lower case, without a leading section number: "2. RELATED WORK" ->
    "relatedwork"; also undoes small-caps spacing such as "A CKNOWLEDGMENTS"."""
    if line[:1] in _SECTION_LETTERS:
        line = SECTION_NUMBER.sub("", line)  # (digits and dots go with the rest)
    return line.lower().encode("ascii", "ignore").translate(None, _NOT_A_Z).decode("ascii")


def _appendix_heading(line: str) -> bool:
    """An appendix heading: "APPENDIX (1): BRST Analysis", "Appendix A: Proofs", "Appendix";
    not "Appendix B." (the end of a sentence)."""
    m = _APPENDIX.match(line)
    if m is None or len(line) > 90:
        return False
    title = m["title"] or m["plain"]
    return title is None or plausible_heading_text(title)


def is_known_heading(line: str) -> bool:
    if not line[:1].isalnum() or line[:1].islower():
        return False  # "results." or "(Appendix B)." inside a sentence
    if APPENDIX_WORD.match(line):
        return _appendix_heading(line)
    if len(line) > 45 or (_ends_with_digit(line) and _PAGE_NUMBER_END.search(line)):
        return False  # a sentence, or a table-of-contents line: "References 14"
    key = heading_key(line)
    return key in KNOWN_HEADINGS or _APPENDIX_KEY.fullmatch(key) is not None


def _upper(text: str, least: int = 4) -> bool:
    """Mostly capitals: at least `least` letters, 85 % of them upper case. Counted with
    map() (C speed): only letters are upper case, but for a few symbols such as 'Ⅷ'."""
    letters = count_letters(text)
    return letters >= least and count_upper(text) >= 0.85 * letters


#: the most words a heading may have
_MAX_HEADING_WORDS = 12


def plausible_heading_text(text: str) -> bool:
    words_ = text.split()
    if (
        not 1 <= len(words_) <= _MAX_HEADING_WORDS
        or len(text) > 80
        or "@" in text
        or "et al" in text
    ):
        return False
    if text.endswith((",", ";", ":", "-")) or words_[-1].lower() in CONNECTORS:
        return False  # a wrapped sentence (a list item), not a heading
    if text.endswith(".") and not _upper(text):
        return False  # ... unless it is a capitals heading ending "ETC."
    if _ends_with_digit(text) and _TOC_END.search(text):
        return False  # a table-of-contents line ("2 Methods 5")
    if len(text) > 50 and _RUN_IN_ITEM.search(text):
        return False  # a run-in list item
    letters = count_letters(text)
    return letters >= 0.6 * len(text.replace(" ", ""))


def _wrapped(lines: list[str], pos: int) -> str:
    """The heading starting at line `pos`, with its second line when it was wrapped: after a
    colon, comma or connector ("guidelines for" / "faithfulness ..."), a lower-case or
    capitals continuation, or a short title-case end of a long first line."""
    text = squash(lines[pos])
    if pos + 1 >= len(lines):
        return text
    nxt = squash(lines[pos + 1])
    if (
        not nxt
        or len(nxt) > 40
        or NUMBERED.match(nxt)
        or _ROMAN.match(nxt)
        or _LETTERED.match(nxt)
        or is_known_heading(nxt)
        or (nxt.endswith((".", ",", ";")) and not _upper(nxt, 2))
    ):
        return text
    last = text.split()[-1].lower() if text.split() else ""
    nxt_words = nxt.split()
    if (
        text.endswith((":", ",", "-", "–", "&"))
        or last in CONNECTORS
        or nxt[:1].islower()
        or (_upper(text) and _upper(nxt, 2))
        or (
            len(text) >= 30
            and len(nxt_words) <= 5
            and nxt[:1].isupper()
            and all(w[:1].isupper() or w in CONNECTORS for w in nxt_words)
        )
    ):
        joined = f"{text} {nxt}"
        if plausible_heading_text(_FIRST_TOKEN.sub("", joined)):
            return joined
    return text


def is_heading_at(lines: list[str], pos: int) -> bool:
    """Is line `pos` a numbered (1, 2.1, IV.) heading, its wrapped second line included?"""
    m = NUMBERED.match(lines[pos]) or _ROMAN.match(lines[pos])
    if m is None:
        return False
    joined = _FIRST_TOKEN.sub("", _wrapped(lines, pos))
    return plausible_heading_text(joined) or plausible_heading_text(m["text"])


def _style_outline(cands: list[tuple[int, tuple[int, ...]]], dotted: set[int]) -> list[int]:
    """The longest outline whose sections are numbered alike ("4." or "4", not both): a
    footnote "4 To be released ..." must not stand in for section "4. DISPLAYING MATH"."""
    best: list[int] = []
    best_value = -1
    sections = {pos for pos, num in cands if len(num) == 1}
    for drop in (None, True, False):
        sub = [c for c in cands if len(c[1]) > 1 or drop is None or (c[0] in dotted) != drop]
        if drop is not None and len(sub) == len(cands):
            continue  # the same chain as with none dropped: no better
        chain = _longest_outline(sub)
        tops = [p in dotted for p in chain if p in sections]
        value = len(chain) - 2 * sum(1 for t in tops if tops and t != tops[0])
        if value > best_value:
            best, best_value = chain, value
    return best


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
    if not cands:
        return []
    cands = cands[:600]  # bounds the search on pathological inputs
    best: list[int] = []
    prev_of: list[int] = []
    # The earlier candidates that `num` may follow (see _follows), looked up instead of
    # tested one by one: those whose number starts with num's head and its last part less
    # 1 or 2 (1.2 and 1.3 before 1.4; 2.1.3 before 2.2), and its head itself (1.1 after 1).
    by_prefix: dict[tuple[int, ...], list[int]] = {}
    get = by_prefix.get
    for i, (_, num) in enumerate(cands):
        head, last = num[:-1], num[-1]
        preds = get((*head, last - 1), [])
        if two_back := get((*head, last - 2)):
            preds = preds + two_back
        if last <= 2 and head and (parents := get(head)):
            preds = preds + [j for j in parents if len(cands[j][1]) == len(head)]
        top = max([best[j] for j in preds], default=0)
        if top:  # the longest chain to follow; the earliest of equals, as a scan finds
            best.append(top + 1)
            prev_of.append(min(j for j in preds if best[j] == top))
        else:
            best.append(1 if _follows(None, num) else 0)
            prev_of.append(-1)
        for cut in range(1, len(num)):
            by_prefix.setdefault(num[:cut], []).append(i)
        by_prefix.setdefault(num, []).append(i)
    top = max(best)
    if top == 0:
        return []
    i = best.index(top)
    chain = []
    while i != -1:
        chain.append(cands[i][0])
        i = prev_of[i]
    return chain[::-1]


def references_heading(lines: list[str]) -> int | None:
    """Index of the last "References"-like heading: earlier ones may be a TOC or a subsection."""
    found = None
    for i, line in enumerate(lines):
        if len(line) <= 40 and line[:1].isupper() and heading_key(line) in REFERENCE_KEYS:
            found = i
    return found


def _capitals_heading(lines: list[str], pos: int) -> bool:
    """A line in capitals that stands between paragraphs, in a paper whose headings are."""
    line = lines[pos]
    before = lines[pos - 1] if pos else ""
    after = lines[pos + 1] if pos + 1 < len(lines) else ""
    if not (after[:1].isupper() and before.endswith((".", "!", "?", ":", ")"))) or "," in line:
        return False  # (the cheap tests first)
    if not _upper(line) or any(c.isdigit() for c in line):
        return False
    return len(line.split()) >= 2 and plausible_heading_text(line)


def _between_paragraphs(lines: list[str], firsts: str, start: int) -> list[int]:
    """The lines from `start` on (but the last) that follow a line ending a sentence and
    come before one that starts with a capital: where a capitals heading can be."""
    ends = "".join(map(_LAST, lines))
    after_end = set(map((1).__add__, map(_START, _ENDS.finditer(ends))))
    capital: Iterable[int] = map(_START, _ASCII_UPPER.finditer(firsts))
    if not firsts.isascii():
        other = _NON_ASCII.finditer(firsts)
        capital = chained(capital, (m.start() for m in other if m[0].isupper()))
    before_capital = after_end.intersection(map((-1).__add__, capital))
    return sorted(p for p in before_capital if p >= start)


def _heading_text(lines: list[str], pos: int) -> str | None:
    """Line `pos` as a heading (with its wrapped second line when it has one), or None when
    its text does not read as one."""
    text = _wrapped(lines, pos)
    if plausible_heading_text(_FIRST_TOKEN.sub("", text)):
        return text
    line = lines[pos]
    if plausible_heading_text(_FIRST_TOKEN.sub("", line)):
        return squash(line)
    return None


def headings(lines: list[str], body_start: int, where: Outline) -> list[str]:
    """The paper's headings in order, deduplicated, at most MAX_HEADINGS. `where` is
    `rpa.extract.outcome.outline.outline(lines)`: only its lines are looked at one by one."""
    arabic: list[tuple[int, tuple[int, ...]]] = []
    roman: list[tuple[int, tuple[int, ...]]] = []
    lettered: list[tuple[int, tuple[int, ...]]] = []
    known: list[int] = []
    dotted: set[int] = set()
    text_at: dict[int, str] = {}
    refs_at = where.references
    known_at = set(where.known)
    in_references = appendices = False
    cur_roman = cur_letter = 0
    # where the references' state changes: (position, in references from there on)
    changes: list[tuple[int, bool]] = [(-1, False)]
    for pos in sorted(known_at.union(where.numbered)):
        line = lines[pos]
        if pos in known_at:
            known.append(pos)  # and, when numbered, a link in the outline chain below
            in_references = pos == refs_at or (in_references and "appendix" not in line.lower())
            appendices = appendices or pos == refs_at or _appendix_heading(line)
            changes.append((pos, in_references))
        if pos < body_start or (in_references and _REFERENCE_LIKE.search(line)):
            continue  # page-1 affiliations ("1 Allen ...") and entries "1. J. Doe, ..." are not
        # Only a known heading or a numbered line can be chosen below (capitals are looked
        # at after the loop).
        if not (
            (known and known[-1] == pos)
            or NUMBERED.match(line)
            or _ROMAN.match(line)
            or (cur_roman and _LETTERED.match(line))
            or (appendices and _APPENDIX_SECTION.match(line))
        ):
            continue
        text = _heading_text(lines, pos)
        if text is None:
            continue
        if m := NUMBERED.match(line):
            arabic.append((pos, tuple(int(n) for n in m["num"].split("."))))
            if line[len(m["num"]) :].startswith("."):
                dotted.add(pos)
            if cur_letter and "." not in m["num"] and line[len(m["num"]) :].startswith("."):
                roman.append((pos, (cur_roman, cur_letter, int(m["num"]))))  # REVTeX level 3
        elif m := _ROMAN.match(line):
            cur_roman, cur_letter = _roman(m["num"]), 0
            roman.append((pos, (cur_roman,)))
        elif (m := _LETTERED.match(line)) and cur_roman:
            cur_letter = ord(m["num"]) - ord("A") + 1
            roman.append((pos, (cur_roman, cur_letter)))
        if appendices and (m := _APPENDIX_SECTION.match(line)):
            lettered.append((pos, (ord(m["num"]) - ord("A") + 1,)))
        text_at[pos] = text
    chosen = set(known)
    for chain in (_style_outline(arabic, dotted), _longest_outline(roman)):
        # A short chain of numbered lines none of which is a known heading is more likely a
        # numbered list in the text ("1. We propose ...") than the paper's outline.
        if len(chain) >= 4 or any(pos in chosen for pos in chain):
            chosen.update(chain)
    appendix_chain = _longest_outline(lettered)
    if len(appendix_chain) >= 2:
        chosen.update(appendix_chain)
    capitals = [  # unnumbered capitals among the known headings: "INTRODUCTION", "SUMMARY"
        p
        for p in known
        if _upper(lines[p]) and heading_key(lines[p]) == _NON_LOWER.sub("", lines[p].lower())
    ]
    if len(capitals) >= 2 and any(heading_key(lines[p]) in _MAIN_KEYS for p in capitals):
        # a capitals heading follows a line that ends a sentence: only those are looked at
        for p in _between_paragraphs(lines, where.firsts, body_start):
            state = changes[bisect.bisect_right(changes, (p, True)) - 1][1]
            if state and _REFERENCE_LIKE.search(lines[p]):
                continue  # an entry of the reference list
            if _capitals_heading(lines, p):
                if p not in text_at and (text := _heading_text(lines, p)) is not None:
                    text_at[p] = text
                if p in text_at:
                    chosen.add(p)
    out: list[str] = []
    seen: set[str] = set()
    for pos in sorted(chosen):
        text = text_at.get(pos) or squash(lines[pos])
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return out[:MAX_HEADINGS]

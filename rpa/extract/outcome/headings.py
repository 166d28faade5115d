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
from itertools import compress
from typing import TYPE_CHECKING

from .chains import longest_outline, roman_value, style_outline
from .text import CONNECTORS, count_letters, count_upper, squash, words

if TYPE_CHECKING:
    from .outline import Outline

MAX_HEADINGS = 100

NUMBERED = re.compile(r"^(?P<num>\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+(?P<text>[A-Z].*)$")
_ROMAN = re.compile(r"^(?P<num>[IVX]{1,5})\.\s+(?P<text>[A-Z].*)$")
# Second level under Roman sections ("A. Second-level heading"), and appendix sections after
# the references or an "Appendix" heading ("A Background & Terminology", "B. CHARGES").
_LETTERED = re.compile(r"^(?P<num>[A-H])\.\s+(?P<text>[A-Z].*)$")
_ROMAN_FIRST = frozenset("IVX")
_LETTERED_FIRST = frozenset("ABCDEFGH")
#: NUMBERED, _ROMAN or _LETTERED matches (the text after the number goes to the line's end)
_NUMBERED_START = re.compile(r"(?:\d{1,2}(?:\.\d{1,2}){0,3}\.?|[IVX]{1,5}\.|[A-H]\.)\s+[A-Z]")
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
SECTION_NUMBER = re.compile(r"^(?:\d{1,2}(?:\.\d{1,2})*|[IVX]{1,5}|[A-H])\.?\s+")
_NON_LOWER = re.compile(r"[^a-z]")
_LAST = operator.itemgetter(-1)
#: a sentence's last characters, and capitals, as tables for bytes.translate (1 or 0)
_ENDS_BYTES = bytes(chr(b) in ".!?:)" for b in range(256))
_UPPER_BYTES = bytes(65 <= b <= 90 for b in range(256))
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


def _after_first_token(text: str) -> str:
    """What removing `^\\S+\\s+` leaves: the text after its first word and the whitespace
    after that (the text itself when it starts with whitespace or is one word)."""
    if not text or text[0].isspace():
        return text
    parts = text.split(None, 1)
    if len(parts) == 2:
        return parts[1]
    return "" if text[-1].isspace() else text


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


def known_by_key(line: str) -> bool:
    """is_known_heading(line) for a line of at most 45 characters whose heading_key is in
    KNOWN_HEADINGS (rpa.extract.outcome.outline has the keys already): the same tests
    but the key."""
    if not line[:1].isalnum() or line[:1].islower():
        return False
    if APPENDIX_WORD.match(line):
        return _appendix_heading(line)
    return not (_ends_with_digit(line) and _PAGE_NUMBER_END.search(line))


def _upper(text: str, least: int = 4) -> bool:
    """Mostly capitals: at least `least` letters, 85 % of them upper case. Counted with
    map() (C speed): only letters are upper case, but for a few symbols such as 'Ⅷ'."""
    letters = count_letters(text)
    return letters >= least and count_upper(text) >= 0.85 * letters


#: the most words a heading may have
_MAX_HEADING_WORDS = 12


def plausible_heading_text(text: str) -> bool:
    if len(text) > 80 or "@" in text or "et al" in text:
        return False
    words_ = text.split()
    if not 1 <= len(words_) <= _MAX_HEADING_WORDS:
        return False
    if text.endswith((",", ";", ":", "-")) or words_[-1].lower() in CONNECTORS:
        return False  # a wrapped sentence (a list item), not a heading
    if text.endswith(".") and not _upper(text):
        return False  # ... unless it is a capitals heading ending "ETC."
    if _ends_with_digit(text) and _TOC_END.search(text):
        return False  # a table-of-contents line ("2 Methods 5")
    if len(text) > 50 and _RUN_IN_ITEM.search(text):
        return False  # a run-in list item
    return count_letters(text) >= 0.6 * (len(text) - text.count(" "))


def _wrapped(lines: list[str], pos: int, known: set[int] | None = None) -> str:
    """The heading starting at line `pos`, with its second line when it was wrapped: after a
    colon, comma or connector ("guidelines for" / "faithfulness ..."), a lower-case or
    capitals continuation, or a short title-case end of a long first line. `known` are the
    lines is_known_heading accepts, if found already."""
    text = squash(lines[pos])
    if pos + 1 >= len(lines):
        return text
    nxt = squash(lines[pos + 1])
    if not nxt or len(nxt) > 40 or _NUMBERED_START.match(nxt):
        return text
    if pos + 1 in known if known is not None and nxt is lines[pos + 1] else is_known_heading(nxt):
        return text
    if nxt.endswith((".", ",", ";")) and not _upper(nxt, 2):
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
        if plausible_heading_text(_after_first_token(joined)):
            return joined
    return text


def is_heading_at(lines: list[str], pos: int, known: set[int] | None = None) -> bool:
    """Is line `pos` a numbered (1, 2.1, IV.) heading, its wrapped second line included?
    `known` are the lines is_known_heading accepts, if found already."""
    m = NUMBERED.match(lines[pos]) or _ROMAN.match(lines[pos])
    if m is None:
        return False
    joined = _after_first_token(_wrapped(lines, pos, known))
    return plausible_heading_text(joined) or plausible_heading_text(m["text"])


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


def _between_paragraphs(lines: list[str], where: Outline, start: int) -> list[int]:
    """The lines from `start` on (but the last) that may follow a line ending a sentence and
    come before one that starts with a capital: where a capitals heading can be. (A line
    that ends with a character outside ASCII is taken for a sentence end here: its "?" in
    ASCII; _capitals_heading looks again.)"""
    rows = range(len(lines))
    ends = "".join(map(_LAST, lines)).encode("ascii", "replace").translate(_ENDS_BYTES)
    after_end = set(map((1).__add__, compress(rows, ends)))
    firsts = where.firsts
    capital = compress(rows, firsts.encode("ascii", "replace").translate(_UPPER_BYTES))
    before_capital = after_end.intersection(map((-1).__add__, capital))
    before_capital.update(p - 1 for p in where.others if firsts[p].isupper() and p - 1 in after_end)
    return sorted(p for p in before_capital if p >= start)


def _heading_text(lines: list[str], pos: int, known: set[int]) -> str | None:
    """Line `pos` as a heading (with its wrapped second line when it has one), or None when
    its text does not read as one. `known` are the lines is_known_heading accepts."""
    text = _wrapped(lines, pos, known)
    if plausible_heading_text(_after_first_token(text)):
        return text
    line = lines[pos]
    if plausible_heading_text(_after_first_token(line)):
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
        # at after the loop); which pattern can match is told by the first character.
        first = line[:1]
        num = NUMBERED.match(line) if first.isdecimal() else None
        rom = _ROMAN.match(line) if first in _ROMAN_FIRST else None
        let = _LETTERED.match(line) if first in _LETTERED_FIRST else None
        app = _APPENDIX_SECTION.match(line) if appendices and first in _LETTERED_FIRST else None
        if not ((known and known[-1] == pos) or num or rom or (cur_roman and let) or app):
            continue
        text = _heading_text(lines, pos, known_at)
        if text is None:
            continue
        if num:
            arabic.append((pos, tuple(map(int, num["num"].split(".")))))
            if line[len(num["num"]) :].startswith("."):
                dotted.add(pos)
                if cur_letter and "." not in num["num"]:  # REVTeX level 3
                    roman.append((pos, (cur_roman, cur_letter, int(num["num"]))))
        elif rom:
            cur_roman, cur_letter = roman_value(rom["num"]), 0
            roman.append((pos, (cur_roman,)))
        elif let and cur_roman:
            cur_letter = ord(let["num"]) - ord("A") + 1
            roman.append((pos, (cur_roman, cur_letter)))
        if app:
            lettered.append((pos, (ord(app["num"]) - ord("A") + 1,)))
        text_at[pos] = text
    chosen = set(known)
    for chain in (style_outline(arabic, dotted), longest_outline(roman)):
        # A short chain of numbered lines none of which is a known heading is more likely a
        # numbered list in the text ("1. We propose ...") than the paper's outline.
        if len(chain) >= 4 or any(pos in chosen for pos in chain):
            chosen.update(chain)
    appendix_chain = longest_outline(lettered)
    if len(appendix_chain) >= 2:
        chosen.update(appendix_chain)
    capitals = [  # unnumbered capitals among the known headings: "INTRODUCTION", "SUMMARY"
        p
        for p in known
        if _upper(lines[p]) and heading_key(lines[p]) == _NON_LOWER.sub("", lines[p].lower())
    ]
    if len(capitals) >= 2 and any(heading_key(lines[p]) in _MAIN_KEYS for p in capitals):
        # a capitals heading follows a line that ends a sentence: only those are looked at
        for p in _between_paragraphs(lines, where, body_start):
            state = changes[bisect.bisect_right(changes, (p, True)) - 1][1]
            if state and _REFERENCE_LIKE.search(lines[p]):
                continue  # an entry of the reference list
            if _capitals_heading(lines, p):
                if p not in text_at and (text := _heading_text(lines, p, known_at)) is not None:
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

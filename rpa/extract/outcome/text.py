"""Shared line-level helpers: words, markers, NFKC, footnote marks.

Everything in the outcome package works on plain extracted text (pypdf's or PDFium's), which
has no fonts or positions: these helpers undo the few artefacts that would otherwise mislead
every heuristic (running headers, margin line numbers, footnote marks glued to words).
"""

from __future__ import annotations

import operator
import re
import unicodedata
from itertools import repeat
from typing import Literal

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


_ASCII_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ASCII_LETTERS = _ASCII_UPPER + _ASCII_UPPER.lower()


def count_letters(text: str) -> int:
    """sum(map(str.isalpha, text)), without a step a character in ASCII text."""
    if text.isascii():
        return len(text) - len(text.encode("ascii").translate(None, _ASCII_LETTERS))
    return sum(map(str.isalpha, text))


def count_upper(text: str) -> int:
    """sum(map(str.isupper, text)), without a step a character in ASCII text."""
    if text.isascii():
        return len(text) - len(text.encode("ascii").translate(None, _ASCII_UPPER))
    return sum(map(str.isupper, text))


def squash(text: str) -> str:
    """ " ".join(text.split()), without the split when it changes nothing (no whitespace but
    single spaces inside: what is not a space is not printable)."""
    if "  " in text or not text.isprintable() or text[:1] == " " or text[-1:] == " ":
        return " ".join(text.split())
    return text


def alpha_words(line: str) -> list[str]:
    return WORD.findall(line)


def two_words(line: str) -> bool:
    """len(alpha_words(line)) >= 2, without the list: a second word after the first."""
    first = WORD.search(line)
    return first is not None and WORD.search(line, first.end()) is not None


_ENDS_HYPHEN = operator.methodcaller("endswith", "-")


def join_lines(lines: list[str], limit: int = 10**6) -> str:
    """Join wrapped lines into one paragraph (up to ~limit chars), undoing hyphenation."""
    if sum(map(len, lines)) + len(lines) <= limit and not any(map(_ENDS_HYPHEN, lines[:-1])):
        return " ".join(lines)  # (no line to join to the next without a space)
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


_NFKC: Literal["NFKC"] = "NFKC"


def nfkc(text: str) -> str:
    """unicodedata.normalize("NFKC", text), normalising only the lines that need it: a page
    with one "²" or "𝑥" would otherwise be normalised whole, at ~20 ns a character. (A line
    break never composes with its neighbours, so line by line gives the same text.)"""
    if unicodedata.is_normalized("NFKC", text):
        return text
    # (normalize returns a line its quick check finds normalised as it is: a C call a line)
    return "\n".join(map(unicodedata.normalize, repeat(_NFKC), text.split("\n")))


# Footnote marks: a digit right after a clause's punctuation ("S2ORC,1 a corpus"), marker
# symbols glued to a word ("Transformers∗"), and either kind at the very end ("research.1").
# (Each starts with what it keeps or drops, not with its look-behind: a regex that starts with
# a set of characters skips to them at C speed.)
_MARK_AFTER_PUNCT = re.compile(r"([,.;:])(?<=[^\W\d_]{2}[,.;:])\d{1,2}(?=\s)")
_GLUED_SYMBOL = re.compile(r"[∗†‡§¶⋆](?<=\w[∗†‡§¶⋆])[∗†‡§¶⋆]*")
_END_MARK = re.compile(r"(?<=[.!?)\]”’\"])\s*(?:\d{1,2}|[∗*†‡§¶⋆]+)$")
_MARK_END = frozenset("∗*†‡§¶⋆")


def strip_footnote_marks(text: str) -> str:
    """The text without the footnote marks typesetting left in it (superscripts come out of
    extraction as plain digits and symbols)."""
    text = _MARK_AFTER_PUNCT.sub(r"\1", text)
    text = _GLUED_SYMBOL.sub("", text)
    last = text[-2:-1] if text[-1:] == "\n" else text[-1:]
    if last.isdecimal() or last in _MARK_END:  # (what _END_MARK can end with)
        text = _END_MARK.sub("", text)
    return text.strip()

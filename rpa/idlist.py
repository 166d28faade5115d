"""ID lists: a file of arXiv IDs (one a line, `#` comments), streamed in batches.

The file is read a block at a time, never whole, and a line is kept to at most
`MAX_LINE_BYTES` (plus one read block), so a file without newlines costs no memory. Each line
is parsed (rpa.ids.parse_id); an invalid one is reported with its line number.

The list can be a stream: `-` (standard input), `/dev/stdin`, a pipe (`<(grep ... ids.txt)`).
A stream is read once and cannot be measured: `check_id_source` accepts it, and what must
read a list twice (`--strict` checks it all before queueing any) takes `readable_twice`.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import stat
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rpa.errors import InputError, InvalidIdError
from rpa.ids import PaperId, parse_line

__all__ = [
    "MAX_LINE_BYTES",
    "STDIN",
    "IdLine",
    "KeyBatch",
    "check_id_source",
    "is_stream",
    "iter_id_batches",
    "iter_id_lines",
    "iter_key_batches",
    "readable_twice",
]

#: the ID list's name for standard input (`rpa run -`)
STDIN = Path("-")

# Length past which an ID-list line is declared overlong; the reader keeps no more than this
# (plus one read block) of a line, so a file without newlines is never loaded whole.
MAX_LINE_BYTES = 4096
_BLOCK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class IdLine:
    """One non-blank, non-comment line of an ID list."""

    #: 1-based line number in the file
    lineno: int
    #: the line without its comment and surrounding whitespace
    text: str
    #: the parsed ID, or None when the line is invalid
    paper: PaperId | None
    #: why the line is invalid, or None
    error: InvalidIdError | None


def is_stream(path: Path) -> bool:
    """Is the ID list a stream (standard input, a pipe, a terminal), read once, not a file?"""
    if path == STDIN:
        return True
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_id_source(path: Path) -> None:
    """Refuse, in one line, an ID list that cannot be one: not there, a folder, a tar (the
    papers of a tar are queued with --pdf-tar). A stream is accepted unread."""
    if is_stream(path):
        return
    if path.is_dir():
        raise InputError(f"ID file {path} is a folder, not a file of IDs; nothing was queued")
    if not path.is_file():
        raise InputError(f"ID file {path} is not there; nothing was queued")
    try:
        is_tar = tarfile.is_tarfile(path)
    except OSError as exc:
        raise InputError(f"cannot read ID list {path}: {exc.strerror or exc}") from exc
    if is_tar:
        raise InputError(
            f"ID file {path} is a tar, not a file of IDs; did you mean `--pdf-tar {path}` "
            "(run the tar's papers)? Nothing was queued"
        )
    with path.open("rb") as fh:
        head = fh.read(64)
    if _utf16(head):
        raise InputError(
            f"ID file {path} is UTF-16 text (as Windows Notepad saves it, say): save it as "
            "UTF-8 and run again; nothing was queued"
        )


def _utf16(head: bytes) -> bool:
    """Do a file's first bytes look like UTF-16: its byte-order mark, or ASCII text with a
    NUL beside every character?"""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    even, odd = head[0::2], head[1::2]
    return len(head) >= 4 and any(
        half.count(0) == len(half) and other.count(0) == 0
        for half, other in ((even, odd), (odd, even))
    )


@contextlib.contextmanager
def readable_twice(path: Path) -> Iterator[Path]:
    """`path`, or, for a stream, a private copy of it that can be read again (removed on
    leaving): a stream is read once."""
    if not is_stream(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="rpa-ids-") as folder:
        copy = Path(folder) / "ids.txt"
        with _open(path) as src, copy.open("wb") as dst:
            shutil.copyfileobj(src, dst, _BLOCK_BYTES)
        yield copy


@contextlib.contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    """The ID list open for reading bytes (standard input stays open after)."""
    if path == STDIN:
        yield sys.stdin.buffer
        return
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read ID list {path}: {exc.strerror or exc}") from exc
    with fh:
        yield fh


def _raw_chunks(path: Path) -> Iterator[tuple[int, list[str], frozenset[int]]]:
    """Yield (number of the first line, decoded lines, indexes of overlong lines) per read
    block, holding one block and at most one line. Overlong lines are not yet cut."""
    with _open(path) as fh:
        lineno = 0
        carry = b""  # the unfinished last line of the previous block
        overlong = False  # the current line passed MAX_LINE_BYTES: its bytes are dropped
        while block := fh.read(_BLOCK_BYTES):
            end = block.rfind(b"\n")
            if end < 0:
                carry += block
            else:
                # Decode whole lines only, so a multi-byte character is never cut in two;
                # errors="replace": one bad byte makes one invalid line, not a bad file.
                lines = (carry + block[: end + 1]).decode("utf-8", errors="replace").split("\n")
                carry = block[end + 1 :]
                lines.pop()  # the empty string after the final newline
                if lineno == 0 and lines:
                    lines[0] = lines[0].removeprefix("\ufeff")
                long: frozenset[int] = frozenset()
                if lines and (overlong or max(map(len, lines)) > MAX_LINE_BYTES):
                    long = frozenset(
                        i for i, line in enumerate(lines) if len(line) > MAX_LINE_BYTES
                    ) | ({0} if overlong else set())
                    overlong = False
                yield lineno + 1, lines, long
                lineno += len(lines)
            if len(carry) > MAX_LINE_BYTES:
                carry = carry[:MAX_LINE_BYTES]
                overlong = True
            if len(block) < _BLOCK_BYTES:
                # a buffered read comes back short only at the end: stop there, for the end
                # of a terminal's input (Ctrl-D) is read once, and one more read would wait
                break
        if carry or overlong:
            line = carry.decode("utf-8", errors="replace")
            line = line.removeprefix("\ufeff") if lineno == 0 else line
            yield lineno + 1, [line], frozenset({0}) if overlong else frozenset()


def _id_line(lineno: int, line: str, overlong: bool) -> IdLine | None:
    """The IdLine of one raw line; None for a blank or comment-only line."""
    cut = line.find("#")
    text = (line if cut < 0 else line[:cut]).strip()
    if overlong:
        snippet = text[:60] + "..."
        error = InvalidIdError(snippet, f"line longer than {MAX_LINE_BYTES} bytes", lineno)
        return IdLine(lineno, snippet, None, error)
    if not text:
        return None
    try:
        return IdLine(lineno, text, parse_line(text), None)
    except InvalidIdError as exc:
        return IdLine(lineno, text, None, InvalidIdError(text, exc.reason, lineno))


def iter_id_lines(path: Path) -> Iterator[IdLine]:
    """Stream an ID list: one IdLine per line that is neither blank nor only a comment.

    ``#`` starts a comment that runs to the end of the line. The file is read a block at a
    time, never whole. Raises InputError if the file cannot be opened.
    """
    for first, lines, long in _raw_chunks(path):
        for i, line in enumerate(lines):
            item = _id_line(first + i, line[:MAX_LINE_BYTES], i in long)
            if item is not None:
                yield item


@dataclass(slots=True)
class KeyBatch:
    """Up to ``batch_size`` lines of an ID list, reduced to what queueing them needs."""

    #: non-blank, non-comment lines in this batch
    lines: int
    #: queue keys of the valid lines, in file order
    keys: list[str]
    #: one error per invalid line
    errors: list[InvalidIdError]


#: The commonest line of a big list: a bare five-digit new-style ID without a version.
_PLAIN_NEW_RE = re.compile(r"[0-9]{4}\.[0-9]{5}")


def iter_key_batches(path: Path, batch_size: int = 10_000) -> Iterator[KeyBatch]:
    """Stream an ID list as KeyBatches: the same keys and errors as iter_id_lines, faster.

    A line that is exactly a plain five-digit new-style ID, from a month an earlier line
    already proved valid, is its own key; every other line takes the full parser. This
    keeps a million-line list at well under a microsecond a line.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    plain = _PLAIN_NEW_RE.fullmatch
    good_months: set[str] = set()  # yymm of plain IDs the full parser accepted
    batch = KeyBatch(0, [], [])
    for first, lines, long in _raw_chunks(path):
        for i, line in enumerate(lines):
            if plain(line) and line[:4] in good_months and line[5:] != "00000":
                batch.keys.append(line)
            else:
                item = _id_line(first + i, line[:MAX_LINE_BYTES], i in long)
                if item is None:
                    continue
                if item.paper is not None:
                    key = item.paper.key
                    batch.keys.append(key)
                    if key == line and plain(line):
                        good_months.add(line[:4])
                else:
                    assert item.error is not None
                    batch.errors.append(item.error)
            batch.lines += 1
            if batch.lines >= batch_size:
                yield batch
                batch = KeyBatch(0, [], [])
    if batch.lines:
        yield batch


def iter_id_batches(path: Path, batch_size: int = 10_000) -> Iterator[list[IdLine]]:
    """Stream an ID list in lists of at most ``batch_size`` lines (one transaction each)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    batch: list[IdLine] = []
    for item in iter_id_lines(path):
        batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch

"""The one check a PDF passes before rpa trusts it, wherever its bytes come from.

    size cap        TooLarge    "<n> bytes, cap <cap>" (known beforehand), "<n> bytes declared,
                                cap <cap>" (an HTTP Content-Length), "over <cap> bytes" (counted)
    `%PDF-` sniff   NotPdf      the magic in the first 1024 bytes (the PDF spec lets readers
                                accept the header anywhere there); the message is the caller's
    size, sha256                of exactly the bytes that were checked

`PdfCheck` applies the cap and the sniff to bytes as they arrive (an HTTP body, on the event
loop: it does no I/O, and leaves the hashing to the download's I/O thread); `check_pdf` runs the
whole check over a file or a tar member and returns (size, sha256): it reads, so it blocks (call
it in the I/O pool). Used by every source (http, local, tar) and by `rpa.sources.stored` (a PDF
left by an earlier run).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import IO

from rpa import errors

__all__ = [
    "PDF_MAGIC",
    "SNIFF_BYTES",
    "NotPdfError",
    "PdfCheck",
    "check_pdf",
    "not_a_pdf",
    "opening",
    "sniff_pdf",
    "start_of",
]

PDF_MAGIC = b"%PDF-"
#: the PDF spec lets readers accept the header anywhere in the first 1024 bytes
SNIFF_BYTES = 1024
#: bytes read (and hashed) at a time
_READ_BYTES = 1 << 20

#: builds the error for bytes that are not a PDF, from their first SNIFF_BYTES bytes
NotPdfError = Callable[[bytes], errors.JobError]


def sniff_pdf(head: bytes) -> bool:
    """Does a file that starts with `head` look like a PDF (`%PDF-` in its first 1024 bytes)?"""
    return PDF_MAGIC in head[:SNIFF_BYTES]


def start_of(head: bytes, chars: int = 60) -> str:
    """The first `chars` bytes of what was not a PDF, readable in one line: printable ASCII as
    it is, every other byte a `.` (a binary file's start is no screenful of escapes)."""
    text = head[:chars].decode("ascii", "replace").replace("\n", " ")
    return "".join(c if " " <= c <= "~" else "." for c in text).strip()


def opening(head: bytes, chars: int = 60) -> str:
    """How what was not a PDF begins, for a message: "starts '<html>...'", or "empty"."""
    return f"starts {start_of(head, chars)!r}" if head else "empty"


def not_a_pdf(head: bytes) -> errors.JobError:
    """The plain NotPdf for bytes starting with `head`."""
    return errors.NotPdf(f"not a PDF ({opening(head)})")


class PdfCheck:
    """The size cap and the `%PDF-` sniff over a PDF's bytes, fed in order as they come.

    `feed` raises TooLarge as soon as more than `max_bytes` have come (None: no cap), and
    `not_pdf(head)` as soon as the first SNIFF_BYTES bytes are in without the magic; `finish`
    sniffs what there is of a shorter body and returns the size.
    """

    def __init__(self, max_bytes: int | None, not_pdf: NotPdfError = not_a_pdf) -> None:
        self.max_bytes = max_bytes
        self.not_pdf = not_pdf
        self.head = b""
        self.size = 0

    def declared(self, size: int | None) -> None:
        """A size announced before the bytes (an HTTP Content-Length): over the cap, refuse."""
        if size is not None and self.max_bytes is not None and size > self.max_bytes:
            raise errors.TooLarge(f"{size} bytes declared, cap {self.max_bytes}")

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise errors.TooLarge(f"over {self.max_bytes} bytes")
        if len(self.head) < SNIFF_BYTES:
            self.head += data[: SNIFF_BYTES - len(self.head)]
            if len(self.head) >= SNIFF_BYTES and not sniff_pdf(self.head):
                raise self.not_pdf(self.head)

    def finish(self) -> int:
        """All bytes are in: raise `not_pdf` unless they were a PDF; the size."""
        if not sniff_pdf(self.head):
            raise self.not_pdf(self.head)
        return self.size


def check_pdf(
    open_pdf: Callable[[], IO[bytes]],
    size: int | None = None,
    max_bytes: int | None = None,
    *,
    not_pdf: NotPdfError = not_a_pdf,
    where: str = "",
) -> tuple[int, str]:
    """(size, sha256) of the PDF that `open_pdf()` reads, once it has passed the checks.

    `size`, when known before reading (a file's stat, a tar member's index), is held against
    `max_bytes` first, so an oversized PDF is not read at all: TooLarge
    "<size> bytes, cap <max_bytes><where>". Then the bytes are read once, a megabyte at a time:
    capped, sniffed and hashed together. Errors of `open_pdf` and of reading propagate.
    Blocking.
    """
    if size is not None and max_bytes is not None and size > max_bytes:
        raise errors.TooLarge(f"{size} bytes, cap {max_bytes}{where}")
    check = PdfCheck(max_bytes, not_pdf)
    digest = hashlib.sha256()
    with open_pdf() as fh:
        while chunk := fh.read(_READ_BYTES):
            check.feed(chunk)
            digest.update(chunk)
    return check.finish(), digest.hexdigest()

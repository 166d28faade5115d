"""A PDF rpa has stored: a file, or a member of a bulk tar (`tar:OFFSET:SIZE:PATH`).

A checkpoint records where a paper's PDF is, its size and its sha256. A later run opens it
(`open_pdf`, for the extractors), checks that it is still the file that was checkpointed
(`verify_pdf`), or adopts a whole PDF a network source left at its final name before it was
interrupted (`adopt_pdf`). The checks are `rpa.sources.check`'s. Blocking: the I/O pool's work.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from rpa.errors import JobError, NotPdf
from rpa.sources.check import check_pdf
from rpa.sources.tar import TAR_PREFIX, check_member, open_member

__all__ = ["adopt_pdf", "open_pdf", "verify_pdf"]


def open_pdf(path: str) -> IO[bytes]:
    """The stored PDF at `path` as a binary file object: a tar member is read with one seek
    (a JobError when its tar is gone or truncated); a file is opened, to be read lazily."""
    if path.startswith(TAR_PREFIX):
        return open_member(path)
    return open(path, "rb")


def adopt_pdf(dest: Path) -> tuple[int, str] | None:
    """(size, sha256) of a complete PDF already at its final name, else None (a file there
    that is not a PDF is removed)."""
    try:
        return check_pdf(lambda: dest.open("rb"))
    except FileNotFoundError:
        return None
    except NotPdf:
        dest.unlink(missing_ok=True)
        return None


def verify_pdf(path: str, size: int | None, sha256: str | None) -> bool:
    """Is the checkpointed PDF still there, with the recorded size and sha256 (None: not
    recorded, not compared)?"""
    if path.startswith(TAR_PREFIX):  # a bulk tar's member
        try:
            got = check_member(path, None)
        except (JobError, OSError):
            return False
        return (size is None or got[0] == size) and (sha256 is None or got[1] == sha256)
    p = Path(path)
    try:
        if size is not None and p.stat().st_size != size:
            return False
        return sha256 is None or check_pdf(lambda: p.open("rb"))[1] == sha256
    except (FileNotFoundError, NotPdf):
        return False

"""A downloaded PDF given its final name, never replacing a PDF already there.

A download goes to a private name (a temporary name carrying the run's id) and is given its
final name by a hard link, which fails when a file is already there: final names only ever
hold whole, checked PDFs of their paper, and a PDF already there is kept (adopted). Whoever
publishes first, the file on disk and the queue's record agree (rpa.run.publish says why a
stale holder is then harmless). The extraction process that checks the download publishes
it (rpa.extract.paper). Blocking.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from rpa.files import temp_name
from rpa.sources.stored import adopt_pdf

__all__ = ["private_name", "publish_pdf"]

#: errors of a file system that has no hard links
_NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK)


def private_name(final: Path, run_id: str) -> Path:
    """A name beside `final` that only this run's worker writes (a temporary name carrying
    the run's id, so that a start-up removes it once the run is dead)."""
    return final.parent / temp_name(final.name, run_id)


def _link(private: Path, final: Path) -> None:
    try:
        os.link(private, final)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if final.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(final)) from None
        os.replace(private, final)


def publish_pdf(private: Path, final: Path, *, first: bool = False) -> tuple[int, str] | None:
    """Give the whole, checked PDF at `private` the name `final`, never replacing a file
    there, unless this is the job's `first` claim and its lease surely still holds (no
    holder before it can have published: a file there is foreign, left by another queue in
    the same --out, and is replaced; rpa.run.leases).
    None: it is published. Else (size, sha256) of the PDF that was already at `final`, kept.
    The private file is gone either way."""
    try:
        for _ in range(3):
            try:
                _link(private, final)
                return None
            except FileExistsError:
                if first:
                    os.replace(private, final)
                    return None
                kept = adopt_pdf(final)  # a file there that is no PDF is removed: try again
                if kept is not None:
                    return kept
        raise FileExistsError(errno.EEXIST, "a file keeps appearing at this name", str(final))
    finally:
        with contextlib.suppress(FileNotFoundError):
            private.unlink()

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
from rpa.queue.clock import lease_clock, vouched_until
from rpa.sources.check import check_pdf
from rpa.sources.stored import adopt_pdf

__all__ = ["keep_download", "private_name", "publish_pdf", "publish_whole"]

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


def publish_whole(private: Path, final: Path, *, first: bool, vouch: str) -> tuple[int, str] | None:
    """fsync the checked PDF at `private` (whole on disk before its final name names it),
    then `publish_pdf` it. A first claim (`first`) replaces a foreign file only while its
    lease surely holds (`vouch`: rpa.queue.clock.Vouch's path; paused past it, another run
    may have published there: rpa.run.leases)."""
    with open(private, "rb") as fh:
        os.fsync(fh.fileno())
    return publish_pdf(private, final, first=first and lease_clock() < vouched_until(vouch))


def keep_download(
    private: Path, final: Path, max_bytes: int | None, *, first: bool, vouch: str
) -> bool:
    """A download that waited for its extraction when its run stopped: checked, fsynced and
    published as its extraction process would have (rpa.extract.paper), so that the next
    run adopts it instead of downloading it again. False where it cannot be (not a PDF,
    gone, --out full): it is removed with the run's other private files."""
    try:
        check_pdf(lambda: private.open("rb"), None, max_bytes)
        publish_whole(private, final, first=first, vouch=vouch)
    except Exception:  # best effort: the next run downloads it again, as before
        return False
    return True

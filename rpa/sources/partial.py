"""A file being downloaded: written (and hashed) in the I/O thread, renamed when whole."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rpa.files import AtomicFile

__all__ = ["PartialFile"]


class PartialFile:
    """The temporary file a download streams into (an `rpa.files.AtomicFile`: its name carries
    the run's id), fsynced and renamed to its final name by `commit`, and the sha256 of what
    was written. Not `checked`: neither hashed nor fsynced, only renamed (the extraction
    process checks and fsyncs it before it gets a name anyone trusts: rpa.extract.paper).
    Every method blocks: call them in the I/O pool."""

    def __init__(self, dest: Path, run_id: str, *, checked: bool = True) -> None:
        self.dest = dest
        self._file = AtomicFile(dest, run_id=run_id, sync=checked)
        self.path = self._file.temp
        self._hash = hashlib.sha256() if checked else None

    def write(self, chunks: list[bytes]) -> None:
        """Append `chunks` (handed over as received: no join on the event loop)."""
        # One write and one hash of the joined chunks: each call releases and retakes the
        # GIL, and every retake can make the event loop's thread wait for it.
        data = b"".join(chunks)
        self._file.write(data)
        if self._hash is not None:
            self._hash.update(data)

    def finish(self, chunks: list[bytes]) -> str | None:
        """The last chunks, then `commit`: one trip to the I/O pool for an ordinary PDF."""
        self.write(chunks)
        return self.commit()

    def commit(self) -> str | None:
        """fsync, rename to the final name; returns the sha256 (None: not checked)."""
        self._file.commit()
        return None if self._hash is None else self._hash.hexdigest()

    def discard(self) -> None:
        self._file.discard()

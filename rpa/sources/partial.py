"""A file being downloaded: written and hashed in the I/O thread, renamed when whole."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO

from rpa.files import temp_name

__all__ = ["PartialFile"]


class PartialFile:
    """The temporary file a download streams into (its name carries the run's id), fsynced
    and renamed to its final name by `commit`. Every method blocks: call them in the I/O pool."""

    def __init__(self, dest: Path, run_id: str) -> None:
        self.dest = dest
        self.path = dest.parent / temp_name(dest.name, run_id)
        self._fh: IO[bytes] | None = None
        self._hash = hashlib.sha256()

    def write(self, chunks: list[bytes]) -> None:
        """Append `chunks` (handed over as received: no join on the event loop)."""
        if self._fh is None:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("xb")
        # One write and one hash of the joined chunks: each call releases and retakes the
        # GIL, and every retake can make the event loop's thread wait for it.
        data = b"".join(chunks)
        self._fh.write(data)
        self._hash.update(data)

    def finish(self, chunks: list[bytes]) -> str:
        """The last chunks, then `commit`: one trip to the I/O pool for an ordinary PDF."""
        self.write(chunks)
        return self.commit()

    def commit(self) -> str:
        """fsync, rename to the final name; returns the sha256."""
        if self._fh is None:
            self.write([])
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.path, self.dest)
        return self._hash.hexdigest()

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self.path.unlink(missing_ok=True)

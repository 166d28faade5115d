"""The disk guard: claiming pauses while --out cannot take more papers' files: free space
below --min-free-mb, a folder a paper's write found full (ENOSPC, EDQUOT), or one it could not
write (a read-only mount, permissions). A folder removed under the run is made again.

Looked at before the first claim, at every heartbeat, and at once when a paper's write failed
so (`trouble`, with the folder that failed: it may be a file system of its own); in the I/O
pool (`statvfs` and a probe file are system calls on what may be a network file system). The
feeder pauses while `low` says why. A folder found full is watched until it has more free space
than when the write failed and takes a file; then claiming goes on.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from concurrent.futures import Executor
from pathlib import Path

from rpa.files import make_folder, temp_name

__all__ = ["DISK_POLL", "DiskGuard"]

#: how often the disk guard looks again while claiming is paused
DISK_POLL = 5.0


def _free(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


class DiskGuard:
    """Why claiming must pause for --out (`low`), or None."""

    def __init__(self, root: Path, out: Path, min_free_mb: float, io: Executor) -> None:
        self._root = root
        self._out = out
        self._min_free_mb = min_free_mb
        self._io = io
        #: folders a paper's write failed in -> their free bytes then (None: not writable)
        self._suspects: dict[Path, int | None] = {}
        self.low: str | None = None

    def _writable(self, folder: Path) -> str | None:
        """Why `folder` takes no file now, or None (made again if it was removed)."""
        try:
            make_folder(folder)
            probe = folder / temp_name("write-check", "")
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            probe.unlink()
        except OSError as exc:
            return str(exc.strerror or exc)
        return None

    def _look(self) -> str | None:
        paused = f"claiming paused, looking again every {DISK_POLL:g} s"
        for folder, free_then in list(self._suspects.items()):
            why = self._writable(folder)
            free_now = _free(folder)
            if why is None and free_then is not None and (free_now or 0) <= free_then:
                why = f"no space left: {free_now or 0} bytes free"
            if why is not None:
                return f"{folder} cannot be written ({why}): {paused}"
            del self._suspects[folder]
        why = self._writable(self._root)
        if why is not None:
            return f"--out {self._out} cannot be written ({why}): {paused}"
        free = _free(self._root)
        if free is None or free / 1e6 >= self._min_free_mb:
            return None
        return (
            f"free space under {self._out} is {free / 1e6:.0f} MB, below --min-free-mb "
            f"{self._min_free_mb:g}: {paused}"
        )

    async def check(self) -> str | None:
        """Look again (in the I/O pool); the reason claiming is paused, or None."""
        self.low = await asyncio.get_running_loop().run_in_executor(self._io, self._look)
        return self.low

    async def trouble(self, reason: str, folder: str | None, *, full: bool) -> None:
        """A paper's write in `folder` (None: unknown, --out) failed for want of space (`full`)
        or permission: claiming pauses now, until a look finds the folder takes files again."""
        where = Path(folder) if folder else self._root
        loop = asyncio.get_running_loop()
        # free space must grow where a write found none (unknown where: a write must pass)
        free = await loop.run_in_executor(self._io, _free, where) if full and folder else None
        self._suspects.setdefault(where, free if full else None)
        self.low = self.low or (
            f"--out {self._out} cannot be written ({reason}): claiming paused, looking again "
            f"every {DISK_POLL:g} s"
        )

"""The disk guard: claiming pauses while the free space under --out is below --min-free-mb.

Looked at before the first claim and at every heartbeat (in the I/O pool: `statvfs` is a
system call on what may be a network file system); the feeder pauses while `low` says why.
"""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import Executor
from pathlib import Path

__all__ = ["DISK_POLL", "DiskGuard"]

#: how often the disk guard looks again while claiming is paused
DISK_POLL = 5.0


class DiskGuard:
    """Why claiming must pause for want of space (`low`), or None."""

    def __init__(self, root: Path, out: Path, min_free_mb: float, io: Executor) -> None:
        self._root = root
        self._out = out
        self._min_free_mb = min_free_mb
        self._io = io
        self.low: str | None = None

    def _look(self) -> str | None:
        try:
            free_mb = shutil.disk_usage(self._root).free / 1e6
        except OSError:
            return None
        if free_mb >= self._min_free_mb:
            return None
        return (
            f"free space under {self._out} is {free_mb:.0f} MB, below --min-free-mb "
            f"{self._min_free_mb:g}: claiming paused, looking again every {DISK_POLL:g} s"
        )

    async def check(self) -> str | None:
        """Look again (in the I/O pool); the reason claiming is paused, or None."""
        self.low = await asyncio.get_running_loop().run_in_executor(self._io, self._look)
        return self.low

"""--metrics-file, rewritten every few seconds while the run goes on and once at its end.

The loop only takes the run's snapshot; the writer the CLI gave (it reads the status on its own
read-only store, renders and writes) runs in the I/O pool. A write that fails is said, and the
next one tries again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from rpa import errors
from rpa.notices import Notices
from rpa.queue import is_queue_file
from rpa.run.snapshot import RunSnapshot

__all__ = ["METRICS_INTERVAL", "MetricsFile", "check_metrics_file"]

#: how often --metrics-file is rewritten during a run, seconds (at least)
METRICS_INTERVAL = 5.0


def check_metrics_file(path: Path | str, db: str | Path) -> None:
    """Refuse a --metrics-file that would replace the queue database (ConfigError), or a file
    that is not one rpa wrote (anything but OpenMetrics text: a user's file, say). Blocking."""
    if is_queue_file(path, db):
        raise errors.ConfigError(
            f"--metrics-file {path} is the queue database's file: name another file"
        )
    target = Path(path).expanduser()
    try:
        with target.open("rb") as fh:
            head = fh.read(64)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return  # not there yet (a folder is said by the write)
    except OSError:
        return  # unreadable: the write says why
    if head and not head.startswith(b"# "):
        raise errors.ConfigError(
            f"--metrics-file {path} exists and is not a metrics file rpa wrote (it starts with "
            f"{head[:16]!r}): rpa replaces that file; name another, or remove it first"
        )


class MetricsFile:
    """Writes --metrics-file with `writer` from the snapshots `snapshot` takes."""

    def __init__(
        self,
        writer: Callable[[RunSnapshot], None],
        snapshot: Callable[[], RunSnapshot],
        io: Executor,
        notices: Notices,
    ) -> None:
        self._writer = writer
        self._snapshot = snapshot
        self._io = io
        self._notices = notices

    async def run(self) -> None:
        while True:
            took = await self.write()
            # Counting a big queue is O(jobs): keep it under ~10% of one thread.
            await asyncio.sleep(max(METRICS_INTERVAL, 10 * took))

    async def write(self) -> float:
        """Write it once; the seconds it took."""
        start = time.monotonic()
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._io, self._writer, self._snapshot()
            )
        except Exception as exc:
            self._notices.add(f"cannot write the metrics file: {exc}", key="metrics-file")
        return time.monotonic() - start

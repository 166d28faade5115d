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

from rpa.notices import Notices
from rpa.run.snapshot import RunSnapshot

__all__ = ["METRICS_INTERVAL", "MetricsFile"]

#: how often --metrics-file is rewritten during a run, seconds (at least)
METRICS_INTERVAL = 5.0


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

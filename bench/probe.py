"""A lag probe for the benchmark that keeps every sample (rpa's own keeps a bounded histogram).

The benchmark's runs are short and finite; it wants to say *when* the slow wake-ups fell.
"""

from __future__ import annotations

import asyncio

from rpa.metrics import LagProbe

__all__ = ["RecordingProbe"]


class RecordingProbe(LagProbe):
    """rpa's probe, plus the list of every sample."""

    def __init__(self) -> None:
        super().__init__()
        self.all_samples: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - start - self.interval)
            self.window.add(lag)
            self.whole_run.add(lag)
            self.all_samples.append(lag)

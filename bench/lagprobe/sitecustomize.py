"""An event-loop lag probe from outside rpa's code, injected into a Python process.

    PYTHONPATH=bench/lagprobe BENCH_LAG_OUT=lag.json rpa run ...

Python imports `sitecustomize` at start-up; this one wraps `asyncio.BaseEventLoop.
run_until_complete` so that the first loop of the process runs a sleep-drift probe from its
first iteration to its last (start-up and shutdown included): sleep 10 ms, record how late it
woke. At exit it writes every sample (with the time since the loop started) to
$BENCH_LAG_OUT. It knows nothing of rpa, and rpa knows nothing of it.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import time

_OUT = os.environ.get("BENCH_LAG_OUT")
_INTERVAL = 0.01
_samples: list[tuple[float, float]] = []
_started: list[float] = []

if _OUT:
    _original = asyncio.BaseEventLoop.run_until_complete

    async def _probe(loop: asyncio.AbstractEventLoop) -> None:
        began = loop.time()
        _started.append(time.time())
        while True:
            start = loop.time()
            await asyncio.sleep(_INTERVAL)
            now = loop.time()
            _samples.append((round(now - began, 4), max(0.0, now - start - _INTERVAL)))

    def _run_until_complete(self, future):  # type: ignore[no-untyped-def]
        probe = None
        if not _started:
            probe = self.create_task(_probe(self))
        try:
            return _original(self, future)
        finally:
            if probe is not None:
                probe.cancel()

    asyncio.BaseEventLoop.run_until_complete = _run_until_complete  # type: ignore[method-assign]

    def _write(out: str = _OUT) -> None:
        if not _started:
            return  # a child (rpa's extraction processes inherit PYTHONPATH): no loop, no file
        with open(out, "w") as fh:
            json.dump({"interval": _INTERVAL, "samples": _samples}, fh)

    atexit.register(_write)

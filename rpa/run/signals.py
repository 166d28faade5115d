"""The signals that stop a run (SIGINT, SIGTERM), caught on the event loop: one place for the
runner (a stop, then a stop at once) and a process group (passed on to its processes)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

__all__ = ["STOPS", "catch_stops", "release_stops"]

STOPS = (signal.SIGINT, signal.SIGTERM)


def catch_stops(handler: Callable[[signal.Signals], None]) -> None:
    """From now on a stop signal calls `handler(signal)` on the running loop, which only sets
    state and schedules (where the loop cannot take signals, nothing changes)."""
    loop = asyncio.get_running_loop()
    for sig in STOPS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler, sig)


def release_stops() -> None:
    """The stop signals act as before `catch_stops` again."""
    with contextlib.suppress(Exception):
        loop = asyncio.get_running_loop()
        for sig in STOPS:
            loop.remove_signal_handler(sig)

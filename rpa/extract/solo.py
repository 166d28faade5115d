"""The pool's shared/exclusive gate: many extractions at once, or one alone.

    shared()     an ordinary extraction: waits while one alone runs or waits to run
    exclusive()  an extraction alone: waits until none other is in flight, and holds the
                 others back until it is over (a waiting one goes first: no starvation)

A paper is retried alone after its process died or timed out among others (the failure
policy, rpa.run.policy): only such a run shows whether the failure is the paper's own. Counts
change without awaiting anything, so a cancellation never leaves them wrong; waiters are woken
by replacing an Event (no Condition lock to acquire in a `finally`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

__all__ = ["SoloGate"]


class SoloGate:
    """Shared or exclusive entry to the extraction pool."""

    def __init__(self) -> None:
        self.inflight = 0  # shared extractions in flight
        self.waiting = 0  # exclusive ones waiting for their turn
        self.alone = False  # an exclusive one is in flight
        self._changed = asyncio.Event()

    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            changed = self._changed
            await changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        await self._until(lambda: not (self.alone or self.waiting))
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1
            self._wake()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        self.waiting += 1
        try:
            await self._until(lambda: not (self.alone or self.inflight))
        finally:
            self.waiting -= 1
            self._wake()
        self.alone = True
        try:
            yield
        finally:
            self.alone = False
            self._wake()

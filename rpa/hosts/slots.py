"""Which task holds which request slot: the one mechanism both rate gates use.

A rate gate's slot belongs to the task that took it (`take`). The task gives it back when its
answer begins (`pop`), or with its next request; a task that ends without giving it back (a
cancelled download, a bug) gives it back then: `on_task_done` is called once the task is done.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["TaskSlots"]

T = TypeVar("T")


class TaskSlots(Generic[T]):
    """task -> its slot's value (when its request left, or the slot's number)."""

    def __init__(self, on_task_done: Callable[[asyncio.Task[object]], None]) -> None:
        self._held: dict[asyncio.Task[object], T] = {}
        self._tracked: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet()
        self._on_task_done = on_task_done

    def take(self, task: asyncio.Task[object], value: T) -> None:
        self._held[task] = value
        if task not in self._tracked:
            self._tracked.add(task)
            task.add_done_callback(self._on_task_done)

    def pop(self, task: asyncio.Task[object]) -> T | None:
        """The task's slot, now given back; None if it held none."""
        return self._held.pop(task, None)

    def __contains__(self, task: object) -> bool:
        return task in self._held

    def __len__(self) -> int:
        return len(self._held)

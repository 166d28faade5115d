"""What a run has to tell the user, said once: the bounded list of notices every part of a run
(the hosts, the memory governor, the workers) adds to, and the live table and log lines show."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

from rpa.printable import printable

__all__ = ["Notices"]


class Notices:
    """What the run has to tell the user, newest last: a bounded list, and `on_new` called
    with each new one (to print it when no live table shows it). `key` lets a notice be said
    once (a wait that goes on is said once, not every second)."""

    def __init__(self, on_new: Callable[[str], None] | None = None, keep: int = 100) -> None:
        self._recent: deque[str] = deque(maxlen=keep)
        self._said: OrderedDict[str, str] = OrderedDict()  # key -> its notice
        self.on_new = on_new

    def add(self, text: str, *, key: str | None = None) -> None:
        text = printable(text)  # notices carry hosts' and servers' words
        if key is not None:
            if key in self._said:
                return
            self._said[key] = text
            while len(self._said) > 1000:
                self._said.popitem(last=False)
        self._recent.append(text)
        if self.on_new is not None:
            self.on_new(text)

    def forget(self, key: str) -> None:
        """Let the notice of `key` be said again (the condition ended)."""
        self._said.pop(key, None)

    def withdraw(self, key: str) -> None:
        """The notice of `key` no longer holds (a stop, once the run has stopped): out of
        `recent` (the summary's messages), and it may be said again."""
        text = self._said.pop(key, None)
        if text is not None and text in self._recent:
            self._recent.remove(text)

    def recent(self, n: int) -> list[str]:
        return list(self._recent)[-n:]

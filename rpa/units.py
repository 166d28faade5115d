"""Quantities in the words the user reads them in: the one helper for each unit, used by the
core's notices and the display alike."""

from __future__ import annotations

__all__ = ["count", "gib"]


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and its noun, plural but for one ('1 paper', '2 papers', '0 papers')."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def gib(n: int) -> str:
    """Bytes as GiB with two decimals ('1.25')."""
    return f"{n / 2**30:.2f}"

"""Quantities in the words the user reads them in: the one helper for each unit, used by the
core's notices and the display alike."""

from __future__ import annotations

__all__ = ["gib"]


def gib(n: int) -> str:
    """Bytes as GiB with two decimals ('1.25')."""
    return f"{n / 2**30:.2f}"

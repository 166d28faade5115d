"""`rpa failures` as lines: each paper failed for good, then its reason whole (wrapped)."""

from __future__ import annotations

import json
from typing import Any

from rpa.show.fmt import WIDTH, Line, Lines, clip, when, wrap
from rpa.units import count

__all__ = ["failure_json", "failure_lines"]


def failure_lines(paper: dict[str, Any]) -> Lines:
    """One failed paper: ID, kind, attempts, stage, last try on a line; the reason under it,
    whole."""
    n = paper["attempts"]
    head = (
        f"{paper['id']}  {paper['kind'] or 'unknown'}  {count(n, 'attempt')}  "
        f"at {paper['stage'] or '—'}  last try {when(paper['last_try'])}"
    )
    lines: list[Line] = [[(clip(head, WIDTH), "bold")]]
    lines += [[("    ", ""), *line] for line in wrap(paper["reason"] or "", "yellow", width=76)]
    return Lines(lines)


def failure_json(paper: dict[str, Any]) -> str:
    """One failed paper as a JSON line (`rpa failures --json`)."""
    return json.dumps(paper, separators=(",", ":"))

"""What every source gives the download stage: a `Download`, through `Source.fetch`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["Download", "Source"]


@dataclass(frozen=True, slots=True)
class Download:
    """A PDF that is whole and checked at `path`."""

    path: str
    bytes: int
    sha256: str
    final_url: str
    status: int
    seconds: float
    #: seconds spent waiting at host gates (rate caps, cooldowns) before the requests left
    gate_wait: float = 0.0


class Source(Protocol):
    #: does it go through the download gate (a network source)?
    network: bool

    async def fetch(self, job_id: str, dest: Path) -> Download:
        """Bring the PDF of `job_id` to a checked file (at `dest`, or where it already is);
        raises a rpa.errors.JobError on any failure."""
        ...

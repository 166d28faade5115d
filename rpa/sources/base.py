"""What every source gives the download stage: a `Download`, through `Source.fetch`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rpa import errors

__all__ = ["Download", "Source", "Vanished"]


class Vanished(errors.TransientIo):
    """The file a download was being written to was removed under rpa (--out's files deleted,
    its folder removed): no fault of the paper nor of its host. The job processor downloads
    it again, once, uncounted, and says so (rpa.run.job); a second one in a row is what it
    is, a counted `io_error` (its kind is TransientIo's: not a kind of its own in the queue,
    nor in rpa.errors' table of kinds, which is made before this class exists)."""


@dataclass(frozen=True, slots=True)
class Download:
    """A PDF that is whole at `path`: checked (its sha256 known), or to be checked where it
    is worked on (`check` says how: rpa.extract.paper; its sha256 is then None)."""

    path: str
    bytes: int
    sha256: str | None
    final_url: str
    status: int
    seconds: float
    #: seconds spent waiting at host gates (rate caps, cooldowns) before the requests left
    gate_wait: float = 0.0
    #: "" when checked here; else how the extraction process checks it ("download": a
    #: private file to publish, "local": a file that must lie in `folder`, "tar")
    check: str = ""
    folder: str | None = None


class Source(Protocol):
    #: does it go through the download gate (a network source)?
    network: bool

    async def fetch(self, job_id: str, dest: Path) -> Download:
        """Bring the PDF of `job_id` to a checked file (at `dest`, or where it already is);
        raises a rpa.errors.JobError on any failure (`Vanished`: its file removed meanwhile)."""
        ...

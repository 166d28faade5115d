"""Publishing a job's files under their final names so that a stale holder never replaces a
newer record, whenever it is paused.

A worker whose lease was taken by another run (its process paused past its lease, its run
found dead) may still be anywhere in its work when it resumes. Two rules make that harmless:

- **PDFs are never replaced.** A download goes to a private name (a temporary name carrying
  the run's id), and is given its final name by a hard link, which fails when a file is
  already there. Final names only ever hold whole, checked PDFs of their paper; a PDF already
  there is kept (adopted), and the job records the size and sha256 of the file that is there.
  Whoever publishes first, the file on disk and the queue's record agree, and no later holder
  can change the file under a record. One exception: a job's first claim replaces a file at
  its final name (it can only be foreign: another queue's, in a reused --out), but only while
  its lease surely holds by this host's elapsed time since the claim or the heartbeat that
  last renewed it (rpa.run.leases): a first holder paused past its lease (whose job another
  run may have done meanwhile) adopts the file there like any later holder. And a file
  system without hard links falls back to a rename when nothing is there.
- **An outcome file is renamed into place only by the holder whose fenced `complete`
  committed.** The record is written whole to a private name first; `complete` either commits
  (then the file is renamed to its final name) or finds the lease lost (then the file is
  deleted). A done job is never done again, so no one else writes that name afterwards. A
  run that dies between its commit and its rename leaves its record under the private name:
  the next run's start-up (`leftover_outcomes`, then `publish_record` for those the queue
  says that run completed) renames it into place before the temporaries of dead runs are
  removed.

Blocking, all of it: the I/O pool's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from rpa.extract.record import write_record
from rpa.files import temp_owner
from rpa.layout import Layout
from rpa.queue import jobs
from rpa.queue.aio import AsyncQueue
from rpa.sources.publish import private_name, publish_pdf

__all__ = [
    "discard",
    "leftover_outcomes",
    "prepare_out",
    "private_name",
    "publish_pdf",
    "publish_record",
    "stage_record",
]


def stage_record(final: Path, record: dict[str, Any], run_id: str) -> Path:
    """Write `record` whole (fsynced) under a private name beside `final`; that name."""
    if final.is_dir():  # found now, before the commit: the rename after it would fail
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(final))
    private = private_name(final, run_id)
    write_record(private, record, run_id=run_id)
    return private


def publish_record(private: Path, final: Path) -> None:
    """Rename a committed record into place. Already gone: a start-up repaired it."""
    with contextlib.suppress(FileNotFoundError):
        os.replace(private, final)


def discard(private: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        private.unlink()


def leftover_outcomes(outcome_root: Path, live: set[str]) -> list[tuple[Path, str, str]]:
    """(path, job id, run id) of whole records that runs not in `live` staged and did not
    rename: the ones a commit may have made the truth."""
    found: list[tuple[Path, str, str]] = []
    if not outcome_root.is_dir():
        return found
    for folder in (p for p in outcome_root.iterdir() if p.is_dir()):
        for entry in os.scandir(folder):
            owner = temp_owner(entry.name)
            if not owner or owner in live or not entry.name.endswith(".json"):
                continue
            try:
                record = json.loads(Path(entry.path).read_text(encoding="utf-8"))
                found.append((Path(entry.path), str(record["id"]), str(record["run_id"])))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # half written, or not a record: the start-up removes it
    return found


async def prepare_out(queue: AsyncQueue, layout: Layout, live: set[str], io: Executor) -> int:
    """At a run's start: rename into place every record a dead run committed but did not
    rename, then prepare --out (rpa.layout: the temporaries of dead runs are removed). How
    many records were repaired."""
    loop = asyncio.get_running_loop()
    found = await loop.run_in_executor(io, leftover_outcomes, layout.root / "outcome", live)
    committed = await queue.run(jobs.completed_by, sorted({job_id for _, job_id, _ in found}))
    repaired = 0
    for private, job_id, run_id in found:
        if committed.get(job_id) == run_id:
            await loop.run_in_executor(io, publish_record, private, layout.outcome_path(job_id))
            repaired += 1
    await loop.run_in_executor(io, layout.prepare, live)
    return repaired

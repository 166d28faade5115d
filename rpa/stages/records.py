"""A paper's outcome file, rewritten with its stages' results, and repaired after a kill.

The queue is the truth: a stage's result is merged into the paper's record there, in the
transaction that marks the stage done (rpa.stages.store.complete); the outcome file under
--out is a copy, rewritten whole afterwards (fsynced, renamed into place). A kill between
the commit and the rename would leave the file without the result, so the lane notes the
paper first, in a journal folder beside the outcome files (OUT/.rpa-stages/, one small file
a rewrite in flight: `<run id>.<random>`, holding the paper's id), and removes the note once
the file is in place. A run's stage phase starts by rewriting, from the queue, the record of
every paper noted by a run that is not live (`repair`), then removes those notes.

Two stages of one paper may finish together (in this run's I/O threads, or in two processes
of a fleet), and their rewrites land in either order: the file would keep the record of the
commit that came first. So a rewrite is settled (`settle`): after its rename, the queue's
record is read again and, if it has changed, written again. The last rename of all is then
followed by a read that finds nothing newer, so the file ends as the queue's newest record.

The note is not fsynced: it outlives a kill, not every power cut (a record may then miss the
last results its queue holds; `rpa export` reads the queue). Blocking, all of it but
`repair`: the I/O pool's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from rpa.files import fsync_folder, temp_name
from rpa.queue import runs
from rpa.queue.aio import AsyncQueue
from rpa.queue.store import QueueStore
from rpa.stages.store import record_of

__all__ = ["JOURNAL", "mark", "noted", "repair", "rewrite", "settle", "unmark"]

#: rewrites a settle makes at most (each one follows another stage's commit of the paper)
SETTLE_ROUNDS = 8

#: the journal's folder under --out
JOURNAL = ".rpa-stages"


def mark(out: Path, run_id: str, job_id: str) -> Path | None:
    """Note that `job_id`'s record is about to be rewritten; the note (None if it could not
    be written: the rewrite goes on, unjournaled, as a disk guard pause may explain)."""
    folder = out / JOURNAL
    note = folder / f"{run_id}.{secrets.token_hex(6)}"
    try:
        folder.mkdir(exist_ok=True)
        note.write_text(json.dumps({"id": job_id}), encoding="utf-8")
    except OSError:
        return None
    return note


def unmark(note: Path | None) -> None:
    if note is not None:
        with contextlib.suppress(FileNotFoundError):
            note.unlink()


def rewrite(path: Path, record: dict[str, Any], run_id: str, note: Path | None) -> None:
    """Rewrite the paper's record whole (fsync, rename), then drop its note. The temporary
    name does not end in .json: a start-up takes a dead run's `*.json` temporaries for outcome
    records its commit may have made the truth (rpa.run.publish), and this one is not."""
    temp = path.parent / temp_name(path.name + ".stages", run_id)
    data = json.dumps(record, ensure_ascii=False, indent=1).encode("utf-8")
    try:
        with temp.open("xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_folder(path.parent)
    unmark(note)


async def settle(
    queue: AsyncQueue,
    io: Executor,
    path: Path,
    job_id: str,
    record: dict[str, Any],
    run_id: str,
    note: Path | None,
) -> None:
    """Rewrite the paper's record from `record` (what this stage's commit returned), then
    again from the queue for as long as the queue's record differs from what was written (see
    the module's doc); the note is dropped at the end. Raises OSError as `rewrite` does."""
    loop = asyncio.get_running_loop()
    for _ in range(SETTLE_ROUNDS):
        await loop.run_in_executor(io, rewrite, path, record, run_id, None)
        newest = await queue.run(record_of, job_id)
        if newest is None or newest == record:
            break
        record = newest
    await loop.run_in_executor(io, unmark, note)


def noted(out: Path) -> bool:
    """Is any record noted (by any run): a run must start, if only to repair it?"""
    try:
        with os.scandir(out / JOURNAL) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


def _leftovers(out: Path, live: set[str]) -> list[tuple[Path, str]]:
    """(note, job id) of the notes of runs not in `live`."""
    found: list[tuple[Path, str]] = []
    folder = out / JOURNAL
    if not folder.is_dir():
        return found
    for entry in os.scandir(folder):
        owner = entry.name.split(".", 1)[0]
        if owner in live:
            continue
        try:
            found.append((Path(entry.path), str(json.loads(Path(entry.path).read_text())["id"])))
        except (OSError, ValueError, KeyError, TypeError):
            unmark(Path(entry.path))  # half written: its rewrite had not begun
    return found


def _records(store: QueueStore, ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """job id -> (its outcome path, its record in the queue), for done papers of `ids`."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for job_id in ids:
        row = store.sql.one(
            "SELECT j.outcome_path, r.outcome_json FROM jobs j JOIN results r ON r.id = j.id "
            "WHERE j.id = ? AND j.stage = 'done'",
            (job_id,),
        )
        if row and row["outcome_path"] and row["outcome_json"]:
            out[job_id] = (row["outcome_path"], json.loads(row["outcome_json"]))
    return out


async def repair(queue: AsyncQueue, io: Executor, out: Path, run_id: str) -> int:
    """Rewrite, from the queue, the records that runs no longer live noted and may not have
    rewritten; remove their notes. How many records were rewritten."""
    loop = asyncio.get_running_loop()
    live = await queue.run(runs.live_runs)
    found = await loop.run_in_executor(io, _leftovers, out, live)
    if not found:
        return 0
    records = await queue.run(_records, sorted({job_id for _, job_id in found}))
    rewritten: set[str] = set()
    for note, job_id in found:
        if job_id in records and job_id not in rewritten:
            path, record = records[job_id]
            try:
                await loop.run_in_executor(io, rewrite, Path(path), record, run_id, None)
            except OSError:  # its folder cannot be written now: the note stays for the next
                continue
            rewritten.add(job_id)
        await loop.run_in_executor(io, unmark, note)
    return len(rewritten)

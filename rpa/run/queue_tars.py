"""Bulk tars into the queue: index their members once, then queue their papers (all of them,
or the listed ones that are present, saying which are missing). Runs before the event loop."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rpa.errors import InputError, InvalidIdError
from rpa.idlist import iter_key_batches
from rpa.ids import parse_id
from rpa.queue import catalog
from rpa.queue.store import QueueStore
from rpa.sources.tar import scan_tar, tar_files

__all__ = ["TarReport", "queue_from_tars"]

#: listed IDs that are in no tar, kept for the report
MAX_MISSING = 20
BATCH = 10_000


@dataclass(slots=True)
class TarReport:
    tars: int = 0
    indexed: int = 0  # tars indexed by this call (the others were already)
    members: int = 0  # papers in all the tars
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (tar, why its scan stopped)
    new: int = 0  # jobs queued now
    listed: int | None = None  # valid IDs in the list, when there was one
    invalid: int = 0
    missing: int = 0  # listed IDs in none of the tars
    missing_sample: list[str] = field(default_factory=list)
    #: listed IDs naming a version the tars' member does not (queued as the member's)
    other_version: int = 0
    other_version_sample: list[tuple[str, str]] = field(default_factory=list)  # (listed, queued)
    seconds: float = 0.0


def _index(store: QueueStore, pattern: str, report: TarReport) -> None:
    paths = tar_files(pattern)
    if not paths:
        raise InputError(f"--pdf-tar {pattern!r} matches no file")
    report.tars = len(paths)
    for path in paths:
        stat = path.stat()
        key = str(path.resolve())
        known = catalog.tar_indexed(store, key)
        if known is not None and known[:2] == (stat.st_size, stat.st_mtime):
            if known[2]:  # indexed before: what was wrong with it still is
                report.damaged.append((str(path), known[2]))
            continue
        members, error = scan_tar(path)
        # recorded with its absolute path: a checkpoint names the tar wherever rpa runs
        members = [m.__class__(m.base, m.version, key, m.name, m.offset, m.size) for m in members]
        catalog.index_tar(store, key, stat.st_size, stat.st_mtime, members, error, time.time())
        report.indexed += 1
        if error:
            report.damaged.append((str(path), error))
    report.members = sum(
        int(r["members"] or 0)
        for r in store.sql.rows("SELECT members FROM tars WHERE path IN ("
                                + ", ".join("?" * len(paths)) + ")",
                                tuple(str(p.resolve()) for p in paths))
    )  # fmt: skip


def queue_from_tars(
    store: QueueStore,
    pattern: str,
    ids: Path | None,
    *,
    on_invalid: Callable[[InvalidIdError], None] | None = None,
) -> TarReport:
    """Index the tars `pattern` names (each once: again only when its size or mtime changed),
        then queue every paper in them, or, with an ID list, the listed ones they hold (under the
    key of the tars' member: `2301.00001v2` listed, `2301.00001` held, `2301.00001` queued)."""
    start = time.perf_counter()
    report = TarReport()
    _index(store, os.path.expanduser(pattern), report)
    if ids is None:
        after = ""
        while keys := catalog.tar_keys(store, after, BATCH):
            report.new += store.enqueue(keys, time.time())
            after = parse_id(keys[-1]).base
    else:
        report.listed = 0
        for batch in iter_key_batches(ids, BATCH):
            report.invalid += len(batch.errors)
            if on_invalid is not None:
                for error in batch.errors:
                    on_invalid(error)
            bases = {key: parse_id(key).base for key in batch.keys}
            # a paper is queued under the key its member gives (the tars hold one version),
            # so a later run of all the tars' papers finds it queued already
            held = catalog.tar_keys_for(store, list(set(bases.values())))
            found = list(dict.fromkeys(held[b] for b in bases.values() if b in held))
            lost = [key for key in batch.keys if bases[key] not in held]
            other = [(k, held[bases[k]]) for k in batch.keys
                     if bases[k] in held and k != bases[k] and held[bases[k]] != k]  # fmt: skip
            report.other_version += len(other)
            shown = report.other_version_sample
            shown.extend(other[: MAX_MISSING - len(shown)])
            report.listed += len(batch.keys)
            report.missing += len(lost)
            report.missing_sample.extend(lost[: MAX_MISSING - len(report.missing_sample)])
            report.new += store.enqueue(found, time.time())
    report.seconds = time.perf_counter() - start
    return report

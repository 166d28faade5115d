"""`--metadata-file`: arXiv's metadata file (its OAI snapshot) joined to the queue before the run.

The queue's arXiv IDs without stored metadata are gathered (their IDs only: memory in the
queue's size, not the file's), the file is streamed once, and each wanted paper's
metadata is stored, a thousand at a time, as the metadata stage's checkpoint. Blocking: it runs
before the event loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rpa.errors import InputError
from rpa.ids import parse_id
from rpa.queue import catalog
from rpa.queue.store import QueueStore
from rpa.sources.metadata_file import iter_metadata_file

__all__ = ["MetadataFileReport", "join_metadata_file"]

PAGE = 10_000
FLUSH = 1_000


@dataclass(frozen=True, slots=True)
class MetadataFileReport:
    wanted: int  # arXiv papers of the queue without metadata
    found: int
    seconds: float


def join_metadata_file(store: QueueStore, path: Path) -> MetadataFileReport:
    start = time.perf_counter()
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "not there"
        raise InputError(f"--metadata-file {path} is {what}")
    needed: set[str] = set()
    after = ""
    while ids := catalog.job_ids(store, after, PAGE):
        bases = {p.base for p in map(parse_id, ids) if p.is_arxiv}
        bases -= set(catalog.metadata_for(store, list(bases)))
        needed |= bases
        after = ids[-1]
    wanted = len(needed)
    if not needed:  # every paper has its metadata: the file (gigabytes) need not be read
        return MetadataFileReport(0, 0, time.perf_counter() - start)
    found = 0
    batch = []
    for paper in iter_metadata_file(path, needed.__contains__):
        needed.discard(paper.id)
        batch.append(paper.to_json())
        if len(batch) >= FLUSH:
            catalog.store_metadata(store, batch, time.time())
            found += len(batch)
            batch = []
        if not needed:
            break
    catalog.store_metadata(store, batch, time.time())
    found += len(batch)
    return MetadataFileReport(wanted, found, time.perf_counter() - start)

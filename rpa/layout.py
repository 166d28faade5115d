"""Where files go under --out: paths, shards, the folders and the temporaries of dead runs.

    OUT/pdf/<shard>/<name>.pdf        downloaded PDFs (final names hold only whole, checked files)
    OUT/text/<shard>/<name>.txt       extracted text with [PAGE n] markers
    OUT/outcome/<shard>/<name>.json   the key-outcome record
    OUT/.rpa-queue                    the id of the queue whose results these are

An --out belongs to one queue: the marker names it, and another queue is refused there (two
queues in one folder replaced each other's files for the same IDs, each record then naming a
PDF the other had written: an adversary's trial). A folder without one is taken by the first
queue that runs there.

<name> is `ids.storage_name(key)`, a checked single path component, so no input can write
outside OUT; <shard> (the yymm of the ID, or archive_yymm, or "ext") keeps folders small.

What goes into those files is others' work: the download (rpa.sources, and rpa.sources.stored
for a PDF an earlier run left), the text (rpa.extract.pdf), the record (rpa.extract.record).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path

from rpa.errors import ConfigError
from rpa.files import LEGACY_OWNER, atomic_write, make_folder, temp_owner
from rpa.ids import storage_name

__all__ = [
    "KINDS",
    "OWNER",
    "Layout",
    "check_out_folder",
    "check_owner",
    "mark_owner",
    "shard",
    "unmark_owner",
]

_NEW = re.compile(r"^(\d{4})\.")
_OLD = re.compile(r"^([a-z-]+)(?:\.[A-Za-z-]+)?/(\d{4})")
KINDS = ("pdf", "text", "outcome")


def shard(key: str) -> str:
    """The subfolder of `key`'s files: yymm (new-style IDs), archive_yymm (old-style), "ext"."""
    if m := _NEW.match(key):
        return m.group(1)
    if m := _OLD.match(key):
        return f"{m.group(1)}_{m.group(2)}"
    return "ext"


def check_out_folder(root: Path) -> None:
    """Refuse an --out that cannot be used, before any work: a file in its place, a folder
    rpa may not write (a read-only mount, permissions). Creates it when missing. Blocking."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out {root} is a file, not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".rpa-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {root} cannot be written: {exc.strerror or exc}") from None


#: the file under --out naming the queue it belongs to
OWNER = ".rpa-queue"


def _owner_of(root: Path) -> str | None:
    """The queue id the marker under `root` names (None: no marker)."""
    try:
        words = (root / OWNER).read_text(encoding="utf-8", errors="replace").split()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return words[0] if words else ""


def check_owner(root: Path, queue_id: str, queue: str) -> None:
    """Refuse `root` when its marker names another queue than `queue_id` (`queue`: how to
    name this one). Blocking."""
    owner = _owner_of(root)
    if owner is not None and owner != queue_id:
        raise ConfigError(
            f"--out {root} holds the results of another queue (its {OWNER} names queue "
            f"{owner or '?'}; this queue, {queue}, is {queue_id}): one folder holds one "
            f"queue's files. Give this queue another --out; or, if you are done with that "
            f"queue (deleted it), remove {root / OWNER} and its files may be replaced"
        )


def mark_owner(root: Path, queue_id: str, queue: str) -> None:
    """Mark `root` as `queue_id`'s, unless it is marked already. Blocking."""
    if _owner_of(root) is None:
        atomic_write(
            root / OWNER,
            f"{queue_id}\n# the id of the rpa queue whose results these are: {queue}\n",
        )


def unmark_owner(root: Path, queue_id: str) -> None:
    """Remove the marker when it names `queue_id` (its queue was deleted). Blocking."""
    if _owner_of(root) == queue_id:
        (root / OWNER).unlink(missing_ok=True)


@functools.lru_cache(maxsize=4096)
def _path(root: Path, kind: str, key: str, suffix: str) -> Path:
    """A paper's file; remembered, as a run asks for each of its paths several times (the
    key's check and three joins were ~0.05 ms of the main process's CPU a paper)."""
    return root / kind / shard(key) / f"{storage_name(key)}{suffix}"


class Layout:
    """Paths under the output folder, and its preparation for a run."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return _path(self.root, kind, key, suffix)

    def pdf_path(self, key: str) -> Path:
        return self._path("pdf", key, ".pdf")

    def text_path(self, key: str) -> Path:
        return self._path("text", key, ".txt")

    def outcome_path(self, key: str) -> Path:
        return self._path("outcome", key, ".json")

    def _temporaries(self) -> Iterator[tuple[os.DirEntry[str], str]]:
        for kind in KINDS:
            base = self.root / kind
            if not base.is_dir():
                continue
            for folder in (base, *(p for p in base.iterdir() if p.is_dir())):
                for entry in os.scandir(folder):
                    owner = temp_owner(entry.name)
                    if owner is not None and entry.is_file():
                        yield entry, owner

    def prepare(self, live_runs: set[str]) -> int:
        """Create the folders; delete the temporary files of runs that are not live (a
        crashed run's half-written files). A file of a live run is never touched; files
        named the old way (no run id) are removed only when no other run is live."""
        for kind in KINDS:
            make_folder(self.root / kind)
        removed = 0
        for entry, owner in list(self._temporaries()):
            if owner in live_runs or (owner == LEGACY_OWNER and live_runs):
                continue
            try:
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:  # its run finished it (or removed it) meanwhile
                pass
        return removed

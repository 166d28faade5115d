"""Where files go under --out: paths, shards, the folders and the temporaries of dead runs.

    OUT/pdf/<shard>/<name>.pdf        downloaded PDFs (final names hold only whole, checked files)
    OUT/text/<shard>/<name>.txt       extracted text with [PAGE n] markers
    OUT/outcome/<shard>/<name>.json   the key-outcome record

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
from rpa.files import LEGACY_OWNER, make_folder, temp_owner
from rpa.ids import storage_name

__all__ = ["KINDS", "Layout", "check_out_folder", "shard"]

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

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

import errno
import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path

from rpa.errors import ConfigError
from rpa.files import LEGACY_OWNER, atomic_write, make_folder, temp_name, temp_owner
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


_NAMED = "# the rpa queue whose results these are: "


def _owner_of(root: Path) -> tuple[str, str] | None:
    """(the queue id, where that queue is) the marker under `root` names (None: no marker)."""
    try:
        text = (root / OWNER).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    words = text.split()
    where = next((ln[len(_NAMED) :] for ln in text.splitlines() if ln.startswith(_NAMED)), "")
    return (words[0] if words else "", where.strip())


def _gone(where: str) -> bool:
    """Is the queue a marker names surely gone (a SQLite file no longer there)? A server's
    queue cannot be told gone from here: it is not."""
    return bool(where) and "://" not in where and not Path(where).exists()


def check_owner(root: Path, queue_id: str, queue: str) -> str | None:
    """Refuse `root` when its marker names another queue than `queue_id` (`queue`: where this
    one is) that is still there (ConfigError); a marker of a queue that is gone (its SQLite
    file deleted: starting over) is taken over, said by the note returned. Blocking."""
    owner = _owner_of(root)
    if owner is None or owner[0] == queue_id:
        return None
    other, where = owner
    if _gone(where):
        _write_owner(root, queue_id, queue, replace=True)
        return f"--out {root} was the results of the queue {where}, which is gone: now {queue}'s"
    raise ConfigError(
        f"--out {root} holds the results of another queue ({where or other}; its {OWNER} "
        f"says so): one folder holds one queue's files. Give this queue ({queue}) another "
        f"--out; or, if you are done with that queue, remove {root / OWNER} and its files "
        "may be replaced"
    )


def mark_owner(root: Path, queue_id: str, queue: str) -> None:
    """Mark `root` as `queue_id`'s unless it is marked already; another queue that marked it
    meanwhile (two queues starting on one new folder) is refused, as by `check_owner`."""
    if _owner_of(root) is None and not _write_owner(root, queue_id, queue, replace=False):
        check_owner(root, queue_id, queue)


def _write_owner(root: Path, queue_id: str, queue: str, *, replace: bool) -> bool:
    """Write the marker (whole: a temporary file renamed, or linked when it must not replace
    one); False when one was there already and `replace` is not set."""
    temp = root / temp_name(OWNER, "")
    atomic_write(temp, f"{queue_id}\n{_NAMED}{queue}\n", make_folder=False)
    try:
        if replace:
            os.replace(temp, root / OWNER)
            return True
        os.link(temp, root / OWNER)
        return True
    except FileExistsError:
        return False
    except OSError as exc:  # a file system without hard links: a rename, if none is there
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV) or (root / OWNER).exists():
            raise
        os.replace(temp, root / OWNER)
        return True
    finally:
        temp.unlink(missing_ok=True)


def unmark_owner(root: Path, queue_id: str) -> None:
    """Remove the marker when it names `queue_id` (its queue was deleted). Blocking."""
    owner = _owner_of(root)
    if owner is not None and owner[0] == queue_id:
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

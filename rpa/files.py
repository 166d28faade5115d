"""File mechanisms every part uses: atomic writes and temporary names that carry their run.

Every file rpa leaves under --out (or writes for others: the metrics file) appears under its
final name only when it is whole: written to a temporary file in the same folder, fsynced,
renamed, and the folder fsynced (so the rename, and a folder made for it, survive a power cut:
the queue records a file only after `commit` returns). A temporary name says which run wrote it,

    .rpa-tmp.<run id>.<random>.<final name>

so a run that starts next to a live one removes only the leftovers of dead runs
(`temp_owner`), never a file another run is writing.

One mechanism, three forms:

    atomic_write(path, data)             the whole content at once
    with atomic_file(path) as fh: ...    streamed: committed when the block ends normally
    AtomicFile(path) .write .commit      streamed over several calls (a download: each call
                 .discard                 is one trip to the I/O pool)

All of them block: call them from a worker thread or process, never on the event loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "LEGACY_OWNER",
    "TEMP_PREFIX",
    "AtomicFile",
    "atomic_file",
    "atomic_write",
    "fsync_folder",
    "make_folder",
    "sync_filesystem",
    "temp_name",
    "temp_owner",
]

TEMP_PREFIX = ".rpa-tmp."
#: a temporary name's owner when it was written by an rpa older than run-tagged names
LEGACY_OWNER = ""
#: the permission bits `open(..., "xb")` creates a file with (before the umask)
_CREATE_MODE = 0o666


def temp_name(final_name: str, run_id: str) -> str:
    """The temporary name for `final_name`, written by run `run_id` ('' outside a run)."""
    return f"{TEMP_PREFIX}{run_id or 'none'}.{secrets.token_hex(4)}.{final_name}"


def temp_owner(name: str) -> str | None:
    """The run that wrote the temporary file `name`; LEGACY_OWNER for the names older rpas
    used (`.tmp-*`, `.rpa-*.tmp`), None when `name` is not a temporary file at all."""
    if name.startswith(TEMP_PREFIX):
        parts = name[len(TEMP_PREFIX) :].split(".", 2)
        return parts[0] if len(parts) == 3 else LEGACY_OWNER
    if name.startswith(".tmp-") or (name.startswith(".rpa-") and name.endswith(".tmp")):
        return LEGACY_OWNER
    return None


def fsync_folder(folder: Path) -> None:
    """Make the names in `folder` (a rename, a new file or folder) durable. Where a folder
    cannot be opened for it (not Linux, say), this does nothing."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return
    try:
        os.fsync(fd)
    except OSError:  # a file system without directory fsync: nothing more to do
        pass
    finally:
        os.close(fd)


def sync_filesystem(folder: Path) -> None:
    """Make everything written to the file system that holds `folder` durable: syncfs(2) on
    Linux (one call for a whole batch of files written without their own fsync), else
    os.sync(). Blocking: the I/O pool's work."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        syncfs = getattr(_libc(), "syncfs", None)
        if syncfs is None:
            os.sync()
        elif syncfs(fd) != 0:
            errno_ = ctypes.get_errno()
            raise OSError(errno_, os.strerror(errno_), str(folder))
    finally:
        os.close(fd)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def make_folder(folder: Path) -> None:
    """`mkdir -p folder`, each folder it makes made durable in its parent."""
    if folder.is_dir():
        return
    if folder.parent != folder:
        make_folder(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:
        if not folder.is_dir():
            raise
        return
    fsync_folder(folder.parent)


class AtomicFile:
    """A file written under a temporary name beside `path` (it carries `run_id`), and renamed
    to `path` by `commit` once flushed and fsynced; `discard` removes it instead.

    `sync` False: no fsync (whoever trusts the file later makes it durable first).
    The temporary file is created at the first `open` or `write` (the folder first, unless
    `make_folder` is False) with `create_mode` before the umask; `mode`, when given, is set
    by chmod just before the rename. Blocking, every method.
    """

    def __init__(
        self,
        path: Path,
        *,
        run_id: str = "",
        mode: int | None = None,
        create_mode: int = _CREATE_MODE,
        make_folder: bool = True,
        sync: bool = True,
    ) -> None:
        self.path = path
        self.temp = path.parent / temp_name(path.name, run_id)
        self._sync = sync
        self._mode = mode
        self._create_mode = create_mode
        self._make_folder = make_folder
        self._fh: IO[bytes] | None = None

    def open(self) -> IO[bytes]:
        """The temporary file, created now if it is not yet."""
        if self._fh is None:
            if self._make_folder:
                make_folder(self.path.parent)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            fd = os.open(self.temp, flags, self._create_mode)
            self._fh = os.fdopen(fd, "wb")
        return self._fh

    def write(self, data: bytes) -> None:
        with self._naming():
            self.open().write(data)

    @contextlib.contextmanager
    def _naming(self) -> Iterator[None]:
        """An OSError of a write or a flush names no file: name the temporary one (the disk
        guard watches the folder a write failed in)."""
        try:
            yield
        except OSError as exc:
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, str(self.temp)) from exc
            raise

    def commit(self) -> None:
        """Flush, fsync, close, then rename to the final name (an empty file if nothing was
        written)."""
        fh = self.open()
        with self._naming():
            fh.flush()
            if self._sync:
                os.fsync(fh.fileno())
            fh.close()
        if self._mode is not None:
            os.chmod(self.temp, self._mode)
        os.replace(self.temp, self.path)
        if self._sync:
            fsync_folder(self.path.parent)

    def discard(self) -> None:
        """Close and remove the temporary file (quietly: this is the clean-up of a failure)."""
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
        with contextlib.suppress(OSError):
            self.temp.unlink()


@contextlib.contextmanager
def atomic_file(
    path: Path,
    *,
    run_id: str = "",
    mode: int | None = None,
    create_mode: int = _CREATE_MODE,
    make_folder: bool = True,
    sync: bool = True,
) -> Iterator[IO[bytes]]:
    """Yield the temporary file of an `AtomicFile`: committed (fsync, rename) when the block
    ends normally, discarded when it raises."""
    target = AtomicFile(
        path, run_id=run_id, mode=mode, create_mode=create_mode, make_folder=make_folder,
        sync=sync,
    )  # fmt: skip
    try:
        yield target.open()
        target.commit()
    except BaseException as exc:
        target.discard()
        if isinstance(exc, OSError) and exc.filename is None:
            # a write's or an fsync's error names no file: name it, so that a full disk's
            # folder is known (rpa.classify) and the disk guard watches that folder
            exc.filename = str(path)
        raise


def atomic_write(
    path: Path,
    data: bytes | str,
    *,
    run_id: str = "",
    mode: int | None = None,
    make_folder: bool = True,
    sync: bool = True,
) -> None:
    """Write `data` (a str as UTF-8) to `path` whole or not at all (see `atomic_file`)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path, run_id=run_id, mode=mode, make_folder=make_folder, sync=sync) as fh:
        fh.write(payload)

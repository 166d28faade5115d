"""File mechanisms every part uses: atomic writes, temporary names that carry their run, sha256.

Every file rpa leaves under --out (or writes for others: the metrics file) appears under its
final name only when it is whole: written to a temporary file in the same folder, fsynced,
renamed. A temporary name says which run wrote it,

    .rpa-tmp.<run id>.<random>.<final name>

so a run that starts next to a live one removes only the leftovers of dead runs
(`temp_owner`), never a file another run is writing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path

__all__ = [
    "PDF_MAGIC",
    "SNIFF_BYTES",
    "TEMP_PREFIX",
    "atomic_write",
    "sha256_file",
    "sniff_pdf",
    "start_of",
    "temp_name",
    "temp_owner",
]

PDF_MAGIC = b"%PDF-"
#: the PDF spec lets readers accept the header anywhere in the first 1024 bytes
SNIFF_BYTES = 1024
TEMP_PREFIX = ".rpa-tmp."
#: a temporary name's owner when it was written by an rpa older than run-tagged names
LEGACY_OWNER = ""


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


def atomic_write(
    path: Path,
    data: bytes | str,
    *,
    run_id: str = "",
    mode: int | None = None,
    make_folder: bool = True,
) -> None:
    """Write `data` to `path` whole or not at all: a temporary file beside it, fsync, rename
    (creating the folder unless `make_folder` is False). Blocking: call it from a worker
    thread or process, never on the event loop."""
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / temp_name(path.name, run_id)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with tmp.open("xb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def sha256_file(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def sniff_pdf(head: bytes) -> bool:
    """Does a file that starts with `head` look like a PDF (`%PDF-` in its first 1024 bytes)?"""
    return PDF_MAGIC in head[:SNIFF_BYTES]


def start_of(head: bytes, chars: int = 60) -> str:
    """The first `chars` bytes of what was not a PDF, readable in one line (for messages)."""
    return head[:chars].decode("latin-1").replace("\n", " ").strip()

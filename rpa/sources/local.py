"""The local source: PDFs already on disk (`--pdf-url 'file:///data/pdfs/{id}.pdf'`).

No download gate wait and no politeness budget: nothing is asked of anyone. The same checks as
a download (`%PDF-` in the first 1024 bytes, the size cap, the sha256), and no copy: the
checkpoint and the record name the source file itself. A file is read only where the template
points: a symlink that leads out of the template's folder (to /etc/passwd, say) is refused
unread, so nothing of another file is stored or shown.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rpa import errors
from rpa.classify import classify
from rpa.ids import url_for
from rpa.sources.base import Download
from rpa.sources.check import check_pdf, opening

__all__ = ["LocalSource", "check_local", "file_url_path", "source_folder"]


def file_url_path(url: str) -> Path:
    """The path a file:// URL names (file:///data/x.pdf -> /data/x.pdf)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise errors.NotFound(f"file URL names another host ({parts.netloc}): {url}")
    return Path(unquote(parts.path))


def source_folder(template: str) -> Path:
    """The folder every file of a file:// template lies in: the part before `{id}`, up to its
    last `/` (file:///data/pdfs/{id}.pdf -> /data/pdfs)."""
    fixed = template.split("{id}", 1)[0]
    return file_url_path(fixed[: fixed.rfind("/") + 1] or "file:///")


def check_local(path: Path, folder: Path, max_bytes: int | None) -> tuple[int, str]:
    """(size, sha256) of a local PDF that passes the checks a download passes. Blocking."""
    real = path.resolve()
    if not real.is_relative_to(folder.resolve()):
        raise errors.NotFound(f"{path} leads out of {folder} (to {real}): not read")
    try:
        return check_pdf(
            lambda: path.open("rb"),
            path.stat().st_size,
            max_bytes,
            not_pdf=lambda head: errors.NotPdf(f"not a PDF ({opening(head)}): {path}"),
            where=f": {path}",
        )
    except FileNotFoundError:
        raise errors.NotFound(f"no such file: {path}") from None
    except IsADirectoryError:
        raise errors.NotFound(f"a directory, not a PDF: {path}") from None
    except PermissionError as exc:
        raise errors.PermanentError(f"cannot read {path}: {exc.strerror}") from None


class LocalSource:
    """Checks a local PDF in the I/O pool and names it; copies nothing."""

    network = False

    def __init__(
        self, io: Executor, template: str, *, max_bytes: int, checked: bool = True
    ) -> None:
        self.io = io
        #: False: the file is named, not read; the extraction process checks it
        self.checked = checked
        self.template = template
        self.max_bytes = max_bytes
        self.folder = source_folder(template)

    async def fetch(self, job_id: str, dest: Path) -> Download:
        """`dest` is unused: a local PDF stays where it is."""
        url = url_for(self.template, job_id)
        start = time.perf_counter()
        path = file_url_path(url)
        if not self.checked:
            return Download(str(path), 0, None, url, 0, time.perf_counter() - start,
                            check="local", folder=str(self.folder))  # fmt: skip
        loop = asyncio.get_running_loop()
        try:
            size, sha256 = await loop.run_in_executor(
                self.io, check_local, path, self.folder, self.max_bytes
            )
        except OSError as exc:
            raise classify(exc, f"reading {path}", reading=True) from None
        return Download(
            path=str(path),
            bytes=size,
            sha256=sha256,
            final_url=url,
            status=0,
            seconds=time.perf_counter() - start,
        )

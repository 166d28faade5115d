"""The download stage: stream one PDF to a temporary file, check it, rename it into place.

The loop only moves bytes between httpx and a buffer. Writing, hashing, fsync and rename run in
the I/O thread pool, a megabyte at a time, so no file call of real size touches the loop. A file
appears under its final name only after it is complete and checked, so a final name is always a
whole PDF (resume relies on that).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import hashlib
import importlib
import itertools
import os
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from rpa import errors
from rpa.gates import RateGate

__all__ = ["Download", "Downloader", "parse_retry_after", "sniff_pdf"]

# httpx/httpcore import these lazily at the first request. Import them now, before the event
# loop runs: an import on the loop thread is a stall (anyio's backend alone is ~40 ms).
for _module in ("anyio._backends._asyncio", "encodings.idna", "h11", "httpcore._backends.anyio"):
    importlib.import_module(_module)

PDF_MAGIC = b"%PDF-"
# The PDF spec lets readers accept the header anywhere in the first 1024 bytes.
SNIFF_BYTES = 1024
FLUSH_BYTES = 1 << 20
RETRY_HTTP_CODES = frozenset({408, 429, 500, 502, 503, 504, 522, 524})
#: httpx's own default limit
MAX_REDIRECTS = 20


@dataclass(frozen=True, slots=True)
class Download:
    path: str
    bytes: int
    sha256: str
    final_url: str
    status: int
    seconds: float


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def sniff_pdf(head: bytes) -> bool:
    return PDF_MAGIC in head[:SNIFF_BYTES]


class _TempFile:
    """A temporary file written and hashed only in the I/O thread."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path = dest.parent / f".tmp-{dest.name}-{uuid.uuid4().hex[:8]}"
        self._fh: IO[bytes] | None = None
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        if self._fh is None:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("wb")
        self._fh.write(data)
        self._hash.update(data)

    def commit(self) -> str:
        """fsync, rename to the final name; returns the sha256."""
        if self._fh is None:
            self.write(b"")
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.path, self.dest)
        return self._hash.hexdigest()

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self.path.unlink(missing_ok=True)


def _status_error(response: httpx.Response) -> errors.JobError | None:
    status = response.status_code
    if status < 300:
        return None
    reason = f"HTTP {status} {response.reason_phrase} from {response.url}"
    if status == 403:
        return errors.AccessDenied(reason)
    if status in (404, 410):
        return errors.NotFound(reason)
    if status in RETRY_HTTP_CODES:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return errors.HttpTransient(reason, retry_after=retry_after)
    return errors.HttpPermanent(reason)


class Downloader:
    """Fetches PDFs with shared httpx clients; file work goes to `io`.

    `client` may be several clients (a sequence), used in turn: one httpx connection pool's
    bookkeeping grows with its connection count (encode/httpx#3215), so many connections are
    cheaper as a few small pools than as one large one.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | Sequence[httpx.AsyncClient],
        io: Executor,
        max_bytes: int,
        *,
        gate: RateGate | None = None,
    ) -> None:
        clients = [client] if isinstance(client, httpx.AsyncClient) else list(client)
        self.client = clients[0]
        self._clients = itertools.cycle(clients)
        self.io = io
        self.max_bytes = max_bytes
        #: the host's rate gate: the caller takes a slot before `fetch`; `fetch` says when the
        #: answer began and takes one more slot for every redirect it follows
        self.gate = gate

    def _answered(self) -> None:
        if self.gate is not None:
            self.gate.answered()

    async def _open(self, url: str) -> httpx.Response:
        """Send the GET, following redirects here so that every hop is one request at the
        host's rate gate (httpx would follow them inside one)."""
        client = next(self._clients)
        request = client.build_request("GET", url)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = await client.send(request, stream=True, follow_redirects=False)
            finally:
                self._answered()
            if response.next_request is None:
                return response
            request = response.next_request
            await response.aclose()
            if self.gate is not None:
                await self.gate.acquire()
        raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects", request=request)

    async def _in_io(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    async def fetch(self, url: str, dest: Path) -> Download:
        """Download `url` to `dest`; raises a JobError subclass on any failure."""
        start = time.perf_counter()
        tmp = _TempFile(dest)
        received = 0
        committed = False
        try:
            response = await self._open(url)
            async with contextlib.aclosing(response):
                error = _status_error(response)
                if error is not None:
                    raise error
                declared = response.headers.get("content-length")
                expected = int(declared) if declared and declared.isdigit() else None
                if expected is not None and expected > self.max_bytes:
                    raise errors.TooLarge(f"{expected} bytes declared, cap {self.max_bytes}")
                head = b""
                buffer: list[bytes] = []
                buffered = 0
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise errors.TooLarge(f"over {self.max_bytes} bytes")
                    if len(head) < SNIFF_BYTES:
                        head += chunk[: SNIFF_BYTES - len(head)]
                        if len(head) >= SNIFF_BYTES and not sniff_pdf(head):
                            raise _not_pdf(response, head)
                    buffer.append(chunk)
                    buffered += len(chunk)
                    if buffered >= FLUSH_BYTES:
                        await self._in_io(tmp.write, b"".join(buffer))
                        buffer, buffered = [], 0
                if not sniff_pdf(head):
                    raise _not_pdf(response, head)
                if expected is not None and received != expected:
                    raise errors.TruncatedBody(f"got {received} of {expected} bytes")
                if buffer:
                    await self._in_io(tmp.write, b"".join(buffer))
                sha256 = await self._in_io(tmp.commit)
                committed = True
                return Download(
                    path=str(dest),
                    bytes=received,
                    sha256=sha256,
                    final_url=str(response.url),
                    status=response.status_code,
                    seconds=time.perf_counter() - start,
                )
        except httpx.TimeoutException as exc:
            raise errors.DownloadTimeout(f"{type(exc).__name__} after {received} bytes") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            cls = errors.TruncatedBody if received else errors.ConnectionFailed
            raise cls(f"{type(exc).__name__}: {exc} after {received} bytes") from None
        except httpx.TooManyRedirects as exc:
            raise errors.HttpPermanent(f"{exc} from {url}") from None
        except httpx.TransportError as exc:
            raise errors.ConnectionFailed(f"{type(exc).__name__}: {exc}") from None
        except httpx.HTTPError as exc:
            raise errors.ConnectionFailed(f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise errors.DiskFull(f"no space left writing {dest.parent}") from None
            raise errors.DiskFull(f"cannot write {dest.parent}: {exc}") from None
        finally:
            self._answered()  # a failure before the headers: the request is over all the same
            if not committed:
                await self._in_io(tmp.discard)


def _not_pdf(response: httpx.Response, head: bytes) -> errors.JobError:
    kind = response.headers.get("content-type", "?").split(";")[0]
    preview = head[:80].decode("latin-1").replace("\n", " ").strip()
    text = head.lower()
    # arXiv answers robots it has blocked with a 200 or 403 HTML page saying so.
    if b"access denied" in text or b"you have been blocked" in text:
        return errors.AccessDenied(f"denial page ({kind}) from {response.url}: {preview!r}")
    return errors.NotPdf(f"not a PDF ({kind}, starts {preview!r})")

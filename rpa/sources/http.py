"""The HTTP source: stream one PDF to a temporary file, check it, rename it into place.

The loop only moves bytes between httpx and a buffer. Writing, hashing, fsync and rename run in
the I/O thread pool, a megabyte at a time, so no file call of real size touches the loop. A file
appears under its final name only after it is complete and checked, so a final name is always a
whole PDF (resume relies on that).

What a hostile server can do is bounded: every hop of a redirect goes through its host's gate
and must stay on the same site unless `--follow-redirects any`; rpa asks for `identity` and
decodes a gzip/deflate body it gets anyway with a bound (the size cap counts what is written);
`--download-timeout` ends a body that trickles; a malformed Retry-After is ignored and noted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import importlib
import itertools
import re
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import httpx

from rpa import errors
from rpa.classify import classify
from rpa.hosts.outage import SERVER_DOWN
from rpa.hosts.registry import HostGates, same_site
from rpa.ids import url_for
from rpa.sources.base import Download, Vanished
from rpa.sources.check import PdfCheck, opening, start_of
from rpa.sources.partial import PartialFile

__all__ = ["Download", "Downloader", "HttpSource", "body_decoder", "parse_retry_after"]

# httpx/httpcore import these lazily at the first request. Import them now, before the event
# loop runs: an import on the loop thread is a stall (anyio's backend alone is ~40 ms).
for _module in ("anyio._backends._asyncio", "encodings.idna", "h11", "httpcore._backends.anyio"):
    importlib.import_module(_module)

FLUSH_BYTES = 1 << 20
RETRY_HTTP_CODES = frozenset({408, 429, 500, 502, 503, 504, 522, 524})
#: httpx's own default limit
MAX_REDIRECTS = 20
#: a Retry-After longer than this is taken as this (a server must not stop us for ever)
MAX_RETRY_AFTER = 24 * 3600.0
_DELTA_SECONDS = re.compile(r"[0-9]{1,12}")  # ASCII digits only: '²' is a digit to isdigit()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3),
    at most MAX_RETRY_AFTER. None when absent; ValueError when malformed."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise ValueError(f"malformed Retry-After {value[:60]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def _server_down(response: httpx.Response) -> bool:
    """A server error: no answer of the host (rpa.hosts.outage.SERVER_DOWN; one with a valid
    Retry-After is an answer after all: rpa.run.policy says so when the attempt ends)."""
    return response.status_code in SERVER_DOWN


def _status_error(response: httpx.Response) -> errors.JobError | None:
    status = response.status_code
    if status < 300:
        return None
    host = response.url.host
    reason = f"HTTP {status} {response.reason_phrase} from {response.url}"
    if status == 403:
        return errors.AccessDenied(reason, host=host)
    if status in (404, 410):
        return errors.NotFound(reason)
    if status in RETRY_HTTP_CODES:
        try:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        except ValueError as exc:
            retry_after = None
            reason += f" (ignored: {exc})"
        return errors.HttpTransient(reason, retry_after=retry_after, host=host, status=status)
    return errors.HttpPermanent(reason)


def body_decoder(response: httpx.Response) -> Any:
    """A zlib decoder for the body's Content-Encoding (None for identity), to be called with
    a bound (`decompress(data, max_length)`); ValueError for another encoding."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise ValueError(f"unsupported Content-Encoding {encoding!r} from {response.url}")


def _decoder(response: httpx.Response) -> Any:
    """`body_decoder`, an unsupported encoding failing the paper (HttpPermanent)."""
    try:
        return body_decoder(response)
    except ValueError as exc:
        raise errors.HttpPermanent(str(exc)) from None


class Downloader:
    """Fetches PDFs with shared httpx clients; file work goes to `io`.

    `clients` are used in turn: one httpx connection pool's bookkeeping grows with its
    connection count (encode/httpx#3215), so many connections are cheaper as a few small pools
    than as one large one.
    """

    def __init__(
        self,
        clients: httpx.AsyncClient | Sequence[httpx.AsyncClient],
        io: Executor,
        *,
        max_bytes: int,
        hosts: HostGates,
        redirects: str = "same-site",
        deadline: float = 600.0,
        run_id: str = "",
        checked: bool = True,
    ) -> None:
        pool = [clients] if isinstance(clients, httpx.AsyncClient) else list(clients)
        self._clients = itertools.cycle(pool)
        self.io = io
        self.max_bytes = max_bytes
        self.hosts = hosts
        self.redirects = redirects
        self.deadline = deadline
        self.run_id = run_id
        #: False: a body is written, not hashed or fsynced; the extraction process checks it
        #: (and fsyncs it) before it gets its final name (rpa.extract.paper)
        self.checked = checked

    async def _in_io(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    @contextlib.asynccontextmanager
    async def _budget(self, spent: list[float]) -> AsyncIterator[None]:
        """Time spent talking to servers counts against --download-timeout; time waiting at a
        host's gate (its rate cap, a cooldown) does not."""
        remaining = self.deadline - spent[0]
        start = time.perf_counter()
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                yield
        except TimeoutError:
            raise errors.DownloadTimeout(
                f"the download took longer than {self.deadline:g} s in all (--download-timeout)"
            ) from None
        finally:
            spent[0] += time.perf_counter() - start

    async def _open(self, url: str, spent: list[float]) -> tuple[httpx.Response, float]:
        """Send the GET, following redirects here: every hop is one request at its host's
        gate, and leaves the site only with --follow-redirects any."""
        client = next(self._clients)
        request = client.build_request("GET", url)
        waited = 0.0
        for _ in range(MAX_REDIRECTS + 1):
            host = request.url.host
            waited += await self.hosts.acquire(host)
            try:
                async with self._budget(spent):
                    response = await client.send(request, stream=True, follow_redirects=False)
                if not _server_down(response):  # a 502 from a proxy is no answer of its host
                    self.hosts.heard_from(host)  # whatever it says, and however its body goes
            finally:
                await self.hosts.answered(host)
            if response.next_request is None:
                return response, waited
            target = response.next_request
            await response.aclose()
            if self.redirects == "off":
                raise errors.HttpPermanent(
                    f"redirect from {request.url} to {target.url} not followed "
                    "(--follow-redirects off)"
                )
            if self.redirects == "same-site" and not same_site(host, target.url.host):
                raise errors.HttpPermanent(
                    f"redirect from {host} to another site ({target.url.host}) not followed "
                    "(--follow-redirects any allows it)"
                )
            request = target
        raise errors.HttpPermanent(f"more than {MAX_REDIRECTS} redirects from {url}")

    async def fetch(self, url: str, dest: Path) -> Download:
        """Download `url` to `dest`; raises a JobError subclass on any failure."""
        start = time.perf_counter()
        tmp = PartialFile(dest, self.run_id, checked=self.checked)
        spent = [0.0]
        received = 0
        committed = False
        answered: str | None = None  # the host whose answer began, once it has
        try:
            response, waited = await self._open(url, spent)
            answered = response.url.host
            async with contextlib.aclosing(response):
                error = _status_error(response)
                if error is not None:
                    raise error
                decoder = _decoder(response)
                declared = response.headers.get("content-length", "")
                expected = int(declared) if _DELTA_SECONDS.fullmatch(declared) else None
                # the size cap counts what is written (decoded), the sniff looks at its start
                check = PdfCheck(self.max_bytes, lambda head: _not_pdf(response, head))
                check.declared(expected)
                buffer: list[bytes] = []
                buffered = 0

                async def take(data: bytes) -> None:
                    nonlocal buffer, buffered
                    check.feed(data)
                    buffer.append(data)
                    buffered += len(data)
                    if buffered >= FLUSH_BYTES:
                        await self._in_io(tmp.write, buffer)
                        buffer, buffered = [], 0

                async with self._budget(spent):
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                        if decoder is None:
                            await take(chunk)
                            continue
                        data = chunk
                        while data:  # a megabyte of output at a time: a bomb stays bounded
                            await take(decoder.decompress(data, FLUSH_BYTES))
                            data = decoder.unconsumed_tail
                    if decoder is not None:
                        await take(decoder.flush())
                written = check.finish()
                if expected is not None and received != expected:
                    raise errors.TruncatedBody(f"got {received} of {expected} bytes")
                sha256 = await self._in_io(tmp.finish, buffer)
                committed = True
                return Download(
                    path=str(dest),
                    bytes=written,
                    sha256=sha256,
                    final_url=str(response.url),
                    status=response.status_code,
                    seconds=time.perf_counter() - start - waited,
                    gate_wait=waited,
                    check="" if self.checked else "download",
                )
        except (errors.DownloadTimeout, errors.TruncatedBody) as exc:
            # its host answered, then the body stalled or stopped short: the host works
            exc.host = exc.host or answered
            raise
        except httpx.TimeoutException as exc:
            raise errors.DownloadTimeout(
                f"{type(exc).__name__} after {received} bytes", host=answered
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            cls = errors.TruncatedBody if received else errors.ConnectionFailed
            raise cls(
                f"{type(exc).__name__}: {exc} after {received} bytes", host=answered
            ) from None
        except httpx.HTTPError as exc:
            raise errors.ConnectionFailed(f"{type(exc).__name__}: {exc}", host=answered) from None
        except zlib.error as exc:
            raise errors.TruncatedBody(f"the compressed body is broken: {exc}") from None
        except FileNotFoundError as exc:  # its file, or its folder, removed while written
            raise Vanished(f"the download was removed while written: {exc}") from None
        except OSError as exc:
            raise classify(exc, f"writing {dest.parent}") from None
        finally:
            if not committed:
                await self._in_io(tmp.discard)


class HttpSource:
    """The PDFs of --pdf-url's template (`{id}` filled in), through a Downloader."""

    network = True

    def __init__(self, downloader: Downloader, template: str) -> None:
        self.downloader = downloader
        self.template = template

    async def fetch(self, job_id: str, dest: Path) -> Download:
        return await self.downloader.fetch(url_for(self.template, job_id), dest)


def _not_pdf(response: httpx.Response, head: bytes) -> errors.JobError:
    kind = response.headers.get("content-type", "?").split(";")[0]
    preview = start_of(head, 40)
    text = head.lower()
    # arXiv answers robots it has blocked with a 200 or 403 HTML page saying so.
    if b"access denied" in text or b"you have been blocked" in text:
        return errors.AccessDenied(
            f"denial page ({kind}) from {response.url}: {preview!r}", host=response.url.host
        )
    return errors.NotPdf(f"not a PDF (served as {kind}, {opening(head, 40)}) from {response.url}")

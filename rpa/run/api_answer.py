"""One answer of arXiv's export API, read as it comes (the metadata stage's request: its
gate and what the answer means are rpa.run.metadata's).

`read_answer` says what one GET got: the status and the feed (parsed a chunk at a time in the
I/O pool), a reason when the answer cannot be read (too large, a broken compression, another
status), or `NoAnswer` when the API gave no answer at all: the connection refused or reset, a
timeout before the status line, a server error (500, 502, 503, 504 without Retry-After: a
proxy in front of a server that is down, as for the PDF hosts: rpa.hosts.outage), or it asked
us to wait (429, or a server error with Retry-After). A `NoAnswer` is the API's condition,
never the papers' (rpa.run.api_outage).
"""

from __future__ import annotations

import asyncio
import zlib
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import httpx

from rpa.hosts.outage import SERVER_DOWN
from rpa.sources.arxiv_api import Feed, FeedReader
from rpa.sources.http import body_decoder, parse_retry_after

__all__ = ["MAX_ANSWER_BYTES", "PARSE_CHUNK", "NoAnswer", "read_answer"]

#: the most of an answer read (as it comes and decoded): 100 papers' Atom entries are ~250 KB
MAX_ANSWER_BYTES = 16 * 1024 * 1024
#: bytes handed to the parser at a time (in the I/O pool)
PARSE_CHUNK = 256 * 1024


class _TooLarge(Exception):
    """The answer, as it came or decoded, is over MAX_ANSWER_BYTES."""


@dataclass(frozen=True, slots=True)
class NoAnswer:
    """No answer from the API (`why`), or it asked us to wait `retry_after` seconds: the API's
    condition, not the papers' (rpa.run.api_outage)."""

    why: str
    retry_after: float | None = None


class _Answer:
    """An answer's bytes as they come, decoded (gzip/deflate, though rpa asks for neither) a
    PARSE_CHUNK at a time, counted against MAX_ANSWER_BYTES, and parsed. Blocking: the I/O
    pool's work, so a bomb costs the loop nothing and memory a chunk."""

    def __init__(self, reader: FeedReader, decoder: Any) -> None:
        self.reader, self.decoder, self.size = reader, decoder, 0

    def feed(self, raw: bytes) -> None:
        if self.decoder is None:
            self._take(raw)
            return
        while raw:
            self._take(self.decoder.decompress(raw, PARSE_CHUNK))
            raw = self.decoder.unconsumed_tail

    def close(self, raw: bytes) -> Feed:
        self.feed(raw)
        if self.decoder is not None:
            self._take(self.decoder.flush())
        return self.reader.close()

    def _take(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_ANSWER_BYTES:
            raise _TooLarge
        self.reader.feed(data)


async def read_answer(
    client: httpx.AsyncClient, url: str, ids: list[str], *, io: Executor, deadline: float,
    retry: float,
) -> tuple[int, Feed] | str | NoAnswer:  # fmt: skip
    """(status, feed) of one GET of `url` (asking for `ids`), or why not: `NoAnswer` when the
    API gave none, or asked us to wait (`retry` seconds if it did not say how long). At most
    MAX_ANSWER_BYTES read, all of it within `deadline` seconds (a trickling answer never
    trips a read timeout), decoded and parsed as it comes, a chunk at a time in the I/O pool
    `io` (`_Answer`; ValueError if it is no Atom feed). The loop only counts what arrives:
    httpx would decode a gzip body on it, a 64 KiB chunk of a bomb into 64 MiB in one call."""
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    held = size = 0
    answer: _Answer | None = None
    try:
        async with asyncio.timeout(deadline):
            async with client.stream("GET", url) as response:
                if (none := _no_answer(response, retry)) is not None:
                    return none
                if response.status_code not in (200, 400):
                    return f"HTTP {response.status_code} from the API"
                answer = _Answer(FeedReader(ids), body_decoder(response))
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise _TooLarge
                    chunks.append(chunk)
                    held += len(chunk)
                    if held >= PARSE_CHUNK:
                        data, chunks, held = b"".join(chunks), [], 0
                        await loop.run_in_executor(io, answer.feed, data)
                feed = await loop.run_in_executor(io, answer.close, b"".join(chunks))
                return response.status_code, feed
    except TimeoutError:
        if answer is None:  # not even the status line and headers
            return NoAnswer(f"no answer within {deadline:g} s")
        return f"no whole answer within {deadline:g} s ({size:,} bytes came)"
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        if answer is not None:  # an answer that began, then broke off: the host works
            raise
        return NoAnswer(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    except _TooLarge:
        return f"the answer is over {MAX_ANSWER_BYTES // 2**20} MiB"
    except zlib.error as exc:
        return f"the compressed answer is broken ({exc})"


def _no_answer(response: httpx.Response, retry: float) -> NoAnswer | None:
    """A status that is no answer from the API's server (a proxy's 502 before a server that
    is down), or asks us to wait (429, 503 with Retry-After)."""
    code = response.status_code
    try:
        after = parse_retry_after(response.headers.get("Retry-After"))
    except ValueError:
        after = None
    if code == 429 or (code in SERVER_DOWN and after is not None):
        return NoAnswer(f"HTTP {code} from the API", after or retry)
    if code in SERVER_DOWN:
        return NoAnswer(f"HTTP {code} from the API")
    return None

"""The metadata stage: arXiv's own metadata for each paper, joined to its text at the outcome.

Workers ask `MetadataService.get(job_id)` when their paper reaches the outcome stage; the
service answers from what the queue stored (its checkpoint: a crash never asks again for what
was stored), and gathers the rest into batches of up to `--metadata-batch` IDs, one export-API
request each, behind a gate of its own: arXiv's API terms ask for at most one request every three
seconds and one connection at a time, counted over all of a user's machines, so the gate's one
slot lives in the queue (rpa.hosts.fleet) and is held until the whole answer has been read. A
paper arXiv does not know, or withdrew, says so in its record; a batch the API will not answer
(after three tries) leaves its papers' records saying why, and is asked again by a later run.
With `--metadata-file` the snapshot was joined before the run (rpa.run.prepare): nothing is
asked of anyone.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any
from urllib.parse import urlsplit

import httpx

from rpa.config import Settings, parse_rate
from rpa.hosts.health import HostHealth
from rpa.hosts.registry import HostGate
from rpa.ids import parse_id
from rpa.notices import Notices
from rpa.queue import catalog
from rpa.queue.aio import AsyncQueue
from rpa.run.backoff import retry_delay
from rpa.run.clients import make_api_client
from rpa.sources.arxiv_api import PaperMetadata, parse_feed, query_url

__all__ = ["MetadataService", "metadata_service"]

#: papers' metadata kept in memory (the rest is in the queue)
CACHE = 10_000
ATTEMPTS = 3
#: the most of an answer read (as it comes and decoded): 100 papers' Atom entries are ~250 KB
MAX_ANSWER_BYTES = 16 * 1024 * 1024


def metadata_service(
    settings: Settings, *, queue: AsyncQueue, io: Executor, notices: Notices, hosts: HostHealth
) -> MetadataService | None:
    """The metadata stage of a run, unless it is off: its API gate has one fleet-wide slot."""
    s = settings
    mode = s.metadata_mode
    if mode == "off":
        return None
    gate = None
    if mode == "arxiv-api":
        count, period = parse_rate(s.metadata_rate)
        host = urlsplit(s.metadata_url).hostname or "api"
        gate = hosts.fleet_gate(f"api {host}", count, period)
    return MetadataService(
        mode=mode, queue=queue, url=s.metadata_url, batch=s.metadata_batch, gate=gate,
        client=functools.partial(make_api_client, s), io=io, notices=notices,
        deadline=2 * (s.connect_timeout + s.read_timeout),
    )  # fmt: skip


class MetadataService:
    """Batches, fetches, stores and hands out papers' metadata for one run."""

    def __init__(
        self,
        *,
        mode: str,
        queue: AsyncQueue,
        url: str,
        batch: int,
        gate: HostGate | None,
        client: Callable[[], httpx.AsyncClient],
        io: Executor,
        notices: Notices,
        deadline: float = 120.0,
    ) -> None:
        """`client` makes the API's client (blocking: it is called in a thread, at the first
        request); `io` parses the answers (an Atom feed of 100 abstracts is no loop work)."""
        self.mode = mode
        self.queue = queue
        self.url = url
        self.batch = batch
        self.gate = gate
        self._make_client = client
        #: the longest one answer may take, whole
        self.deadline = deadline
        self.io = io
        self._client: httpx.AsyncClient | None = None
        self.notices = notices
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._wanted: list[str] = []
        self._wake = asyncio.Event()
        self.requests = 0

    async def get(self, job_id: str) -> dict[str, Any] | None:
        """The metadata of `job_id`'s paper (JSON-able), or None when the stage is off or the
        paper is not an arXiv paper."""
        paper = parse_id(job_id)
        if self.mode == "off" or not paper.is_arxiv:
            return None
        base = paper.base
        if (hit := self._cache.get(base)) is not None:
            return hit
        future = self._pending.get(base)
        if future is None:
            future = self._pending[base] = asyncio.get_running_loop().create_future()
            self._wanted.append(base)
            self._wake.set()
        return await asyncio.shield(future)  # one waiter cancelled cancels nobody else's

    def _resolve(self, found: dict[str, dict[str, Any]], keep: bool = True) -> None:
        for base, data in found.items():
            if keep:
                self._cache[base] = data
                while len(self._cache) > CACHE:
                    self._cache.popitem(last=False)
            future = self._pending.pop(base, None)
            if future is not None and not future.done():
                future.set_result(data)

    async def run(self) -> None:
        """The stage's task: serve what is asked, a batch at a time, until cancelled."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._wanted:
                    batch = list(dict.fromkeys(self._wanted[: self.batch]))
                    del self._wanted[: self.batch]
                    try:
                        await self._serve(batch)
                    except Exception as exc:  # the stage's own boundary: its papers go on
                        self._failed(batch, f"{type(exc).__name__}: {exc}")
        finally:
            if self._client is not None:
                await self._client.aclose()

    def _failed(self, batch: list[str], reason: str) -> None:
        """The stage broke on `batch` (a bug, the queue): say so, and let its papers' records
        say so too; nothing is stored, so a later run asks again."""
        self.notices.add(
            f"the metadata stage failed for {len(batch)} papers ({reason}); their records say so",
            key=f"metadata failed {reason}",
        )
        source = "metadata-file" if self.mode == "file" else "arxiv-api"
        answers = {b: PaperMetadata(b, "error", source, reason=reason).to_json() for b in batch}
        self._resolve(answers, keep=False)

    async def _serve(self, batch: list[str]) -> None:
        stored = await self.queue.run(catalog.metadata_for, batch)
        self._resolve(stored)
        rest = [b for b in batch if b not in stored]
        if not rest:
            return
        if self.mode == "file":
            missing = {
                b: PaperMetadata(b, "not_found", "metadata-file",
                                 reason="not in --metadata-file").to_json()
                for b in rest
            }  # fmt: skip
            await self.queue.run(catalog.store_metadata, list(missing.values()), time.time())
            self._resolve(missing)
            return
        answers, definite = await self._ask(rest)
        if definite:
            await self.queue.run(catalog.store_metadata, definite, time.time())
        self._resolve({a["id"]: a for a in answers}, keep=False)

    async def _ask(self, ids: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Ask the API for `ids`: (every answer, the definite ones to store)."""
        if self._client is None:
            self._client = await asyncio.to_thread(self._make_client)
        reason = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                got = await self._request(ids)
            except (httpx.HTTPError, ValueError) as exc:
                got = f"{type(exc).__name__}: {exc}"
            if not isinstance(got, str):
                found, bad = got
                if bad and len(bad) < len(ids):
                    # a 400 answers only the malformed ID: ask again for the others
                    more, definite = await self._ask([b for b in ids if b not in bad])
                    return [_answer(b, found, bad) for b in bad] + more, definite
                answers = [_answer(b, found, bad) for b in ids]
                return answers, [a for a in answers if a["status"] != "error"]
            reason = got
            if attempt < ATTEMPTS:
                await asyncio.sleep(retry_delay(attempt, 2.0, 30.0))
        self.notices.add(f"arXiv's API did not answer for {len(ids)} papers ({reason}); "
                         "their records say so")  # fmt: skip
        failed = [PaperMetadata(b, "error", "arxiv-api", reason=reason).to_json() for b in ids]
        return failed, []

    async def _read(self, url: str) -> tuple[int, bytes] | str:
        """(status, body) of one GET, or why not: at most MAX_ANSWER_BYTES read, all of it
        within `deadline` seconds (a trickling answer never trips a read timeout)."""
        assert self._client is not None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.deadline):
                async with self._client.stream("GET", url) as response:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_ANSWER_BYTES:
                            return f"the answer is over {MAX_ANSWER_BYTES // 2**20} MiB"
                        chunks.append(chunk)
                    return response.status_code, b"".join(chunks)
        except TimeoutError:
            return f"no whole answer within {self.deadline:g} s ({size:,} bytes came)"

    async def _request(self, ids: list[str]) -> tuple[dict[str, PaperMetadata], list[str]] | str:
        """One request, inside the gate's one fleet-wide slot (held until the body is read, or
        given up on: the slot is let go on every way out)."""
        if self.gate is not None:
            await self.gate.acquire()
        try:
            self.requests += 1
            got = await self._read(query_url(self.url, ids))
            if isinstance(got, str):
                return got
            status, body = got
        finally:
            if self.gate is not None:
                done = self.gate.answered()
                if done is not None:
                    await done
        if status not in (200, 400):
            return f"HTTP {status} from the API"
        feed = await asyncio.get_running_loop().run_in_executor(self.io, parse_feed, body)
        if status == 400 and not feed.bad_ids:
            return f"HTTP 400 from the API: {'; '.join(feed.errors) or 'no reason given'}"
        return feed.found, feed.bad_ids


def _answer(base: str, found: dict[str, PaperMetadata], bad: list[str]) -> dict[str, Any]:
    if base in found:
        return found[base].to_json()
    if base in bad:
        return PaperMetadata(
            base, "error", "arxiv-api", reason="arXiv: incorrect id format"
        ).to_json()
    return PaperMetadata(
        base, "not_found", "arxiv-api", reason="arXiv's API does not know it"
    ).to_json()

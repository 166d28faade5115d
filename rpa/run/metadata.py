"""The metadata stage: arXiv's own metadata for each paper, joined to its text at the outcome.

Workers ask `MetadataService.get(job_id)` when their paper reaches the outcome stage; the
service answers from what the queue stored (its checkpoint: a crash never asks again for what
was stored), and gathers the rest into batches of up to `--metadata-batch` IDs, one export-API
request each, behind a gate of its own: arXiv's API terms ask for at most one request every three
seconds and one connection at a time, counted over all of a user's machines, so the gate's one
slot lives in the queue (rpa.hosts.fleet) and is held until the whole answer has been read (and
parsed as it comes, in the I/O pool: rpa.sources.arxiv_api.FeedReader).

Only an answer that means something is stored (rpa.sources.arxiv_api.judge): the entries about
the IDs asked, and `not_found` for an ID left out of a believable answer twice, the second time
asked alone. IDs an answer leaves unanswered (an empty page, an answer about other IDs, a
malformed feed, no answer at all) are asked again later, in smaller batches, after a backoff
(five `--metadata-rate` periods, doubling), up to ATTEMPTS times; then their records say the
metadata is `unavailable` and why, nothing is stored, and a later run asks again.
An API that gives no answer at all (refused, reset, a timeout before any answer, a server
error; or asks us to wait) is a condition, not the papers' (rpa.run.api_outage): their IDs are
kept, uncounted; the API is probed on a backoff, each probe one batch, while the papers wait
for it, and past --metadata-wait they get MetadataStayedAway: the run stops, `interrupted`.
With `--metadata-file` the snapshot was joined before the run (rpa.run.prepare): nothing is
asked of anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import httpx

from rpa import errors
from rpa.config import Settings
from rpa.hosts.health import HostHealth
from rpa.hosts.registry import HostGate
from rpa.ids import parse_id
from rpa.notices import Notices
from rpa.queue import catalog
from rpa.queue.aio import AsyncQueue
from rpa.rates import parse_rate
from rpa.run.api_answer import NoAnswer, read_answer
from rpa.run.api_outage import ApiOutage
from rpa.run.backoff import retry_delay
from rpa.run.clients import make_api_client
from rpa.sources.arxiv_api import ARXIV_API, Feed, PaperMetadata, Verdict, judge, query_url

__all__ = ["MetadataService", "metadata_service"]

#: papers' metadata kept in memory (the rest is in the queue)
CACHE = 10_000
#: answers that answer nothing for an ID before its record says `unavailable`
ATTEMPTS = 3
#: answers leaving an ID out (the last one asked alone) before it is `not_found`
ABSENCES = 2


def metadata_service(
    settings: Settings, *, queue: AsyncQueue, io: Executor, notices: Notices, hosts: HostHealth
) -> MetadataService | None:
    """The metadata stage of a run, unless it is off: its API gate has one fleet-wide slot."""
    s = settings
    mode = s.metadata_mode
    if mode == "off":
        return None
    gate = outage = None
    count, period = parse_rate(s.metadata_rate)
    if mode == "arxiv-api":
        host = urlsplit(s.metadata_url).hostname or "api"
        gate = hosts.fleet_gate(f"api {host}", count, period)
        outage = ApiOutage(urlsplit(s.metadata_url).netloc or host, notices, s.metadata_wait,
                           fail_fast=s.metadata_url != ARXIV_API,
                           quiet=hosts.may_be_unreachable)  # fmt: skip
    service = MetadataService(
        mode=mode, queue=queue, url=s.metadata_url, batch=s.metadata_batch, gate=gate,
        client=functools.partial(make_api_client, s), io=io, notices=notices,
        deadline=2 * (s.connect_timeout + s.read_timeout), retry=5 * period / count,
        outage=outage,
    )  # fmt: skip
    hosts.also_waits.append(service.waiting)  # the run's `waiting`: the live table, status
    return service


@dataclass(slots=True)
class _Tries:
    """What the answers so far said of one ID that is still to be answered."""

    absent: int = 0
    refused: int = 0
    alone: bool = False  # asked alone next time


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
        retry: float = 15.0,
        outage: ApiOutage | None = None,
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
        #: the first wait before IDs an answer left unanswered are asked again (it doubles)
        self.retry = retry
        self.io = io
        self._client: httpx.AsyncClient | None = None
        self.notices = notices
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._wanted: list[str] = []
        self._wake = asyncio.Event()
        self._tries: dict[str, _Tries] = {}
        self._due: dict[str, float] = {}  # ID -> when to ask again (monotonic)
        self._heard = False  # the API answered some paper in this run
        self.requests = 0
        #: whether the API answers (None: no API, --metadata-file)
        self.outage = outage

    async def get(self, job_id: str) -> dict[str, Any] | None:
        """The metadata of `job_id`'s paper (JSON-able), or None when the stage is off or the
        paper is not an arXiv paper."""
        paper = parse_id(job_id)
        if self.mode == "off" or not paper.is_arxiv:
            return None
        base = paper.base
        if (hit := self._cache.get(base)) is not None:
            return hit
        if self.outage is not None and self.outage.gone:
            raise errors.MetadataStayedAway(self.outage.gone)
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
            self._tries.pop(base, None)
            self._due.pop(base, None)
            future = self._pending.pop(base, None)
            if future is not None and not future.done():
                future.set_result(data)

    async def run(self) -> None:
        """The stage's task: serve what is asked, a batch at a time, until cancelled."""
        try:
            while True:
                self._wake.clear()
                if self._stayed_away():
                    return
                hold = self.outage.hold() if self.outage is not None else 0.0
                batch = self._take() if hold == 0.0 else []
                if not batch:
                    wait = self._wait(hold)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
                    continue
                try:
                    await self._serve(batch)
                except Exception as exc:  # the stage's own boundary: its papers go on
                    self._failed(batch, f"{type(exc).__name__}: {exc}")
        finally:
            if self._client is not None:
                await self._client.aclose()

    def _wait(self, hold: float) -> float | None:
        """Seconds to sleep unless woken: until the API may be asked again (`hold`), the next
        ID is due, or the wait for the API passes --metadata-wait; None: until woken."""
        waits = [hold] if hold > 0 else []
        if self._due:
            waits.append(min(self._due.values()) - time.monotonic())
        if self.outage is not None and self._pending:
            waits += [w for w in [self.outage.overdue_in()] if w is not None]
        return max(0.0, min(waits)) if waits else None

    def _stayed_away(self) -> bool:
        """The API stayed away past --metadata-wait (or was never there) while papers wait
        for it: each gets MetadataStayedAway (the run stops, `interrupted`), none is charged."""
        gone = self.outage.check() if self.outage is not None and self._pending else None
        if gone is None:
            return False
        for future in self._pending.values():
            if not future.done():
                future.set_exception(errors.MetadataStayedAway(gone))
                future.exception()  # looked at: a waiter cancelled meanwhile logs nothing
        self._pending.clear()
        self._wanted.clear()
        self._due.clear()
        return True

    def waiting(self) -> str | None:
        """What papers wait for because of the API now (None: nothing)."""
        return self.outage.waiting(len(self._pending)) if self.outage is not None else None

    def _take(self) -> list[str]:
        """The next batch: IDs due to be asked again first (alone, or in batches half the
        size), then the new ones."""
        now = time.monotonic()
        due = [b for b, t in self._due.items() if t <= now]
        if due:
            if self._tries[due[0]].alone:
                batch = due[:1]
            else:
                batch = [b for b in due if not self._tries[b].alone][: max(1, self.batch // 2)]
            for b in batch:
                del self._due[b]
            return batch
        batch = list(dict.fromkeys(self._wanted[: self.batch]))
        del self._wanted[: self.batch]
        return batch

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
        verdict = await self._ask(rest)
        if isinstance(verdict, NoAnswer):  # the API's condition: the IDs wait, uncounted
            self._keep(rest)
            assert self.outage is not None
            self.outage.failed(verdict.why, verdict.retry_after, len(self._pending))
            return
        self._heard = self._heard or bool(verdict.found)
        if verdict.absent and not self._heard:  # an API that never answered a paper yet
            verdict = replace(verdict, absent=[], refused=verdict.refused + verdict.absent,
                              why=f"left out {len(verdict.absent)} IDs before it answered "
                                  "any paper of this run")  # fmt: skip
        tries = {b: self._tries.setdefault(b, _Tries()) for b in rest}
        definite = [paper.to_json() for paper in verdict.found.values()]
        for b in verdict.absent:
            tries[b].absent += 1
        gone = [b for b in verdict.absent if tries[b].absent >= ABSENCES and tries[b].alone]
        definite += [PaperMetadata(b, "not_found", "arxiv-api",
                                   reason="arXiv's API does not know it").to_json()
                     for b in gone]  # fmt: skip
        if definite:
            await self.queue.run(catalog.store_metadata, definite, time.time())
        self._resolve({a["id"]: a for a in definite})
        bad = PaperMetadata("", "error", "arxiv-api", reason="arXiv: incorrect id format")
        self._resolve({b: bad.to_json() | {"id": b} for b in verdict.bad}, keep=False)
        now = time.monotonic()
        self._due.update(dict.fromkeys(verdict.again, now))
        if absent := [b for b in verdict.absent if b not in gone]:
            delay = self._delay(absent)
            for b in absent:
                tries[b].alone = True
                self._due[b] = now + delay
            self.notices.add(f"arXiv's API left out {len(absent)} IDs ({', '.join(absent[:3])}"
                             f"{', ...' if len(absent) > 3 else ''}); asking each again alone "
                             f"in {delay:.0f} s before calling it not found")  # fmt: skip
        for b in verdict.refused:
            tries[b].refused += 1
        spent = [b for b in verdict.refused if tries[b].refused >= ATTEMPTS]
        if spent:
            why = f"arXiv's API {verdict.why} ({ATTEMPTS} tries); a later run asks again"
            self.notices.add(f"metadata unavailable for {len(spent)} papers: {why}")
            lost = {b: PaperMetadata(b, "unavailable", "arxiv-api", reason=why).to_json()
                    for b in spent}  # fmt: skip
            self._resolve(lost, keep=False)
        if again := [b for b in verdict.refused if b not in spent]:
            delay = self._delay(again)
            self._due.update(dict.fromkeys(again, now + delay))
            self.notices.add(f"arXiv's API {verdict.why}; asking again in {delay:.0f} s")

    def _keep(self, ids: list[str]) -> None:
        """IDs the API gave no answer for: asked again as they were (those asked before, due
        again, with what earlier answers said of them; new ones first of the new)."""
        now = time.monotonic()
        self._due.update({b: now for b in ids if b in self._tries})
        self._wanted[:0] = [b for b in ids if b not in self._tries]

    def _delay(self, ids: list[str]) -> float:
        """The wait before `ids` are asked again: `retry`, doubling with their tries."""
        n = max(self._tries[b].absent + self._tries[b].refused for b in ids)
        return retry_delay(n, self.retry, 8 * self.retry)

    async def _ask(self, ids: list[str]) -> Verdict | NoAnswer:
        """Ask the API for `ids`, once: what the answer means for each (all of them refused
        when there was nothing to read in it), or that there was no answer."""
        if self._client is None:
            self._client = await asyncio.to_thread(self._make_client)
        try:
            got = await self._request(ids)
        except (httpx.HTTPError, ValueError) as exc:
            got = f"{type(exc).__name__}: {exc}"
        if isinstance(got, NoAnswer):
            return got
        if self.outage is not None:
            self.outage.answered()
        if not isinstance(got, str):
            status, feed = got
            if status == 200 or any(b in ids for b in feed.bad_ids):
                return judge(ids, feed, status)
            got = f"HTTP 400 from the API: {'; '.join(feed.errors) or 'no reason given'}"
        return Verdict({}, [], list(ids), [], [], f"did not answer for {len(ids)} IDs ({got})")

    async def _request(self, ids: list[str]) -> tuple[int, Feed] | str | NoAnswer:
        """One request, inside the gate's one fleet-wide slot (held until the body is read and
        parsed, or given up on: the slot is let go on every way out)."""
        if self.gate is not None:
            await self.gate.acquire()
        try:
            self.requests += 1
            assert self._client is not None
            return await read_answer(self._client, query_url(self.url, ids), ids, io=self.io,
                                     deadline=self.deadline, retry=self.retry)  # fmt: skip
        finally:
            if self.gate is not None:
                done = self.gate.answered()
                if done is not None:
                    await done

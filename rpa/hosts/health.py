"""Host health of one run: the one owner of every host's gate, cooldown and breaker.

In memory, `HostGates` holds each host's rate gate (fleet-wide slots when the host has a cap),
its Retry-After cooldown and its breaker. In the queue, the `hosts` table holds the same
cooldowns and breakers for every process of the queue and for later runs. `HostHealth` keeps
the two in step, both ways: what this run learns (a 403, a Retry-After) it applies here and
stores; what another process stored (`follow`, at every heartbeat) or an earlier run stored
(`restore`, at the start) binds this run too. Which papers may be claimed while a host refuses
us or is down is decided here as well (`claimable`). A paper whose redirect leads to another
host that refused us is held for it in the queue (rpa.run.policy's `hold`: never due, so no
process claims it); a new run's `restore` closes every breaker and releases those papers, and
a run that leaves only held papers ends `denied`, saying how many wait (`refused_us`).

A host that stops answering (connections refused or reset, timeouts, before any answer) is
down, not its papers (rpa.hosts.outage): their attempts are not counted, no paper of it is claimed,
and `watch` probes it with one request on a backoff until it answers; then claiming resumes.
The outage is stored for the fleet until the next probe; the other processes hold their
requests to the host while it is (`_hold`). Every time stored in the `hosts` table is by the
database's clock, never a process's own: hosts' clocks differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from rpa import errors
from rpa.config import Settings
from rpa.hints import command_hint
from rpa.hosts.fleet import FleetRateGate
from rpa.hosts.outage import SERVER_DOWN, Outages
from rpa.hosts.registry import HostGate, HostGates
from rpa.notices import Notices
from rpa.queue import hosts as queue_hosts
from rpa.queue import runs as queue_runs
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import ACTIVE_STAGES, HostState
from rpa.queue.store import QueueStore

__all__ = ["HostHealth"]

#: papers remembered with a failure at the connection (the oldest forgotten first)
MAX_STRIKES = 100_000
#: what may be claimed while the primary host refuses us: only work past the download
AFTER_DOWNLOAD = ("downloaded", "extracted")
#: heartbeats at a time that an outage another process stored holds this one's requests
FOLLOW_BEATS = 3


def _clock_time(wall: float) -> str:
    """A time of day, with its date when it is not today's (a Retry-After of a day)."""
    local = time.localtime(wall)
    today = time.localtime()[:3] == local[:3]
    return time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M:%S", local)


def _cool_down(store: QueueStore, host: str, seconds: float, reason: str) -> None:
    """Store a cooldown of `host` for `seconds` from now, by the database's clock (as the
    liveness and the rate slots are: one clock for hosts whose clocks differ)."""
    now = queue_hosts.database_clock(store)
    queue_hosts.set_cooldown(store, host, now + seconds, reason, now)


def _others_live(store: QueueStore, run_id: str) -> bool:
    """Is any run of the queue but `run_id` alive?"""
    return bool(queue_runs.live_runs(store) - {run_id})


def _stored(store: QueueStore) -> list[tuple[HostState, float]]:
    """Every host's stored state, with the seconds its cooldown has left (by the database's
    clock; 0 or less: none)."""
    now = queue_hosts.database_clock(store)
    return [(state, (state.cooldown_until or 0.0) - now) for state in queue_hosts.all_hosts(store)]


class HostHealth:
    """The hosts of one run (`gates`), synced with the queue's `hosts` table."""

    def __init__(
        self, settings: Settings, *, queue: AsyncQueue, run_id: str, notices: Notices
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._run_id = run_id
        self._notices = notices
        # A host's cap is one budget for every process of the queue (FleetRateGate).
        self.gates = HostGates(
            settings.rate_limits if settings.network else "",
            primary=settings.pdf_host,
            make_gate=self.fleet_gate,
        )
        self.outages = Outages(primary=settings.pdf_host)
        self.gates.on_heard = self.answered
        #: papers whose last download failed at the connection, and when (monotonic)
        self._strikes: dict[str, float] = {}
        self._outage_found = asyncio.Event()
        #: hosts this process stored down in the queue (for the fleet and `rpa status`)
        self._stored_down: set[str] = set()
        #: called when a host answers again (the feeder may claim its papers)
        self.on_back: list[Callable[[], None]] = []
        #: what else the run waits for because of a host that is no PDF host (the metadata
        #: API: rpa.run.metadata), said with the hosts' waits
        self.also_waits: list[Callable[[], str | None]] = []

    @property
    def primary(self) -> str:
        """The host of --pdf-url: where the queue's papers come from."""
        return self.gates.primary

    def fleet_gate(self, name: str, count: int, period: float) -> HostGate:
        """A rate gate whose `count` slots per `period` are shared by every process of the
        queue (arXiv's download budget; the metadata API's)."""
        s = self._settings
        # a slot whose holder died frees once no request could still be waiting for its answer
        hold = s.connect_timeout + s.read_timeout + period
        return FleetRateGate(name, count, period, queue=self._queue, holder=self._run_id, hold=hold)

    # ---- what the run asks -----------------------------------------------------------------

    def claimable(self) -> tuple[str, ...]:
        """The stages a job may be claimed at: none before the download while the primary
        host refuses us (what is downloaded is still finished)."""
        if self.gates.breaker_open(self.primary) or self.outages.is_down(self.primary):
            return AFTER_DOWNLOAD
        return ACTIVE_STAGES

    def waiting_for_a_host(self) -> bool:
        """Is work held back by a host that is down (and will be probed)?"""
        return self.outages.is_down(self.primary)

    def may_be_unreachable(self) -> bool:
        """Is the PDF host down without ever having answered in this run: the run stops,
        `unreachable`, if it fails its first probes too (rpa.hosts.outage)?"""
        return self.waiting_for_a_host() and self.outages.never_answered(self.primary)

    async def refused_us(self) -> bool:
        """Does the run end `denied`: the primary host refused us, or papers are held for
        hosts that refused us (redirect targets)? Said, with how many wait for which host."""
        if self.gates.breaker_open(self.primary):
            return True
        held = await self._queue.run(queue_hosts.held)
        if not held:
            return False
        hosts = "; ".join(f"{host} ({why})" for host, why in self.gates.refusing())
        self._notices.add(
            f"{held} papers wait for hosts that refused us: {hosts or 'another process saw it'}"
            f". They stay queued, not failed: `{command_hint('resume')}` asks again."
        )
        return True

    def waits(self) -> list[str]:
        """What the run waits for because of a host, said for the user."""
        down = [
            f"{host} to answer again (down since {_clock_time(since)}: {why})"
            for host, since, why in self.outages.down()
        ]
        cooling = [
            f"{host} cooldown until {_clock_time(time.time() + deadline - time.monotonic())}"
            for host, deadline in self.gates.cooling_down()
            if not self.outages.is_down(host)
        ]
        return down + cooling + [wait for waits in self.also_waits if (wait := waits())]

    # ---- what the run learns ---------------------------------------------------------------

    def answered(self, host: str | None) -> None:
        """A host answered a request (whatever it said): it works."""
        host = host or self.primary
        if self.outages.answered(host):
            self._back(host, "answers again")

    def connection_failed(
        self, host: str | None, job_id: str, reason: str, *, cut: bool = False
    ) -> bool:
        """A request for `job_id`'s paper got no answer from its host, or (`cut`) an answer
        that broke off mid-body. True if that is not the paper's fault (its first such
        failure, or the host has not answered since its last); a few with no answer in a row
        make the host down, and probed (a cut answer is no sign of that: the host answered)."""
        host = host or self.primary
        before = self._strikes.pop(job_id, None)
        if not cut and self.outages.failed(host, reason):
            self._notices.add(
                f"{host} does not answer ({reason}): its papers wait, no attempt is counted; "
                "probing it until it answers",
                key=f"down {host}",
            )
            self._outage_found.set()
        if before is not None and self.outages.answered_since(host, before):
            # the host answered between this paper's two failures: the paper's; its next
            # failure is judged from this one
            self._strikes[job_id] = self.outages.now()
            return False
        if len(self._strikes) >= MAX_STRIKES:
            self._strikes.pop(next(iter(self._strikes)))
        self._strikes[job_id] = self.outages.now()
        return True

    def paper_fetched(self, job_id: str) -> None:
        """`job_id`'s paper came: a failure it had before was not its own."""
        self._strikes.pop(job_id, None)

    async def refused(self, host: str | None, reason: str) -> None:
        """A host refused us (403, arXiv's denial page): no request goes there again, here or
        in any process of the queue, until a new run tries it again."""
        host = host or self.primary
        if self.gates.open_breaker(host, reason):
            if host.lower().rstrip(".") == self.primary:
                arxiv = host.lower().rstrip(".").endswith("arxiv.org")
                self._notices.add(
                    f"{host} refused us ({reason}); downloads from it stopped. Finishing what "
                    f"is downloaded. Wait before `{command_hint('resume')}`"
                    + ("; arXiv's bulk data is the way for large lists." if arxiv else ".")
                )
            else:
                self._notices.add(
                    f"{host} refused us ({reason}); no request goes there again in this run: "
                    "the papers that lead there wait, queued (not failed); the others go on"
                )
            await self._queue.run(queue_hosts.open_breaker, host, reason, time.time())

    async def asked_to_wait(self, host: str | None, seconds: float, reason: str) -> None:
        """A host asked us to wait (Retry-After): every job of it waits, here and in every
        process of the queue."""
        host = host or self.primary
        self.gates.pause_until(host, time.monotonic() + seconds)
        until = _clock_time(time.time() + seconds)
        self._notices.add(
            f"{host} asked us to wait {seconds:.0f}s (Retry-After): no request to it before "
            f"{until}",
            key=f"cooldown {host} {until}",
        )
        await self._queue.run(_cool_down, host, seconds, reason)

    def _back(self, host: str, how: str) -> None:
        self._outage_found.set()  # the watch clears the outage it stored
        self._notices.forget(f"down {host}")
        self._notices.add(f"{host} {how}: claiming its papers again")
        for wake in self.on_back:
            wake()

    # ---- probing a host that is down -------------------------------------------------------

    def _probe_url(self, host: str) -> str:
        parts = urlsplit(self._settings.pdf_url.replace("{id}", "x"))
        if host == self.primary and parts.scheme in ("http", "https"):
            return f"{parts.scheme}://{parts.netloc}/"
        return f"https://{host}/"

    async def _probe(self, client: httpx.AsyncClient, host: str) -> str | None:
        """One request to `host`, through its gate: None if it answered (any status but a
        server error: a proxy's 502 in front of a server that is down is no answer), else
        why not."""
        await self.gates.acquire(host)
        try:
            async with asyncio.timeout(
                self._settings.connect_timeout + self._settings.read_timeout
            ):
                response = await client.get(self._probe_url(host))
                await response.aclose()
            if response.status_code in SERVER_DOWN:
                return f"HTTP {response.status_code} {response.reason_phrase}"
            return None
        except (httpx.HTTPError, TimeoutError, OSError, errors.JobError) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            await self.gates.answered(host)

    async def watch(self, client: httpx.AsyncClient) -> None:
        """Probe every host that is down, each on its backoff, until it answers. Ends the
        run's wait for a host that was never there (`outages.unreachable`) by returning."""
        while True:
            wait = self.outages.next_probe_in()
            self._outage_found.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait if wait is not None else None):
                    await self._outage_found.wait()
            for host in self.outages.due():
                why = await self._probe(client, host)
                if why is None:
                    self.answered(host)
                    continue
                self.outages.probe_failed(host, why)
                if self.outages.unreachable is not None:
                    return
            await self._store_outages()

    async def _store_outages(self) -> None:
        """Tell every process of the queue (and `rpa status`) which hosts are down: each is
        stored as a cooldown until its next probe (the others hold their requests to it), with
        why and since when; cleared when it answers again."""
        down = {host: (since, why) for host, since, why in self.outages.down()}
        for host, (since, why) in down.items():
            reason = f"{queue_hosts.DOWN} {_clock_time(since)}: {why}"
            await self._queue.run(_cool_down, host, self.outages.probe_in(host) + 1.0, reason)
            self._stored_down.add(host)
        for host in self._stored_down - down.keys():
            await self._queue.run(queue_hosts.clear_down, host, time.time())
            self._stored_down.discard(host)

    # ---- what the queue says ---------------------------------------------------------------

    async def restore(self) -> None:
        """At the start: respect a cooldown a previous run stored, and an outage another
        process finds now (an outage stored by runs that are all gone is cleared: nobody
        probes it any more, and this run finds out for itself); close every open breaker (a
        new run tries each host again) and let the papers held for them be claimed."""
        now = time.time()
        alone = not await self._queue.run(_others_live, self._run_id)
        for state, remaining in await self._queue.run(_stored):
            if alone and state.reason.startswith(queue_hosts.DOWN):
                await self._queue.run(queue_hosts.clear_down, state.host, now)
                continue
            hold = self._hold(state, remaining)
            if hold > 0 and state.host == self.primary:
                self.gates.pause_until(state.host, time.monotonic() + hold)
                if not self._down_elsewhere(state, hold):
                    self._notices.add(
                        f"{state.host} asked us to wait: no request to it before "
                        f"{_clock_time(now + remaining)} ({state.reason})"
                    )
            if state.breaker_open:
                self._notices.add(f"{state.host} had refused us ({state.reason}); trying again")
                await self._queue.run(queue_hosts.close_breaker, state.host, now)
        released = await self._queue.run(queue_hosts.release_held, now)
        if released:
            self._notices.add(f"{released} papers held for a host that refused us: asking again")

    async def follow(self) -> None:
        """At each heartbeat: a cooldown, an outage or a breaker another process of the queue
        stored binds this one too."""
        for state, remaining in await self._queue.run(_stored):
            hold = self._hold(state, remaining)
            if hold > 0:
                self.gates.pause_until(state.host, time.monotonic() + hold)
            self._down_elsewhere(state, hold)
            if state.breaker_open and self.gates.open_breaker(state.host, state.reason):
                self._notices.add(
                    f"{state.host} refused another run of this queue ({state.reason}); "
                    "downloads from it stopped here too"
                )

    def _hold(self, state: HostState, remaining: float) -> float:
        """Seconds to hold this process's requests to `state.host` for what the queue says
        (`remaining`: its stored cooldown's, by the database's clock; 0 or less: none).

        A Retry-After is waited out whole. An outage is stored until its finder's next probe,
        which may take up to a request's timeouts before the finder stores the next: it holds
        while that probe may still be under way (without, the others' requests went out at
        each probe), a few heartbeats at a time, so that this process asks the host again
        soon after the finder clears it (or is gone: its outage then lapses). This process's
        own outage holds nothing here: its probes go on their own backoff."""
        if not state.reason.startswith(queue_hosts.DOWN):
            return remaining
        if self.outages.is_down(state.host) or state.host in self._stored_down:
            return 0.0
        s = self._settings
        probe = s.connect_timeout + s.read_timeout
        return min(remaining + probe, FOLLOW_BEATS * s.heartbeat_seconds)

    def _down_elsewhere(self, state: HostState, hold: float) -> bool:
        """Is `state` an outage another process found, held here for `hold` seconds? Said
        once while it lasts: this process holds its requests to that host too."""
        key = f"down elsewhere {state.host}"
        if hold <= 0 or not state.reason.startswith(queue_hosts.DOWN):
            self._notices.forget(key)
            return False
        self._notices.add(
            f"{state.host} is down, found by another run of this queue ({state.reason}): "
            "no request to it here either until it answers",
            key=key,
        )
        return True

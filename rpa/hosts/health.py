"""Host health of one run: the one owner of every host's gate, cooldown and breaker.

In memory, `HostGates` holds each host's rate gate (fleet-wide slots when the host has a cap),
its Retry-After cooldown and its breaker. In the queue, the `hosts` table holds the same
cooldowns and breakers for every process of the queue and for later runs. `HostHealth` keeps
the two in step, both ways: what this run learns (a 403, a Retry-After) it applies here and
stores; what another process stored (`follow`, at every heartbeat) or an earlier run stored
(`restore`, at the start) binds this run too. Which papers may be claimed while a host refuses
us is decided here as well (`claimable`).
"""

from __future__ import annotations

import time

from rpa.config import Settings
from rpa.hosts.fleet import FleetRateGate
from rpa.hosts.registry import HostGate, HostGates
from rpa.notices import Notices
from rpa.queue import hosts as queue_hosts
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import ACTIVE_STAGES

__all__ = ["HostHealth"]

#: what may be claimed while the primary host refuses us: only work past the download
AFTER_DOWNLOAD = ("downloaded", "extracted")


def _clock_time(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


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
        if self.gates.breaker_open(self.primary):
            return AFTER_DOWNLOAD
        return ACTIVE_STAGES

    def refused_us(self) -> bool:
        """Did the primary host refuse us (its breaker is open)?"""
        return self.gates.breaker_open(self.primary)

    def waits(self) -> list[str]:
        """What the run waits for because of a host, said for the user."""
        return [
            f"{host} cooldown until {_clock_time(time.time() + deadline - time.monotonic())}"
            for host, deadline in self.gates.cooling_down()
        ]

    # ---- what the run learns ---------------------------------------------------------------

    async def refused(self, host: str | None, reason: str) -> None:
        """A host refused us (403, arXiv's denial page): no request goes there again, here or
        in any process of the queue, until a new run tries it again."""
        host = host or self.primary
        if self.gates.open_breaker(host, reason):
            self._notices.add(
                f"{host} refused us ({reason}); downloads from it stopped. Finishing "
                "what is downloaded. Wait before `rpa resume`; arXiv's bulk data is the "
                "way for large lists."
            )
            await self._queue.run(queue_hosts.open_breaker, host, reason, time.time())

    async def asked_to_wait(self, host: str | None, seconds: float, reason: str) -> None:
        """A host asked us to wait (Retry-After): every job of it waits, here and in every
        process of the queue."""
        host = host or self.primary
        now = time.time()
        self.gates.pause_until(host, time.monotonic() + seconds)
        until = _clock_time(now + seconds)
        self._notices.add(
            f"{host} asked us to wait {seconds:.0f}s (Retry-After): no request to it before "
            f"{until}",
            key=f"cooldown {host} {until}",
        )
        await self._queue.run(queue_hosts.set_cooldown, host, now + seconds, reason, now)

    # ---- what the queue says ---------------------------------------------------------------

    async def restore(self) -> None:
        """At the start: respect a cooldown a previous run stored; close an open breaker (a
        new run tries the host again)."""
        host = self.primary
        state = await self._queue.run(queue_hosts.host_state, host)
        if state is None:
            return
        remaining = (state.cooldown_until or 0.0) - time.time()
        if remaining > 0:
            self.gates.pause_until(host, time.monotonic() + remaining)
            until = _clock_time(state.cooldown_until or 0.0)
            self._notices.add(
                f"{host} asked us to wait: no request to it before {until} ({state.reason})"
            )
        if state.breaker_open:
            self._notices.add(f"{host} had refused us ({state.reason}); trying again")
            await self._queue.run(queue_hosts.close_breaker, host, time.time())

    async def follow(self) -> None:
        """At each heartbeat: a cooldown or a breaker another process of the queue set binds
        this one too."""
        now = time.time()
        for state in await self._queue.run(queue_hosts.all_hosts):
            remaining = (state.cooldown_until or 0.0) - now
            if remaining > 0:
                self.gates.pause_until(state.host, time.monotonic() + remaining)
            if state.breaker_open and self.gates.open_breaker(state.host, state.reason):
                self._notices.add(
                    f"{state.host} refused another run of this queue ({state.reason}); "
                    "downloads from it stopped here too"
                )

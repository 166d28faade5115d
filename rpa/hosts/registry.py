"""Every host rpa talks to has its gate: its rate cap, its Retry-After cooldown, its breaker.

`HostGates` makes the gate of a host the first time a request goes there (a redirect target
included), with the cap `--rate-limits` gives that host (none: only cooldowns). A 403 opens
that host's breaker: no request goes there again in this run. `same_site` is the redirect
policy's notion of a site.
"""

from __future__ import annotations

import inspect
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from rpa.errors import AccessDenied
from rpa.gates import GateStatistics
from rpa.hosts.rate import RateGate
from rpa.rates import parse_rate_limits

__all__ = ["HostGate", "HostGates", "same_site", "site_of"]


class HostGate(Protocol):
    """What a host's gate offers: rpa.hosts.rate.RateGate (one process), or a fleet-wide one
    (rpa.hosts.fleet.FleetRateGate) whose slots live in the queue database."""

    @property
    def count(self) -> int | None: ...
    @property
    def paused(self) -> bool: ...
    @property
    def paused_until(self) -> float: ...
    async def acquire(self) -> float: ...
    def answered(self) -> Awaitable[None] | None: ...
    def pause_until(self, monotonic_deadline: float) -> None: ...
    def statistics(self) -> GateStatistics: ...


#: makes the gate of a host with a cap: (host, count, period) -> gate
GateFactory = Callable[[str, int, float], HostGate]


def site_of(host: str) -> str:
    """The site a host belongs to: an IP address is its own site; a name is its registrable
    domain, approximated without the Public Suffix List as the last two labels, or three
    when the second-level label is a short one under a country code (example.co.uk)."""
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def same_site(a: str, b: str) -> bool:
    return site_of(a) == site_of(b)


@dataclass(slots=True)
class _Host:
    gate: HostGate
    breaker_reason: str | None = None


class HostGates:
    """The per-host gates of one run."""

    def __init__(
        self, rate_limits: str, primary: str = "", make_gate: GateFactory | None = None
    ) -> None:
        self._limits = parse_rate_limits(rate_limits)
        self._hosts: dict[str, _Host] = {}
        self._make_gate = make_gate
        #: the host of --pdf-url: where the queue's papers come from
        self.primary = primary.lower().rstrip(".")
        #: told of every answer a host gives (host health: the host works)
        self.on_heard: Callable[[str], None] | None = None
        #: requests waiting at a host's gate now (its cap, a cooldown): no work under way
        self.waiting = 0

    def heard_from(self, host: str) -> None:
        """`host` answered a request (its status line came): it works."""
        if self.on_heard is not None:
            self.on_heard(host)

    def _host(self, host: str) -> _Host:
        key = host.lower().rstrip(".")
        entry = self._hosts.get(key)
        if entry is None:
            count, period = self._limits.get(key, (None, 1.0))
            gate: HostGate
            if count is not None and self._make_gate is not None:
                gate = self._make_gate(key, count, period)
            else:
                gate = RateGate(f"host {key}", count, period)
            entry = self._hosts[key] = _Host(gate)
        return entry

    def gate(self, host: str) -> HostGate:
        return self._host(host).gate

    async def acquire(self, host: str) -> float:
        """Take a request slot at `host`'s gate (cooldown and cap); the seconds waited.
        Raises AccessDenied if the host's breaker is open."""
        entry = self._host(host)
        self.check(host)
        self.waiting += 1
        try:
            waited = await entry.gate.acquire()
        finally:
            self.waiting -= 1
        self.check(host)  # it may have opened while we waited
        return waited

    def check(self, host: str) -> None:
        reason = self._host(host).breaker_reason
        if reason is not None:
            raise AccessDenied(f"downloads from {host} are stopped: {reason}", host=host)

    async def answered(self, host: str) -> None:
        """The request to `host` got its answer (or failed): its slot frees in the period."""
        done = self._host(host).gate.answered()
        if inspect.isawaitable(done):
            await done

    def open_breaker(self, host: str, reason: str) -> bool:
        """Stop every request to `host`; False if it was open already."""
        entry = self._host(host)
        if entry.breaker_reason is not None:
            return False
        entry.breaker_reason = reason
        return True

    def breaker_open(self, host: str) -> bool:
        return self._host(host).breaker_reason is not None

    def refusing(self) -> list[tuple[str, str]]:
        """(host, reason) of every host whose breaker is open."""
        return [(n, h.breaker_reason) for n, h in self._hosts.items() if h.breaker_reason]

    def pause_until(self, host: str, monotonic_deadline: float) -> None:
        self._host(host).gate.pause_until(monotonic_deadline)

    def cooling_down(self) -> list[tuple[str, float]]:
        """(host, monotonic deadline) of every host in a Retry-After cooldown now."""
        return [(name, h.gate.paused_until) for name, h in self._hosts.items() if h.gate.paused]

    def statistics(self) -> list[GateStatistics]:
        """The gates worth showing: hosts with a cap, or cooling down."""
        return [
            h.gate.statistics()
            for h in self._hosts.values()
            if h.gate.count is not None or h.gate.paused
        ]

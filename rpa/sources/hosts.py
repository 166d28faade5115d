"""Every host rpa talks to has its gate: its rate cap, its Retry-After cooldown, its breaker.

`HostGates` makes the gate of a host the first time a request goes there (a redirect target
included), with the cap `--rate-limits` gives that host (none: only cooldowns). A 403 opens
that host's breaker: no request goes there again in this run. `same_site` is the redirect
policy's notion of a site.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from rpa.config import parse_rate_limits
from rpa.errors import AccessDenied
from rpa.gates import GateStatistics, RateGate

__all__ = ["HostGates", "same_site", "site_of"]


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
    gate: RateGate
    breaker_reason: str | None = None


class HostGates:
    """The per-host gates of one run."""

    def __init__(self, rate_limits: str, primary: str = "") -> None:
        self._limits = parse_rate_limits(rate_limits)
        self._hosts: dict[str, _Host] = {}
        #: the host of --pdf-url: where the queue's papers come from
        self.primary = primary.lower().rstrip(".")

    def _host(self, host: str) -> _Host:
        key = host.lower().rstrip(".")
        entry = self._hosts.get(key)
        if entry is None:
            count, period = self._limits.get(key, (None, 1.0))
            entry = self._hosts[key] = _Host(RateGate(f"host {key}", count, period))
        return entry

    def gate(self, host: str) -> RateGate:
        return self._host(host).gate

    async def acquire(self, host: str) -> float:
        """Take a request slot at `host`'s gate (cooldown and cap); the seconds waited.
        Raises AccessDenied if the host's breaker is open."""
        entry = self._host(host)
        self.check(host)
        waited = await entry.gate.acquire()
        self.check(host)  # it may have opened while we waited
        return waited

    def check(self, host: str) -> None:
        reason = self._host(host).breaker_reason
        if reason is not None:
            raise AccessDenied(f"downloads from {host} are stopped: {reason}", host=host)

    def answered(self, host: str) -> None:
        self._host(host).gate.answered()

    def open_breaker(self, host: str, reason: str) -> bool:
        """Stop every request to `host`; False if it was open already."""
        entry = self._host(host)
        if entry.breaker_reason is not None:
            return False
        entry.breaker_reason = reason
        return True

    def breaker_open(self, host: str) -> bool:
        return self._host(host).breaker_reason is not None

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

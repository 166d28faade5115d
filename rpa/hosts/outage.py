"""Is a host down, or is it the paper? The evidence, kept per host.

A host that answers (a PDF, a 404, an HTML page) works. A download that fails before any
answer (refused, reset, a timeout) or with a server error (500, 502, 503 without Retry-After,
504: `SERVER_DOWN`) tells nothing about the paper by itself; an
answer that began and then broke off says the host works, and is the paper's, as before.
`DOWN_AFTER` failures before any answer in a row, with no answer from the host in between, say
the host is down: no paper of it is claimed, and it is probed with one request on a backoff
(1 s, doubling to `PROBE_MAX`) until it answers; then its papers go on. A paper is charged only
when its download fails so a second time after the host answered in between (rpa.hosts.health
keeps these strikes): the host works, and the paper does not. An outage costs no paper that
had not begun its download anything; a lone refusal costs its paper one more request.

The PDF host, if it has never answered in this run and fails `FIRST_PROBES` probes (about 7 s),
is not down but wrong (a mistyped port, a name that does not resolve): `unreachable` says so,
and the run stops rather than wait for a server that was never there. Another host (a
redirect's target) is only ever down: its papers wait for it, the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DOWN_AFTER", "FIRST_PROBES", "PROBE_FIRST", "PROBE_MAX", "SERVER_DOWN", "Outages"]

#: the first probe's delay after a host is found down; it doubles after each failed probe
PROBE_FIRST = 1.0
#: the longest wait between two probes
PROBE_MAX = 300.0
#: probes a host that never answered in this run may fail before it is called unreachable
FIRST_PROBES = 3
#: failures at the connection in a row, with no answer in between, that make a host down
DOWN_AFTER = 3
#: statuses that are no answer from the host's server: a server error, a proxy or load
#: balancer in front of a server that is down (503 with a Retry-After is a cooldown instead)
SERVER_DOWN = frozenset({500, 502, 503, 504})


@dataclass(slots=True)
class _Host:
    last_answer: float = float("-inf")  # monotonic
    answered_ever: bool = False
    down_since: float | None = None  # wall clock, for the user
    reason: str = ""
    next_probe: float = 0.0  # monotonic
    delay: float = PROBE_FIRST
    probes: int = 0
    in_a_row: int = 0  # failures at the connection since the last answer


class Outages:
    """The hosts found down in this run, and when to probe each."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, primary: str | None = None
    ) -> None:
        """`primary`: the PDF host (--url-template's); only it can be `unreachable` (None:
        any host). Another host (a redirect's target) that never answers is down: its papers
        wait for it, the others go on."""
        self._clock = clock
        self._hosts: dict[str, _Host] = {}
        self._primary = None if primary is None else primary.lower().rstrip(".")
        #: why the run cannot go on: the PDF host never answered and fails its probes
        self.unreachable: str | None = None

    def _host(self, host: str) -> _Host:
        return self._hosts.setdefault(host.lower().rstrip("."), _Host())

    def answered(self, host: str) -> bool:
        """`host` answered a request: it works. True if that ends its outage."""
        h = self._host(host)
        h.last_answer = self._clock()
        h.answered_ever = True
        was_down = h.down_since is not None
        h.down_since, h.delay, h.probes, h.in_a_row = None, PROBE_FIRST, 0, 0
        return was_down

    def failed(self, host: str, reason: str) -> bool:
        """A request to `host` failed at the connection. True if that makes the host down
        (`DOWN_AFTER` in a row): it stays down until it answers a probe."""
        h = self._host(host)
        h.in_a_row += 1
        if h.down_since is not None or h.in_a_row < DOWN_AFTER:
            return False
        h.down_since, h.reason = time.time(), reason
        h.next_probe = self._clock() + PROBE_FIRST
        return True

    def answered_since(self, host: str, when: float) -> bool:
        """Has `host` answered anything since `when` (monotonic)?"""
        return self._host(host).last_answer > when

    def now(self) -> float:
        return self._clock()

    def is_down(self, host: str) -> bool:
        return self._host(host).down_since is not None

    def never_answered(self, host: str) -> bool:
        """Has `host` answered nothing in this run?"""
        return not self._host(host).answered_ever

    def down(self) -> list[tuple[str, float, str]]:
        """(host, since: wall clock, why) of every host down now."""
        return [(n, h.down_since, h.reason) for n, h in self._hosts.items() if h.down_since]

    def due(self) -> list[str]:
        """The hosts down whose next probe is due now."""
        now = self._clock()
        return [n for n, h in self._hosts.items() if h.down_since and h.next_probe <= now]

    def probe_in(self, host: str) -> float:
        """Seconds until `host`'s next probe (0 when due, or not down)."""
        return max(0.0, self._host(host).next_probe - self._clock())

    def next_probe_in(self) -> float | None:
        """Seconds until the next probe of any host down, or None when none is down."""
        waits = [h.next_probe - self._clock() for h in self._hosts.values() if h.down_since]
        return max(0.0, min(waits)) if waits else None

    def probe_failed(self, host: str, reason: str) -> None:
        """A probe of `host` got no answer: probe again later (backoff), or, for a host that
        never answered in this run, say it is unreachable (the PDF host only)."""
        h = self._host(host)
        h.probes += 1
        h.reason = reason
        primary = self._primary is None or host.lower().rstrip(".") == self._primary
        if primary and not h.answered_ever and h.probes >= FIRST_PROBES:
            self.unreachable = f"cannot reach {host} ({reason})"
            return
        h.delay = min(h.delay * 2, PROBE_MAX)
        h.next_probe = self._clock() + h.delay

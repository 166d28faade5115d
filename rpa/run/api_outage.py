"""Does arXiv's metadata API answer? The metadata stage's condition, kept apart from its papers.

An API that does not answer (connection refused or reset, a timeout before any answer, a server
error: 500, 502, 503 or 504 without Retry-After; the PDF hosts' notion, rpa.hosts.outage) says
nothing about the papers asked: their IDs are kept, uncounted, and asked again. `DOWN_AFTER`
such requests in a row make the API down: said once, on screen, in the JSON lines and in the
run's `waiting` (`rpa status`); it is then probed on a backoff (1 s, doubling to 5 min; arXiv's
gate spaces them by at least --metadata-rate's period), each probe one real batch of the
waiting IDs, until it answers. An API that asks us to wait (429, or 503 with Retry-After) is
waited for as long as it asks. Papers waiting for their metadata wait (not charged, not done
without it); the others go on.

The wait is bounded: past --metadata-wait seconds without an answer, or, for a --metadata-url
other than arXiv's, if it never answered in this run and fails its first probes (a mistyped
port: about 10 s; arXiv's own API down as a run starts is waited for), `gone` says why, and
the papers still waiting get `MetadataStayedAway`: the run stops as `interrupted`
(rpa.run.feeder) and `rpa resume` continues. No paper's metadata is ever stored, or written
`unavailable`, because of an outage.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rpa.hosts.outage import Outages
from rpa.notices import Notices

__all__ = ["ApiOutage"]

_KEY = "down metadata api"


def _clock_time(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


class ApiOutage:
    """The metadata API's availability in this run, what it is waited for, and until when."""

    def __init__(
        self,
        name: str,
        notices: Notices,
        limit: float,
        *,
        fail_fast: bool,
        quiet: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`name`: the API's host[:port], as the user gave it; `limit`: --metadata-wait;
        `fail_fast`: an API that never answered is not there (not arXiv's own URL); `quiet`:
        while true, the API found down is not said yet (the PDF host never answered and is
        down: the run may stop for it in seconds, and a wait of --metadata-wait would be
        wrong), but at its next failed probe once false."""
        self.name = name
        self.limit = limit
        self._notices = notices
        self._clock = clock
        # Outages calls only its primary host `unreachable`: "" is no host's name
        self._outages = Outages(clock, primary=name if fail_fast else "")
        #: when the current streak without an answer began (wall clock), and why it goes on
        self._since: float | None = None
        self._reason = ""
        self._quiet = quiet
        self._unsaid = False  # found down, not said yet (`quiet`)
        self._until = 0.0  # monotonic: the API asked us to wait until then (Retry-After)
        #: why the run stops waiting for the API (past the limit, or never there)
        self.gone: str | None = None

    def answered(self) -> None:
        """The API answered (whatever it said): the wait, if any, is over."""
        down = self._outages.is_down(self.name) and not self._unsaid
        if self._since is not None and (down or self._until):
            self._notices.forget(_KEY)
            self._notices.add(
                f"arXiv's API answers again after {time.time() - self._since:.0f} s: the papers "
                "waiting for their metadata go on"
            )
        self._outages.answered(self.name)
        self._since, self._until, self._unsaid = None, 0.0, False

    def failed(self, reason: str, retry_after: float | None, waiting: int) -> None:
        """A request got no answer (`retry_after` None), or was asked to wait `retry_after`
        seconds; `waiting`: the papers that wait for the API now."""
        now = time.time()
        if self._since is None:
            self._since = now
        self._reason = reason
        o, name = self._outages, self.name
        if retry_after is not None:
            o.answered(name)  # it answered: it is there, and busy
            self._unsaid = False
            self._until = self._clock() + retry_after
            self._notices.add(
                f"arXiv's API asked us to wait {retry_after:.0f} s ({reason}): {waiting} papers "
                f"wait for their metadata, none is charged; asking again at "
                f"{_clock_time(now + retry_after)}",
                key=f"metadata cooldown {_clock_time(now + retry_after)}",
            )
        elif o.is_down(name):
            o.probe_failed(name, reason)
            if o.unreachable is not None:
                self.gone = (
                    f"arXiv's API at {name} never answered in this run ({reason}); check "
                    "--metadata-url (or --metadata off)"
                )
        elif o.failed(name, reason):
            self._unsaid = True
        if self._unsaid and self.gone is None and not self._quiet():
            self._unsaid = False
            self._notices.add(
                f"arXiv's API ({name}) does not answer ({reason}): {waiting} papers wait for "
                "their metadata, none is charged; probing it until it answers (at most "
                f"--metadata-wait {self.limit:g} s)",
                key=_KEY,
            )
        self._overdue()

    def hold(self) -> float:
        """Seconds before the API may be asked again: 0 unless it is down (its next probe) or
        asked us to wait."""
        o = self._outages
        probe = o.probe_in(self.name) if o.is_down(self.name) else 0.0
        return max(probe, self._until - self._clock(), 0.0)

    def overdue_in(self) -> float | None:
        """Seconds until the wait passes --metadata-wait (None when nothing is waited for)."""
        if self._since is None:
            return None
        return max(0.0, self._since + self.limit - time.time())

    def _overdue(self) -> bool:
        """Past --metadata-wait? Then `gone` says so (once)."""
        if self.gone is None and self.overdue_in() == 0.0:
            assert self._since is not None
            self.gone = (
                f"arXiv's API at {self.name} gave no answer for {time.time() - self._since:.0f} s "
                f"(--metadata-wait {self.limit:g} s; {self._reason})"
            )
        return self.gone is not None

    def check(self) -> str | None:
        """Why the run stops waiting for the API, if it must now."""
        self._overdue()
        return self.gone

    def waiting(self, papers: int) -> str | None:
        """What the run waits for because of the API (`papers` wait for it), for the live
        table and `rpa status`; None when it answers."""
        if self._since is None or not papers:
            return None
        since = _clock_time(self._since)
        if self._until > self._clock():
            until = _clock_time(time.time() + self._until - self._clock())
            return (f"arXiv's API (asked us to wait until {until}: {self._reason}): {papers} "
                    "papers wait for their metadata")  # fmt: skip
        if not self._outages.is_down(self.name):
            return None  # a failure or two: asked again at once, not a wait yet
        probe = _clock_time(time.time() + self.hold())
        return (f"arXiv's API ({self.name}) to answer again (down since {since}: "
                f"{self._reason}): {papers} papers wait for their metadata; probed again at "
                f"{probe}")  # fmt: skip

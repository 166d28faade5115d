"""The run's leases as its workers hold them, and until when they surely still hold.

A lease lasts `--lease-seconds` by the database's clock from its claim or its last renewal,
and ends early if another run finds this one dead (no heartbeat for `dead_after`: then every
lease of the run is taken at once). Measured here: a local reading (rpa.queue.clock.lease_clock)
taken *before* the run's registration or its last heartbeat that went through, plus the
shorter of the two, is a time before which no other run can have taken any job it holds,
whatever the hosts' clocks say (elapsed seconds agree; a job claimed since holds at least as
long). After it (the process was paused, its heartbeats stalled) a job may be another run's:
an extraction process then does nothing that only a holder may do without the queue's fence,
such as replacing a file at a PDF's final name (rpa.sources.publish). It reads the run's
`Vouch` when it is about to, not when its task was made: a paper that waited for its turn
longer than a lease still holds its lease if the heartbeats went on.
"""

from __future__ import annotations

from rpa.queue.clock import Vouch

__all__ = ["Held"]


class Held(dict[str, int]):
    """Job id -> lease token of every lease the run's workers hold; `vouch` says until when
    they surely hold (its `path` goes to the extraction processes)."""

    def __init__(self, span: float) -> None:
        """`span`: how long after a good heartbeat's start the leases surely hold (the
        shorter of --lease-seconds and the time after which a silent run is dead)."""
        super().__init__()
        self._span = span
        self.vouch = Vouch()

    def take(self, job_id: str, token: int) -> None:
        """A claimed lease."""
        self[job_id] = token

    def drop(self, job_id: str) -> None:
        """The worker let go of the job."""
        self.pop(job_id, None)

    def beat(self, asked: float) -> None:
        """The run's registration or a heartbeat went through, asked at `asked`
        (lease_clock): every lease held surely holds until `asked + span`."""
        self.vouch.until(asked + self._span)

    def revoke(self) -> None:
        """The run was found dead: no lease surely holds any more."""
        self.vouch.until(0.0)

    def close(self) -> None:
        self.vouch.close()

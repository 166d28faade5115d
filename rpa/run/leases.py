"""The run's leases as its workers hold them, and until when each surely still holds.

A lease lasts `--lease-seconds` by the database's clock from its claim or its last renewal.
Measured here: a local reading (rpa.queue.clock.lease_clock) taken *before* the claim or
the heartbeat that renewed it, plus `--lease-seconds`, is a time before which no other run
can have taken the job, whatever the hosts' clocks say (elapsed seconds agree). After it
(the process was paused, its heartbeats stalled) the job may be another run's: a worker
then does nothing that only a holder may do without the queue's fence, such as replacing
a file at a PDF's final name (rpa.sources.publish).
"""

from __future__ import annotations

__all__ = ["Held"]


class Held(dict[str, int]):
    """Job id -> lease token of every lease the run's workers hold, and `sure_until(job_id)`
    (on rpa.queue.clock.lease_clock)."""

    def __init__(self) -> None:
        super().__init__()
        self._sure: dict[str, float] = {}

    def take(self, job_id: str, token: int, sure_until: float) -> None:
        """A claimed lease, sure until `sure_until` (the reading before the claim + lease)."""
        self[job_id] = token
        self._sure[job_id] = sure_until

    def renewed(self, job_id: str, token: int, sure_until: float) -> None:
        """A heartbeat renewed `job_id`'s lease `token`: sure until `sure_until` (the reading
        before the beat + lease), if the worker still holds that lease."""
        if self.get(job_id) == token:
            self._sure[job_id] = max(sure_until, self._sure.get(job_id, 0.0))

    def drop(self, job_id: str) -> None:
        """The worker let go of the job."""
        self.pop(job_id, None)
        self._sure.pop(job_id, None)

    def sure_until(self, job_id: str) -> float:
        """Until when `job_id`'s lease surely holds (0: not held)."""
        return self._sure.get(job_id, 0.0)

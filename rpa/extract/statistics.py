"""The extraction pool's statistics: what the progress table and the run's snapshot show."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PoolStatistics"]


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of the pool, for the progress table and the run's snapshot."""

    mode: str  # process | thread
    workers: int  # configured size
    alive: int  # usable processes (threads in thread mode) now
    busy: int  # extractions in flight
    parsing: int  # of those, the ones whose process has received its paper
    started: int  # processes started in total, replacements included
    replaced: int  # processes started to replace a killed, dead or recycled one
    recycled: int  # processes replaced for having grown past recycle_mb
    crashed: int  # extractions whose process died under them (WorkerCrashed)
    timed_out: int  # extractions that ran past the timeout (ExtractTimeout)

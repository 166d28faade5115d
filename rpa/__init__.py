"""rpa: a batch pipeline runner for research papers.

arXiv IDs -> a durable queue (SQLite, or PostgreSQL for a fleet) -> download (over HTTP with
httpx's API on aiohttp, from local folders or arXiv's bulk tars; behind gates) -> text
extraction (pypdf or pypdfium2 in worker processes, behind a gate) -> a key-outcome record per
paper, on one asyncio event loop that never blocks. The CLI (`rpa.cli`) is a thin adapter over
this package; the packages, from the bottom up:

- `errors`, `config`, `ids`, `idlist`, `files`, `metrics`, `gates`, `notices`: the error tree,
  settings, arXiv IDs and ID lists, atomic writes, measurements, gates, what a run says;
- `queue`: the durable queue (jobs and leases, runs, hosts, catalog, read models; backends);
- `hosts`: host health and politeness (rate gates, cooldowns, breakers; fleet-wide);
- `sources`: where PDFs and metadata come from (HTTP, local files, tars, arXiv's API/file);
- `extract`: the extraction processes, the extractors, the record and its analysis;
- `run`: a run's life cycle and its parts (feeder, heartbeat, job, policy, memory, progress);
- `show`: what the user sees, rendered from snapshots it is given;
- `stages`: the user's own stages after the outcome (`rpa.Paper`; a stage may raise
  `rpa.Transient`, `rpa.Permanent` or `rpa.RetryAfter(seconds)`);
- `testing`: real servers on 127.0.0.1 for tests and benchmarks (never imported by the core).
"""

from __future__ import annotations

from rpa.errors import PermanentError as Permanent
from rpa.errors import RetryAfter
from rpa.errors import TransientError as Transient
from rpa.stages.paper import Paper

__version__ = "0.1.0"
__all__ = ["Paper", "Permanent", "RetryAfter", "Transient", "__version__"]

"""rpa: a batch pipeline runner for research papers.

arXiv IDs -> a durable SQLite queue -> download (httpx, behind a gate) -> text extraction
(pypdf in worker processes, behind a gate) -> a key-outcome record per paper, on one asyncio
event loop that never blocks. The CLI (`rpa.cli`) is a thin adapter over this package.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]

"""Where a run's PDFs come from: the source `--pdf-tar` / `--pdf-url` name, opened for the run.

- bulk tars (`--pdf-tar`): members looked up in the queue's tar index, read in the I/O pool;
- local files (`--pdf-url file:///...`): read in place, in the I/O pool;
- HTTP: the run's clients (built in a thread), every request through its host's gate.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Executor

import httpx

from rpa.config import Settings
from rpa.hosts.health import HostHealth
from rpa.queue import catalog
from rpa.queue.aio import AsyncQueue
from rpa.queue.model import TarMember
from rpa.run.clients import make_clients
from rpa.sources.base import Source
from rpa.sources.http import Downloader, HttpSource
from rpa.sources.local import LocalSource
from rpa.sources.tar import TarSource

__all__ = ["open_source"]


async def open_source(
    settings: Settings,
    *,
    queue: AsyncQueue,
    io: Executor,
    hosts: HostHealth,
    run_id: str,
    stack: contextlib.AsyncExitStack,
) -> tuple[Source, httpx.AsyncClient | None]:
    """The run's source, and an HTTP client for host health's probes (None off the network);
    what they hold open is closed with `stack`."""
    s = settings
    max_bytes = int(s.max_pdf_mb * 1024 * 1024)
    if s.pdf_tar:

        async def lookup(base: str) -> TarMember | None:
            return await queue.run(catalog.tar_member, base)

        return TarSource(lookup, io, max_bytes=max_bytes, checked=False), None
    if not s.network:
        return LocalSource(io, s.pdf_url, max_bytes=max_bytes, checked=False), None
    # Built in a thread: each client loads the CA bundle and builds its SSL context, tens of
    # milliseconds the loop would otherwise stand still for.
    clients = await asyncio.to_thread(make_clients, s)
    for client in clients:
        await stack.enter_async_context(client)
    downloader = Downloader(
        clients,
        io,
        max_bytes=max_bytes,
        hosts=hosts.gates,
        redirects=s.follow_redirects,
        deadline=s.download_timeout,
        run_id=run_id,
        checked=False,  # the extraction process checks each download (rpa.extract.paper)
    )
    return HttpSource(downloader, s.pdf_url), clients[0]

"""Download only (no extraction): MB/s and main-process CPU seconds per GB, N downloads at once.

    python -m bench.download REPORT.json URLS_FILE OUT_DIR --variant NAME [--concurrency 64]

Variants (each a fresh process; N worker tasks pull from one queue, so N are in flight):

* rpa: rpa's own `Downloader` (stream, sniff, 1 MiB flushes through an 8-thread I/O pool,
  sha256, fsync, rename) with the clients rpa's Runner builds (`Runner._make_clients`, so this
  follows rpa's settings as they change), writing to disk.
* rpa-client: the same clients, body streamed with `aiter_bytes()` and dropped: the HTTP cost
  alone, without the file work.
* one-pool: one client with Limits(max_connections = max_keepalive_connections = 64), body
  dropped: what rpa used before it split its pool (kept to show why it did).
* httpx-defaults: `httpx.AsyncClient()` as it comes (Limits 100 / keep-alive 20), dropped.
* tuned: the best settings found: the 64 downloads spread over 8 clients of 8 connections
  each (keep-alive 8), `aiter_raw()`, and `sniffio` importable; body dropped. Why: httpcore's
  pool scans every connection (a poll() per connection in has_expired) on each assignment,
  and with keep-alive reuse at full concurrency it hands one idle connection to several queued
  requests, all but one fail with ConnectionNotAvailable and retry (~5 retries per request at
  64/64 here): the cost grows with the pool size squared, so small pools are cheap. Without
  sniffio, httpcore's `current_async_library()` attempts `import sniffio` on every lock and
  event it creates, a failing import that walks sys.path (~80 us each).
* rpa-sniffio: the "rpa" variant with `sniffio` importable.

The sniffio variants find it in a private folder the benchmark fills with
`pip install --target` (the venv is left as rpa installs it).

CPU is getrusage(RUSAGE_SELF) over the download phase only (imports excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from rpa import __version__
from rpa.config import Settings
from rpa.hosts.registry import HostGates
from rpa.sources.http import Downloader

__all__ = ["VARIANTS", "one_pool_client", "rpa_clients"]

VARIANTS = ("rpa", "rpa-client", "one-pool", "httpx-defaults", "tuned", "rpa-sniffio")
#: tuned: the 64 downloads share this many small clients (pools)
TUNED_POOLS = 8


def one_pool_client(settings: Settings) -> httpx.AsyncClient:
    """One client with one pool as large as the download gate (rpa's first design)."""
    timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)
    limits = httpx.Limits(
        max_connections=settings.max_connections_resolved,
        max_keepalive_connections=settings.max_connections_resolved,
    )
    return httpx.AsyncClient(
        timeout=timeout,
        limits=limits,
        headers={"User-Agent": f"rpa/{__version__}"},
        follow_redirects=True,
    )


def rpa_clients(settings: Settings) -> list[httpx.AsyncClient]:
    """The clients rpa's Runner builds for these settings."""
    from rpa.run.clients import make_clients

    return make_clients(settings)


async def _drop(client: httpx.AsyncClient, url: str, raw: bool) -> int:
    got = 0
    async with client.stream("GET", url) as response:
        response.raise_for_status()
        chunks = response.aiter_raw() if raw else response.aiter_bytes()
        async for chunk in chunks:
            got += len(chunk)
    return got


def _clients(variant: str, settings: Settings, scratch: Path) -> list[httpx.AsyncClient]:
    if variant == "httpx-defaults":
        return [httpx.AsyncClient()]
    if variant == "one-pool":
        return [one_pool_client(settings)]
    if variant == "tuned":
        size = max(1, settings.download_concurrency // TUNED_POOLS)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        return [
            httpx.AsyncClient(
                timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
                limits=limits,
                headers={"User-Agent": f"rpa/{__version__}"},
                follow_redirects=True,
            )
            for _ in range(TUNED_POOLS)
        ]
    return rpa_clients(settings)


async def _run(variant: str, urls: list[tuple[str, str]], out: Path, n: int) -> dict[str, Any]:
    settings = Settings(download_concurrency=n)
    clients = _clients(variant, settings, out)
    io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="rpa-io")
    cap = int(settings.max_pdf_mb * 1024 * 1024)
    downloader = Downloader(clients, io, max_bytes=cap, hosts=HostGates(""))
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for entry in urls:
        queue.put_nowait(entry)
    total = [0]

    async def worker(index: int) -> None:
        client = clients[index % len(clients)]
        while True:
            try:
                name, url = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if variant in ("rpa", "rpa-sniffio"):
                got = (await downloader.fetch(url, out / f"{name}.pdf")).bytes
            else:
                got = await _drop(client, url, raw=variant == "tuned")
            total[0] += got

    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for index in range(n):
                tg.create_task(worker(index))
        wall = time.perf_counter() - start
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
    io.shutdown(wait=True)
    try:
        import sniffio  # noqa: F401

        has_sniffio = True
    except ImportError:
        has_sniffio = False
    return {
        "wall": wall,
        "cpu": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "bytes": total[0],
        "files": len(urls),
        "sniffio": has_sniffio,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.download")
    parser.add_argument("report", type=Path)
    parser.add_argument("urls", type=Path, help="lines of NAME<TAB>URL")
    parser.add_argument("out", type=Path)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    urls = [
        (name, url)
        for name, url in (line.split("\t") for line in args.urls.read_text().splitlines() if line)
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(_run(args.variant, urls, args.out, args.concurrency))
    args.report.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

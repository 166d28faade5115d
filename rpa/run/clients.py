"""The run's HTTP clients: a few small connection pools sharing one TLS context."""

from __future__ import annotations

import importlib

import httpx

from rpa import __version__
from rpa.config import Settings

__all__ = ["CLIENT_POOL_SIZE", "load_stack", "make_api_client", "make_clients", "user_agent"]

_AIOHTTP = "rpa.sources.aio_transport"

#: connections per httpx client
CLIENT_POOL_SIZE = 8


def user_agent(settings: Settings) -> str:
    if settings.user_agent:
        return settings.user_agent
    contact = f" (mailto:{settings.mailto})" if settings.mailto else ""
    return f"rpa/{__version__}{contact}"


def load_stack(settings: Settings) -> None:
    """Import the HTTP stack `make_clients` will use, before the loop runs: aiohttp's import
    takes ~60 ms that a thread would share with the loop (a stall the lag probe sees). A run
    that downloads nothing (a tar, a folder) never loads it: that much less start-up."""
    if settings.network and settings.http_stack == "aiohttp":
        importlib.import_module(_AIOHTTP)


def make_clients(settings: Settings) -> list[httpx.AsyncClient]:
    """--max-connections split into pools of at most CLIENT_POOL_SIZE, on --http-stack.
    Blocking (the TLS context loads the CA bundle): call it in a thread.

    httpx's pool does work per request that grows with its connection count
    (encode/httpx#3215); the benchmark measured 64 connections as 8 clients of 8 at about
    twice the MB/s and half the CPU per GB of one client of 64. Redirects are followed by
    rpa itself (each hop through its host's gate), never by httpx. `identity`: a server
    should send the PDF as it is (httpx would ask for gzip and decode without a bound).
    """
    total = settings.max_connections_resolved
    count = -(-total // CLIENT_POOL_SIZE)
    sizes = [total // count + (1 if i < total % count else 0) for i in range(count)]
    timeout = _timeout(settings)
    headers = {"User-Agent": user_agent(settings), "Accept-Encoding": "identity"}
    # One TLS context for all: loading the CA bundle holds the GIL for ~30 ms, so a context
    # per client starved the loop thread for a quarter of a second at start.
    tls = httpx.create_ssl_context()
    if settings.http_stack == "aiohttp":
        transport = importlib.import_module(_AIOHTTP).AiohttpTransport  # (load_stack's)
        return [
            httpx.AsyncClient(
                timeout=timeout,
                headers=headers,
                follow_redirects=False,
                transport=transport(max_connections=size, tls=tls),
            )
            for size in sizes
        ]
    return [
        httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            headers=headers,
            follow_redirects=False,
            verify=tls,
        )
        for size in sizes
    ]


def make_api_client(settings: Settings) -> httpx.AsyncClient:
    """The metadata stage's client: one connection at a time (arXiv's API terms). Blocking
    (the CA bundle again): call it in a thread."""
    return httpx.AsyncClient(
        timeout=_timeout(settings),
        limits=httpx.Limits(max_connections=1),
        # the answer as it is: what is read is what is counted against the stage's size cap
        headers={"User-Agent": user_agent(settings), "Accept-Encoding": "identity"},
    )


def _timeout(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)

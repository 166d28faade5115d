"""An httpx transport over aiohttp: httpx's API for rpa, aiohttp's C parser underneath.

Measured by bench/main_process.py and bench/download.py on 127.0.0.1 (real papers, nginx):
httpx's own HTTP/1.1 stack (httpcore + h11 + anyio streams) costs the event loop's thread
~1.9 ms of CPU for a 820 KB PDF; through this transport ~0.7 ms; at pdfium's speed that is
most of the main process's work. The idea is the `httpx-aiohttp` package's (its
`AiohttpTransport`); this is rpa's own, because rpa needs what that one does not give:

* every aiohttp error maps to the httpx exception of the same meaning (a server that hangs up
  mid-body is a ReadError, not a ConnectTimeout), so `rpa.sources.http` classifies both
  stacks the same way;
* the body is handed over as aiohttp has it (`iter_any`), raw (no decoding: rpa decodes a
  gzip body itself, bounded), and an unfinished body closes its connection;
* the session is made on the event loop at the first request (aiohttp wants a running
  loop), sized like httpx's pool (`max_connections`), with one shared TLS context, no cookie
  jar, no environment proxies, and no redirects (rpa follows them itself, hop by hop);
* the name's resolution is bounded by the connect timeout, as httpx's own stack bounds it
  (aiohttp's `sock_connect` covers the socket's connect only: offline, glibc's resolver
  took 12-24 s an attempt against a 10 s connect timeout, and a run 33 s to say arXiv was
  unreachable).

`rpa --http-stack httpx` keeps httpx's own stack (for example for a proxy from the environment,
which this transport does not read).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import socket
import ssl
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

__all__ = ["AiohttpTransport"]


@contextlib.contextmanager
def _mapped(url: str) -> Iterator[None]:
    """aiohttp's exceptions as httpx's (the most specific class first)."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(f"connect timed out: {url}") from exc
    except aiohttp.SocketTimeoutError as exc:
        raise httpx.ReadTimeout(f"read timed out: {url}") from exc
    except aiohttp.ServerTimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "timed out") from exc
    except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError) as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except aiohttp.ClientConnectorError as exc:  # its own words name TLS even for http://
        why = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        raise httpx.ConnectError(f"cannot connect to {exc.host}:{exc.port}: {why}") from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise httpx.RemoteProtocolError(f"server disconnected: {exc}") from exc
    except aiohttp.ClientPayloadError as exc:
        raise httpx.ReadError(f"body incomplete: {exc}") from exc
    except aiohttp.ClientResponseError as exc:  # a malformed status line or header block
        raise httpx.RemoteProtocolError(exc.message or str(exc)) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(str(exc)) from exc
    except (aiohttp.ClientOSError, aiohttp.ClientConnectionError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(str(exc) or type(exc).__name__) from exc
    except TimeoutError as exc:  # asyncio's, from a timer aiohttp did not wrap
        raise httpx.ReadTimeout(f"timed out: {url}") from exc


#: the connect timeout of the request being made, for its name's resolution (aiohttp resolves
#: in a task it creates from the request's task: the value is seen there)
_RESOLVE_LIMIT: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "rpa_resolve_limit", default=None
)


class _BoundedResolver(AbstractResolver):
    """aiohttp's default resolver, given up after the request's connect timeout. The lookup
    itself cannot be stopped (getaddrinfo in a thread): its thread ends when glibc gives up."""

    def __init__(self) -> None:
        self._inner = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        limit = _RESOLVE_LIMIT.get()
        if limit is None:
            return await self._inner.resolve(host, port, family)
        try:
            async with asyncio.timeout(limit):
                return await self._inner.resolve(host, port, family)
        except TimeoutError:
            # an OSError with an errno: aiohttp says it as ClientConnectorDNSError, which
            # `_mapped` makes httpx's ConnectError (a host that cannot be reached)
            raise OSError(
                errno.ETIMEDOUT, f"no answer resolving {host} within {limit:g} s"
            ) from None

    async def close(self) -> None:
        await self._inner.close()


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, url: str) -> None:
        self._response = response
        self._url = url

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._url):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A body read to its end gives the connection back; any other closes it (aiohttp
        # would anyway: a connection with unread bytes is not reused).
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (a pool of `max_connections`) behind an httpx client."""

    def __init__(self, *, max_connections: int, tls: ssl.SSLContext, keepalive: float = 5.0):
        self._limit = max_connections
        self._tls = tls
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None

    def _make_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            limit_per_host=0,
            ssl=self._tls,
            keepalive_timeout=self._keepalive,
            resolver=_BoundedResolver(),
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Accept"),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._make_session()
        timeout = request.extensions.get("timeout", {})
        url = str(request.url)
        resolving = _RESOLVE_LIMIT.set(timeout.get("connect"))
        try:
            with _mapped(url):
                response = await self._session.request(
                    request.method,
                    URL(url, encoded=True),  # as httpx built it: no second quoting
                    headers=list(request.headers.multi_items()),
                    data=(await request.aread()) or None,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        connect=timeout.get("pool"),
                        sock_connect=timeout.get("connect"),
                        sock_read=timeout.get("read"),
                    ),
                )
        finally:
            _RESOLVE_LIMIT.reset(resolving)
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, url),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

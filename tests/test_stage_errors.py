"""What a user stage's HTTP client raised, in rpa's error tree (rpa.stages.policy): httpx's,
aiohttp's and urllib's statuses and broken connections. The exceptions are the libraries'
own, built directly: a stage raising them is the case, not a server's answer."""

from __future__ import annotations

import urllib.error
from email.message import Message

import aiohttp
import httpx
import pytest

from rpa import errors
from rpa.stages.policy import as_job_error, is_outage


def _aiohttp_status(status: int, retry_after: str | None = None) -> aiohttp.ClientResponseError:
    headers = {"Retry-After": retry_after} if retry_after else {}
    from yarl import URL

    info = aiohttp.RequestInfo(URL("http://127.0.0.1/x"), "GET", {})  # type: ignore[arg-type]
    return aiohttp.ClientResponseError(info, (), status=status, headers=headers)  # type: ignore[arg-type]


def _httpx_status(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://127.0.0.1/x")
    response = httpx.Response(status, request=request)
    return httpx.HTTPStatusError("x", request=request, response=response)


def _urllib_status(status: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://127.0.0.1/x", status, "x", Message(), None)


@pytest.mark.parametrize("raise_status", [_aiohttp_status, _httpx_status, _urllib_status])
def test_a_status_is_an_outage_or_the_papers_own(raise_status: object) -> None:
    make = raise_status  # (parametrized over the three clients)
    busy = as_job_error(make(503), "llm")  # type: ignore[operator]
    assert isinstance(busy, errors.HttpTransient) and is_outage(busy)
    assert str(busy) == "stage llm: HTTP 503"
    refused = as_job_error(make(404), "llm")  # type: ignore[operator]
    assert isinstance(refused, errors.HttpPermanent) and not is_outage(refused)


def test_aiohttps_retry_after_is_kept() -> None:
    err = as_job_error(_aiohttp_status(429, retry_after="7"), "llm")
    assert isinstance(err, errors.HttpTransient) and err.retry_after == 7.0


def test_a_broken_connection_is_an_outage_with_every_client() -> None:
    for exc in (
        aiohttp.ServerDisconnectedError(),
        httpx.ConnectError("refused"),
        ConnectionRefusedError(111, "refused"),
    ):
        err = as_job_error(exc, "llm")
        assert isinstance(err, errors.ConnectionFailed) and is_outage(err), exc


def test_anything_else_is_a_bug_in_the_stage() -> None:
    err = as_job_error(KeyError("title"), "llm")
    assert isinstance(err, errors.PermanentError) and not is_outage(err)

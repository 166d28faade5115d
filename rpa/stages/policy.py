"""What a user stage's failure means, decided in one place (as rpa.run.policy does for the
paper's own stages).

`as_job_error` turns what a stage raised into rpa's error tree: rpa.Transient, rpa.Permanent
and rpa.RetryAfter(seconds) are themselves; an HTTP status from httpx, aiohttp or urllib is
HttpTransient (408, 429, 5xx, with its Retry-After) or HttpPermanent (another 4xx); a refused
or broken connection is ConnectionFailed; the stage's timeout is DownloadTimeout ("timeout");
anything else is `rpa.classify`'s (a bug in the stage: InternalError, permanent).

`judge` then says: `pause` when the stage's service is out (refused, 429, 5xx, RetryAfter):
the paper goes back uncounted and the stage pauses (its lane probes it with one paper when
the pause ends); `retry` with the run's backoff; `fail` for a permanent error or the last of
--max-attempts. A paper given back OUTAGE_CHARGE times in a row while its stage worked for
others is charged: a request that always breaks the service must not pause it for ever.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.error
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from rpa import errors
from rpa.classify import classify
from rpa.config import Settings
from rpa.run.backoff import retry_delay
from rpa.sources.http import parse_retry_after

__all__ = ["OUTAGE_CHARGE", "OUTAGE_STATUSES", "StageVerdict", "as_job_error", "judge"]

#: statuses that say the stage's service is out or overloaded, not the paper
OUTAGE_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_STATUSES = frozenset({408, *OUTAGE_STATUSES})
#: give-backs in a row of one paper (its stage working for others) before it is charged
OUTAGE_CHARGE = 5

Action = Literal["pause", "retry", "fail"]


@dataclass(frozen=True, slots=True)
class StageVerdict:
    action: Action
    error: errors.JobError
    next_at: float = 0.0
    counted: bool = True


def _retry_after(headers: Any) -> float | None:
    try:
        return parse_retry_after(headers.get("Retry-After") if headers is not None else None)
    except ValueError:
        return None


def _status_error(status: int, headers: Any, what: str) -> errors.JobError:
    message = f"{what}: HTTP {status}"
    if status in TRANSIENT_STATUSES:
        return errors.HttpTransient(message, retry_after=_retry_after(headers), status=status)
    return errors.HttpPermanent(message)


def _aiohttp_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """aiohttp's (status, connection) error classes, if a stage imported aiohttp: only then
    can it raise them (rpa itself loads aiohttp only to download over HTTP; ~60 ms of
    start-up). Empty tuples otherwise: `isinstance` of nothing."""
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:
        return (), ()
    return (aiohttp.ClientResponseError,), (aiohttp.ClientConnectionError,)


def as_job_error(exc: BaseException, stage: str) -> errors.JobError:
    """The JobError that explains what stage `stage` raised."""
    what = f"stage {stage}"
    if isinstance(exc, errors.JobError):
        return exc
    if isinstance(exc, httpx.HTTPStatusError):
        return _status_error(exc.response.status_code, exc.response.headers, what)
    aio_status, aio_broken = _aiohttp_errors()
    if isinstance(exc, aio_status):
        return _status_error(exc.status, exc.headers, what)  # type: ignore[attr-defined]
    if isinstance(exc, urllib.error.HTTPError):
        return _status_error(exc.code, exc.headers, what)
    if isinstance(exc, httpx.TimeoutException | TimeoutError | asyncio.TimeoutError):
        if isinstance(exc, httpx.ConnectTimeout):
            return errors.ConnectionFailed(f"{what}: {type(exc).__name__}: {exc}")
        return errors.DownloadTimeout(f"{what}: ran past its timeout")
    if isinstance(exc, (httpx.TransportError, ConnectionError, *aio_broken)) or (
        isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, OSError)
    ):
        return errors.ConnectionFailed(f"{what}: {type(exc).__name__}: {exc}")
    return classify(exc, f"running stage {stage}")


def is_outage(err: errors.JobError) -> bool:
    """Does `err` say the stage's service is out (not the paper)?"""
    if isinstance(err, errors.RetryAfter | errors.ConnectionFailed):
        return True
    return isinstance(err, errors.HttpTransient) and err.status in OUTAGE_STATUSES


def judge(
    exc: BaseException, stage: str, attempts: int, settings: Settings, now: float, *, strikes: int
) -> StageVerdict:
    """The verdict on one attempt of `stage` that raised `exc`; `attempts`: the paper's
    counted failures of this stage so far; `strikes`: its outage give-backs in a row."""
    err = as_job_error(exc, stage)
    if is_outage(err) and strikes < OUTAGE_CHARGE:
        return StageVerdict("pause", err, counted=False)
    if isinstance(err, errors.MemoryPressure) or (
        isinstance(err, errors.WorkerCrashed) and not err.alone
    ):
        # the memory governor killed its process, or it died while memory was short
        delay = retry_delay(1, settings.retry_base, settings.retry_max)
        return StageVerdict("retry", err, next_at=now + delay, counted=False)
    final = isinstance(err, errors.PermanentError) or attempts + 1 >= settings.max_attempts
    if final:
        return StageVerdict("fail", err)
    delay = retry_delay(attempts + 1, settings.retry_base, settings.retry_max, err.retry_after)
    return StageVerdict("retry", err, next_at=now + delay)

"""Retry timing: exponential backoff plus added jitter (tenacity's), floored by Retry-After.

A job waiting for its next attempt is not held by anyone: it goes back to the queue with
`next_attempt_at` set, so no worker sleeps while holding a lease, and a resumed run keeps both
the attempt count and the due time.
"""

from __future__ import annotations

from tenacity import RetryCallState
from tenacity.wait import wait_exponential_jitter

__all__ = ["retry_delay"]


def retry_delay(
    attempt: int, base: float, maximum: float, retry_after: float | None = None
) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempt counts from 1).

    base * 2**(attempt-1) plus up to `base` of random jitter (so the retries of many workers hit
    by one outage spread out), capped at `maximum`; a server's Retry-After is a floor.
    """
    wait = wait_exponential_jitter(initial=base, max=maximum, jitter=base)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    delay = float(wait(state))
    if retry_after is not None:
        delay = max(delay, min(retry_after, 24 * 3600.0))
    return delay

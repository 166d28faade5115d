"""An async stage: post each paper's record to an HTTP API, under a rate limit, and keep its
answer (kind = "async", the default).

    RECORD_API=http://127.0.0.1:8765/records rpa run ids.txt \\
        --stage post=examples.post_record:post_record --stage-rate post=50/1m

It awaits all the way (httpx's AsyncClient): it never blocks the loop. A 429 or a 5xx from
the API is raised as it comes (`raise_for_status`): rpa pauses the stage, honours
Retry-After, and charges no paper. `python -m examples.post_record` serves a loopback API to
try it offline.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx

import rpa

_clients: dict[int, asyncio.Future[httpx.AsyncClient]] = {}


async def _client() -> httpx.AsyncClient:
    """One client per event loop (connections are reused across papers), made in a thread:
    making one loads the TLS certificates, ~50 ms that would block the loop."""
    loop = asyncio.get_running_loop()
    if id(loop) not in _clients:
        _clients[id(loop)] = asyncio.ensure_future(
            asyncio.to_thread(httpx.AsyncClient, timeout=30.0)
        )
    return await _clients[id(loop)]


async def post_record(paper: rpa.Paper) -> dict[str, Any]:
    url = os.environ.get("RECORD_API", "http://127.0.0.1:8765/records")
    body = {"id": paper.id, "title": paper.title, "abstract": paper.abstract}
    response = await (await _client()).post(url, json=body)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


if __name__ == "__main__":  # a loopback record API to try the stage offline
    import time

    from rpa.testing.stage_api import StageApi

    with StageApi(delay=0.05, port=8765) as api:
        print(f"record API at {api.url}; Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass

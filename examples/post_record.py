"""An async stage: post each paper's record to an HTTP API, under a rate limit, and keep its
answer (kind = "async", the default).

    RECORD_API=http://127.0.0.1:8765/records rpa run ids.txt \\
        --stage post=examples.post_record:post_record --stage-rate post=50/1m

It awaits all the way (aiohttp, the client rpa itself downloads with: a request costs the loop
a fraction of what httpx's own stack costs): it never blocks the loop. A 429 or a 5xx from
the API is raised as it comes (`raise_for_status=True`): rpa pauses the stage, honours
Retry-After, and charges no paper. `python -m examples.post_record` serves a loopback API to
try it offline.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp

import rpa

_sessions: dict[int, aiohttp.ClientSession] = {}


def _session() -> aiohttp.ClientSession:
    """One session per event loop: its connections are reused across papers."""
    loop = id(asyncio.get_running_loop())
    if loop not in _sessions:
        _sessions[loop] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), raise_for_status=True
        )
    return _sessions[loop]


async def post_record(paper: rpa.Paper) -> dict[str, Any]:
    url = os.environ.get("RECORD_API", "http://127.0.0.1:8765/records")
    body = {"id": paper.id, "title": paper.title, "abstract": paper.abstract}
    async with _session().post(url, json=body) as response:
        answer: dict[str, Any] = await response.json()
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

"""The naive designs rpa replaces: 200 coroutines doing the work on (or beside) the loop.

    python -m bench.naive REPORT.json URLS_FILE OUT_DIR --mode blocking|threads [--workers 200]

* blocking: each coroutine calls sync `httpx.get` and pypdf directly, the blocking original:
  every call freezes the event loop, so 200 "workers" run one at a time.
* threads: the same calls, each wrapped in `asyncio.to_thread` (the loop's default executor,
  min(32, cores + 4) threads): the loop stays responsive between calls, but pypdf is pure
  Python and holds the GIL, so extraction runs on one core at most, and it competes with the
  loop thread for the GIL.

Both write each paper's text to OUT_DIR like rpa does, and run rpa's own lag probe
(`rpa.metrics.LagProbe`, recording every sample) on the loop, so the lag figures mean the
same thing as rpa's.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
from pypdf import PdfReader

from bench.probe import RecordingProbe

__all__ = ["extract_text", "fetch", "write_text"]


def fetch(url: str) -> bytes:
    response = httpx.get(url, timeout=60.0)
    response.raise_for_status()
    return response.content


def extract_text(data: bytes) -> list[str]:
    reader = PdfReader(io.BytesIO(data))
    return [page.extract_text() or "" for page in reader.pages]


def write_text(path: Path, pages: list[str]) -> None:
    text = "".join(f"[PAGE {n}]\n{p}\n" for n, p in enumerate(pages, start=1))
    path.write_text(text.encode("utf-8", "replace").decode("utf-8"), encoding="utf-8")


async def _worker_blocking(
    queue: asyncio.Queue[tuple[str, str]], out: Path, tally: list[int]
) -> None:
    while True:
        try:
            name, url = queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        data = fetch(url)  # blocking, on the loop: the point of this design
        pages = extract_text(data)
        write_text(out / f"{name}.txt", pages)
        tally[0] += 1
        tally[1] += len(pages)
        await asyncio.sleep(0)  # the original yields only here


async def _worker_threads(
    queue: asyncio.Queue[tuple[str, str]], out: Path, tally: list[int]
) -> None:
    while True:
        try:
            name, url = queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        data = await asyncio.to_thread(fetch, url)
        pages = await asyncio.to_thread(extract_text, data)
        await asyncio.to_thread(write_text, out / f"{name}.txt", pages)
        tally[0] += 1
        tally[1] += len(pages)


async def _main(urls: list[tuple[str, str]], out: Path, mode: str, workers: int) -> dict[str, Any]:
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for entry in urls:
        queue.put_nowait(entry)
    probe = RecordingProbe()
    probe_task = asyncio.create_task(probe.run())
    tally = [0, 0]
    worker = _worker_blocking if mode == "blocking" else _worker_threads
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(worker(queue, out, tally))
    wall = time.perf_counter() - start
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    probe_task.cancel()
    from bench.rpa_main import _lag_report

    return {
        "run_wall": wall,
        "run_cpu": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "done": tally[0],
        "pages": tally[1],
        "lag": _lag_report(probe.all_samples, probe.interval, skip=1.0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive")
    parser.add_argument("report", type=Path)
    parser.add_argument("urls", type=Path, help="lines of NAME<TAB>URL")
    parser.add_argument("out", type=Path)
    parser.add_argument("--mode", choices=("blocking", "threads"), required=True)
    parser.add_argument("--workers", type=int, default=200)
    args = parser.parse_args(argv)
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # rpa counts these; do not print them
    warnings.simplefilter("ignore")
    urls = [
        (name, url)
        for name, url in (line.split("\t") for line in args.urls.read_text().splitlines() if line)
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(_main(urls, args.out, args.mode, args.workers))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    result["maxrss_mb"] = ru.ru_maxrss / 1024
    result["threads"] = os.cpu_count()
    args.report.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

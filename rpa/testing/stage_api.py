"""A record API on 127.0.0.1 for the user-stage example, its tests and its benchmark.

`POST /records` with a JSON body answers `{"id": ..., "received": n, "title_words": w}` after
`delay` seconds. It can be told to answer the next requests with a status (`answer_next(429,
{"Retry-After": "1"}, times=3)`), or to go down (`down()`: its port refuses connections)
and come back (`up()`, on the same port). It counts requests per ID and the most it had in
flight at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["StageApi"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    api: StageApi

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that left before its answer (a run stopped) is no error worth a trace."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        api = self.server.api
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, headers = api._take_answer()
        with api.lock:
            api.in_flight += 1
            api.most_in_flight = max(api.most_in_flight, api.in_flight)
            api.times.append(time.monotonic())
        try:
            time.sleep(api.delay)
            if status != 200:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = json.loads(body or b"{}")
            with api.lock:
                api.received[data.get("id")] += 1
                n = api.received[data.get("id")]
            answer = json.dumps(
                {"id": data.get("id"), "received": n,
                 "title_words": len(str(data.get("title") or "").split())}
            ).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        finally:
            with api.lock:
                api.in_flight -= 1


class StageApi:
    """The record API; a context manager that serves until it exits."""

    def __init__(self, delay: float = 0.0, port: int = 0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.received: Counter[str] = Counter()
        self.times: list[float] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._answers: list[tuple[int, dict[str, str]]] = []
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/records"

    def answer_next(
        self, status: int, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        with self.lock:
            self._answers += [(status, headers or {})] * times

    def _take_answer(self) -> tuple[int, dict[str, str]]:
        with self.lock:
            return self._answers.pop(0) if self._answers else (200, {})

    def up(self) -> None:
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.api = self
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop answering: the port refuses connections until `up()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StageApi:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

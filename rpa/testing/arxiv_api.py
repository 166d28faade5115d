"""arXiv's export API on 127.0.0.1, answering from real recorded responses.

`ArxivApi(folder)` reads the recorded bodies (`id_*.xml`, as ../shared/corpus/arxiv-api holds
them), keeps every `<entry>` by its paper's ID, and answers `GET /api/query?id_list=A,B,...`
the way arXiv does: a feed of the entries it knows (a partial batch when some are unknown, an
empty feed when none is), and status 400 with the recorded error body when an ID is malformed.
It records each request's time and ID list, so a test can check the politeness of the client.

`fail_next(*faults)` makes the next requests answer wrongly, one fault each, as arXiv's API (or
a proxy in front of it) sometimes does: `empty` (an empty page, totalResults 0), `others` (the
entries of recorded papers that were not asked), `mixed` (the first known paper asked, and
others not asked), `short` (the first known paper only, while totalResults counts all that
were asked), `malformed` (a page that is not XML), `unavailable` (503 without Retry-After, as
a proxy before a server that is down answers), `busy` (429 with Retry-After: `retry_after`
seconds); `slow` answers truly, `slow_seconds` late (so that the papers reaching their outcome
meanwhile make the next batch a full one). With
`fault_limit` set, no ID gets more wrong answers than that: a fault waits for a request whose
IDs all had fewer (so a test knows every paper ends with its true metadata).

`stop()` closes the port (connections refused, as when arXiv's API is down) and `start()`
opens it again, on the same port, with the same answers.
"""

from __future__ import annotations

import re
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["ArxivApi"]

_ATOM = "http://www.w3.org/2005/Atom"
_ABS = re.compile(r"arxiv\.org/abs/(?P<id>.+?)(?:v\d+)?$")
_VALID = re.compile(r"^([0-9]{4}\.[0-9]{4,5}|[a-z-]+(\.[A-Z]{2})?/[0-9]{7})(v[0-9]+)?$")
_HEAD = (
    "<?xml version='1.0' encoding='UTF-8'?>\n<feed xmlns:opensearch=\"http://a9.com/-/spec/"
    'opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom" '
    'xmlns="http://www.w3.org/2005/Atom">\n'
    "  <id>https://arxiv.org/api/rpa-test</id>\n  <title>arXiv Query: id_list={ids}</title>\n"
    "  <opensearch:totalResults>{n}</opensearch:totalResults>\n"
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: ArxivApi


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        api = self.server.api
        if parts.path != "/api/query":
            self._send(404, b"not found\n", "text/plain")
            return
        ids = [i for i in ",".join(parse_qs(parts.query).get("id_list", [""])).split(",") if i]
        api._record(ids)
        code, body = api.answer(ids)
        self._send(code, body, "application/atom+xml; charset=utf-8")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        if code == 429:
            self.send_header("Retry-After", f"{self.server.api.retry_after:g}")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ArxivApi:
    """The recorded API, served on a free port of 127.0.0.1 while the `with` block runs."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        self.entries: dict[str, str] = {}
        self.error_body = b""
        for path in sorted(folder.glob("id_*.xml")):
            text = path.read_text(encoding="utf-8")
            root = ET.fromstring(text)
            for entry in root.findall(f"{{{_ATOM}}}entry"):
                raw = entry.findtext(f"{{{_ATOM}}}id") or ""
                if "/api/errors" in raw:
                    self.error_body = text.encode("utf-8")
                    continue
                if m := _ABS.search(raw.strip()):
                    self.entries[m.group("id")] = _entry_xml(text, raw)
        self.requests: list[tuple[float, list[str]]] = []
        #: (request's index, fault) of each wrong answer given
        self.faulted: list[tuple[int, str]] = []
        self._faults: deque[str] = deque()
        self.slow_seconds = 4.0
        self.fault_limit: int | None = None
        self.retry_after = 1.0  # seconds, of a `busy` answer
        self._wronged: dict[str, int] = {}  # ID -> wrong answers it had
        self._lock = threading.Lock()
        self._server = self._bind(port)
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def _bind(self, port: int) -> _Server:
        server = _Server(("127.0.0.1", port), _Handler)
        server.api = self
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/query"

    def _record(self, ids: list[str]) -> None:
        with self._lock:
            self.requests.append((time.monotonic(), ids))

    def fail_next(self, *faults: str) -> None:
        """The next requests get these wrong answers, one each, in order."""
        with self._lock:
            self._faults.extend(faults)

    def answer(self, ids: list[str]) -> tuple[int, bytes]:
        bad = [i for i in ids if not _VALID.match(i)]
        if bad:
            return 400, self.error_body.replace(b"abc", bad[0].encode())
        bases = [i.split("v")[0] if _is_new(i) else _old_base(i) for i in ids]
        known = [self.entries[b] for b in bases if b in self.entries]
        with self._lock:
            limit = self.fault_limit
            fault = None
            if self._faults and (limit is None or all(self._wronged.get(i, 0) < limit
                                                      for i in ids)):  # fmt: skip
                fault = self._faults.popleft()
                self.faulted.append((len(self.requests) - 1, fault))
                if fault != "slow":
                    for i in ids:
                        self._wronged[i] = self._wronged.get(i, 0) + 1
        count = len(known)
        others = [e for b, e in self.entries.items() if b not in bases][: max(1, len(ids))]
        if fault == "slow":
            time.sleep(self.slow_seconds)
        if fault == "malformed":
            return 200, b"<html><body>Service busy"
        if fault == "unavailable":
            return 503, b"<html><body>503 Service Unavailable</body></html>"
        if fault == "busy":
            return 429, b"<html><body>Rate exceeded.</body></html>"
        if fault == "empty":
            known, count = [], 0
        elif fault == "others":
            known, count = others, len(others)
        elif fault == "mixed":
            known = known[:1] + others
            count = len(known)
        elif fault == "short":
            known, count = known[:1], len(ids)
        head = _HEAD.format(ids=",".join(ids), n=count)
        return 200, (head + "".join(known) + "</feed>\n").encode("utf-8")

    def __enter__(self) -> ArxivApi:
        self._serve()
        return self

    def _serve(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        """Close the port: every connection is refused until `start()`."""
        self._server.shutdown()
        self._server.server_close()
        self._thread = None

    def start(self) -> None:
        """Open the same port again (after `stop()`), answering as before."""
        self._server = self._bind(self.port)
        self._serve()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self.stop()


def _is_new(i: str) -> bool:
    return "/" not in i


def _old_base(i: str) -> str:
    archive, number = i.split("/", 1)
    return f"{archive}/{number.split('v')[0]}"


def _entry_xml(text: str, raw_id: str) -> str:
    """The `<entry>` element of `raw_id` in a recorded body, as it is written there."""
    start = text.index("<entry>", 0)
    while raw_id not in text[start : text.index("</entry>", start)]:
        start = text.index("<entry>", start + 1)
    end = text.index("</entry>", start) + len("</entry>")
    return "  " + text[start:end] + "\n"

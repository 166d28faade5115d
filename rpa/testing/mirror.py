"""A real static PDF mirror on 127.0.0.1, with faults a misbehaving server really produces.

``rpa demo`` serves the bundled sample papers with it, and the tests download from it with
the same httpx client the pipeline uses, so every error path is exercised over a real
socket rather than a mock::

    with Mirror({"2301.00001": path}) as mirror:
        mirror.set_fault("2301.00001", Fault.status(503, retry_after="1", times=1))
        httpx.get(mirror.url_template.replace("{id}", "2301.00001"))  # 503, then the PDF

With ``changing=True`` every request gets different bytes of the same real PDF, as a server
does whose document changes between requests (arXiv's unversioned URL when a new version
appears): the file, then a comment line ``% rpa-mirror request N`` after its ``%%EOF`` (N
numbers the answers). Still a valid PDF, with another size and sha256 each time.

Routes: ``GET``/``HEAD /pdf/<url_id>`` serves a file; ``GET /_stats`` returns the request
counts as JSON so a test in another process can read them.

Run as ``python -m rpa.testing.mirror DIR [--port N] [--ready-file PATH]`` to serve a directory
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from rpa.errors import ConfigError

__all__ = [
    "CHUNK_SIZE",
    "DENIAL_PAGE",
    "HTML_PAGE",
    "Fault",
    "Mirror",
    "main",
    "mapping_from_dir",
]

#: Bytes written per send while streaming a file.
CHUNK_SIZE = 64 * 1024
#: The only address the mirror binds: it is a test and demo server, never a public one.
_LOOPBACK = "127.0.0.1"

#: What `html_200` serves: a page where a PDF was expected (a login wall, say).
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>arXiv.org e-Print archive</title></head>\n"
    b"<body><h1>Please wait</h1><p>This is not the PDF you asked for.</p></body></html>\n"
)
#: What `deny_403` serves, modelled on the page arXiv shows a blocked client.
DENIAL_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>arXiv.org - Access Denied</title></head>\n"
    b"<body><h1>Access Denied</h1>\n"
    b"<p>Sorry, your request has been denied because of suspicious activity from your "
    b"IP address. Automated harvesting of arXiv content must follow the guidelines at "
    b"https://info.arxiv.org/help/robots.html and use the bulk data sources.</p>\n"
    b"</body></html>\n"
)

FaultKind = Literal[
    "status",
    "reset_mid_body",
    "slow_body",
    "html_200",
    "deny_403",
    "redirect",
    "lying_length",
    "gzip",
    "gzip_bomb",
    "trickle",
    "cut_unsized",
]


@dataclass(frozen=True, slots=True)
class Fault:
    """One way to misbehave for one url_id; build with the named constructors.

    ``times`` is how many requests the fault applies to before the real file is served
    (None: every request).
    """

    kind: FaultKind
    times: int | None = None
    code: int = 200
    retry_after: str | None = None
    body: bytes = b""
    delay: float = 0.0
    target: str = ""
    #: slow_body: the bytes sent before the stall (None: half the file, at most CHUNK_SIZE)
    after: int | None = None

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 1:
            raise ConfigError(f"Fault.times must be None or at least 1, got {self.times}")
        if self.delay < 0:
            raise ConfigError(f"Fault.delay must be >= 0, got {self.delay}")

    @staticmethod
    def status(
        code: int, retry_after: str | None = None, body: bytes = b"", times: int | None = None
    ) -> Fault:
        """Answer ``code`` (429, 503, 404...) with an optional Retry-After (seconds or date)."""
        return Fault("status", times, code=code, retry_after=retry_after, body=body)

    @staticmethod
    def reset_mid_body(times: int | None = None) -> Fault:
        """Send the headers and part of the body, then reset the connection (TCP RST)."""
        return Fault("reset_mid_body", times)

    @staticmethod
    def slow_body(delay: float, times: int | None = None, after: int | None = None) -> Fault:
        """Send the headers and a first chunk (``after`` bytes, when given), then stall
        ``delay`` seconds before the rest."""
        return Fault("slow_body", times, delay=delay, after=after)

    @staticmethod
    def html_200(times: int | None = None) -> Fault:
        """Answer 200 with an HTML page instead of the PDF."""
        return Fault("html_200", times, code=200, body=HTML_PAGE)

    @staticmethod
    def deny_403(times: int | None = None) -> Fault:
        """Answer 403 with a page like arXiv's "Access Denied"."""
        return Fault("deny_403", times, code=403, body=DENIAL_PAGE)

    @staticmethod
    def redirect(to_url_id: str, times: int | None = None) -> Fault:
        """Answer 302 pointing at ``/pdf/<to_url_id>``."""
        return Fault("redirect", times, code=302, target=to_url_id)

    @staticmethod
    def redirect_to(url: str, times: int | None = None) -> Fault:
        """Answer 302 pointing at `url` (another host name for 127.0.0.1, say `localhost`)."""
        return Fault("redirect", times, code=302, target=url)

    @staticmethod
    def gzip(times: int | None = None) -> Fault:
        """Send the file gzip-compressed with `Content-Encoding: gzip`, whatever was asked
        (Content-Length is the compressed size, as a real server sends it)."""
        return Fault("gzip", times)

    @staticmethod
    def gzip_bomb(megabytes: int, times: int | None = None) -> Fault:
        """Send `%PDF-` and `megabytes` MB of zeros, gzip-compressed (a few hundred KB on the
        wire, made here, once), with `Content-Encoding: gzip`."""
        return Fault("gzip_bomb", times, body=_bomb(megabytes))

    @staticmethod
    def trickle(delay: float, times: int | None = None) -> Fault:
        """Send the headers, then the body one byte every `delay` seconds: never slow enough
        for a read timeout between bytes."""
        return Fault("trickle", times, delay=delay)

    @staticmethod
    def cut_unsized(times: int | None = None) -> Fault:
        """Send no Content-Length, half the body, then close: a cut no client can tell from
        the end (a proxy or a server that died mid-body on a close-delimited answer)."""
        return Fault("cut_unsized", times)

    @staticmethod
    def lying_length(times: int | None = None) -> Fault:
        """Announce a Content-Length larger than the body, send the body, close."""
        return Fault("lying_length", times)


class _FaultState:
    """A fault and how many more requests it applies to (guarded by the mirror's lock)."""

    __slots__ = ("fault", "remaining")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.remaining = fault.times


class _Server(ThreadingHTTPServer):
    # Daemon threads never keep the interpreter alive; block_on_close (the default) still
    # makes server_close() join them, so close() returns only when every handler is done.
    daemon_threads = True
    # The default backlog of 5 drops SYNs when a pipeline opens dozens of connections at
    # once, and each drop costs the client a one-second retransmit.
    request_queue_size = 128
    mirror: Mirror

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-body is normal here (the tests do it on purpose);
        # anything else is a bug in the mirror and should be loud.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rpa-mirror/1"
    # A keep-alive connection left idle this long is dropped, so a forgotten client cannot
    # pin a handler thread; close() unblocks idle handlers sooner by shutting sockets.
    timeout = 30
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.mirror._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.mirror._track(self.connection, add=False)
        with contextlib.suppress(OSError):  # the socket was reset on purpose or by the client
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and the demo's progress table own the terminal

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    # -- routing -------------------------------------------------------------------------

    def _serve(self, *, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        mirror = self.server.mirror
        if path == "/_stats":
            body = json.dumps(mirror.stats()).encode()
            self._simple(200, body, "application/json", head=head)
            return
        outage = mirror._outage
        if outage is not None:  # the whole server answers so (a proxy before a dead server)
            mirror._record_outage(self.headers.get("User-Agent", ""))
            self._fault(outage, None, head=head)
            return
        if not path.startswith("/pdf/"):
            self._simple(404, b"not found\n", "text/plain; charset=utf-8", head=head)
            return
        url_id = path[len("/pdf/") :]
        fault = mirror._record(url_id, self.headers.get("User-Agent", ""))
        file = mirror._files.get(url_id)
        if fault is not None:
            self._fault(fault, file, head=head)
        elif file is None:
            self._simple(404, f"no such paper: {url_id}\n".encode(), "text/plain", head=head)
        else:
            self._file(file, head=head)

    # -- responses -----------------------------------------------------------------------

    def _headers(self, code: int, ctype: str, length: int, extra: Mapping[str, str] = {}) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()

    def _simple(
        self, code: int, body: bytes, ctype: str, *, head: bool, extra: Mapping[str, str] = {}
    ) -> None:
        self._headers(code, ctype, len(body), extra)
        if not head:
            self.wfile.write(body)

    def _file(self, file: Path, *, head: bool) -> None:
        mirror = self.server.mirror
        if mirror.changing:
            try:
                data = mirror._bytes_of(file)
            except OSError:
                self._simple(404, b"file vanished\n", "text/plain", head=head)
                return
            self._simple(200, data, "application/pdf", head=head)
            return
        try:
            fh = file.open("rb")
        except OSError:
            self._simple(404, b"file vanished\n", "text/plain", head=head)
            return
        with fh:
            size = os.fstat(fh.fileno()).st_size
            self._headers(200, "application/pdf", size)
            if not head:
                while chunk := fh.read(CHUNK_SIZE):
                    self.wfile.write(chunk)

    def _fault(self, fault: Fault, file: Path | None, *, head: bool) -> None:
        kind = fault.kind
        if kind in ("status", "html_200", "deny_403"):
            ctype = "text/html; charset=utf-8" if kind != "status" else "text/plain"
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._simple(fault.code, fault.body, ctype, head=head, extra=extra)
            return
        if kind == "redirect":
            location = fault.target
            if "://" not in location:
                location = f"http://{_LOOPBACK}:{self.server.server_port}/pdf/{fault.target}"
            self._simple(302, b"", "text/plain", head=head, extra={"Location": location})
            return
        if kind == "gzip_bomb":
            self._headers(200, "application/pdf", len(fault.body), {"Content-Encoding": "gzip"})
            if not head:
                self.wfile.write(fault.body)
            return
        # The remaining faults break a real body; without a file there is none to break.
        mirror = self.server.mirror
        data = mirror._bytes_of(file) if file is not None else b"%PDF-1.4\n" + b"x" * 4096
        # Stop mid-body, never after it, whatever the file's size.
        cut = max(1, min(CHUNK_SIZE, len(data) // 2))
        if kind == "gzip":
            body = gzip.compress(data, compresslevel=6, mtime=0)
            self._headers(200, "application/pdf", len(body), {"Content-Encoding": "gzip"})
            if not head:
                self.wfile.write(body)
        elif kind == "trickle":
            self._headers(200, "application/pdf", len(data))
            if head:
                return
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                if mirror._stopping.wait(fault.delay):
                    self._reset()
                    return
        elif kind == "cut_unsized":
            self.send_response(200)
            self.send_header("Content-Type", "application/pdf")
            self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
        elif kind == "lying_length":
            self._headers(200, "application/pdf", len(data) + 1000)
            if not head:
                self.wfile.write(data)
            self.close_connection = True
        elif kind == "reset_mid_body":
            self._headers(200, "application/pdf", len(data))
            if not head:
                self.wfile.write(data[:cut])
            self._reset()
        elif kind == "slow_body":
            self._headers(200, "application/pdf", len(data))
            if head:
                return
            cut = cut if fault.after is None else min(fault.after, len(data))
            self.wfile.write(data[:cut])
            mirror._wake.wait(fault.delay)  # the delay, or until released or shut down
            if mirror._stopping.is_set():
                # Shutting down: drop the stalled response instead of finishing it.
                self._reset()
                return
            self.wfile.write(data[cut:])

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout turns close() into a TCP RST, which is what a
        # crashed proxy or a dropped connection looks like to the client.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


class Mirror:
    """A static PDF server on 127.0.0.1 mapping url_id -> file, with fault injection.

    `changing`: serve each /pdf/ request different bytes of its file (the file, then
    ``% rpa-mirror request N`` after its ``%%EOF``, N numbering the answers): an upstream
    whose document changes between requests, so two downloads of one paper never match.
    """

    def __init__(
        self,
        files: Mapping[str, Path],
        *,
        port: int = 0,
        host: str = _LOOPBACK,
        faults: Mapping[str, Fault] | None = None,
        changing: bool = False,
    ) -> None:
        if host != _LOOPBACK:
            raise ConfigError(f"the mirror binds {_LOOPBACK} only, not {host!r}")
        for url_id, path in files.items():
            if not Path(path).is_file():
                raise ConfigError(f"mirror file for {url_id!r} is not a file: {path}")
        self._files = {url_id: Path(path) for url_id, path in files.items()}
        self._lock = threading.Lock()
        self._faults = {url_id: _FaultState(f) for url_id, f in (faults or {}).items()}
        self._outage: Fault | None = None
        self.changing = changing
        self._versions = 0  # answers served with `changing`, each numbered
        self._counts: dict[str, int] = {}
        self._agents: dict[str, int] = {}
        self._outage_agents: dict[str, int] = {}  # requests the outage answered, by User-Agent
        self._times: list[tuple[str, float]] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._wake = threading.Event()  # ends every slow_body stall (release_stalled, close)
        self._server = _Server((host, port), _Handler)
        self._server.mirror = self
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (useful with port=0)."""
        return int(self._server.server_address[1])

    @property
    def url_template(self) -> str:
        """``http://127.0.0.1:PORT/pdf/{id}``, ready for rpa.ids.url_for."""
        return f"http://{_LOOPBACK}:{self.port}/pdf/{{id}}"

    def start(self) -> Mirror:
        """Serve in a daemon thread."""
        if self._thread is None:
            # A short poll interval: shutdown() waits for the loop's next poll, and the
            # tests open and close many mirrors.
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"rpa-mirror-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; stalled and idle handlers are cut off so this returns promptly."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins the handler threads

    def __enter__(self) -> Mirror:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- faults and statistics -----------------------------------------------------------

    def release_stalled(self) -> None:
        """End every slow_body stall now (and let later ones through at once): the body is
        sent whole. For a test that holds a download until it has looked at the run."""
        self._wake.set()

    def set_outage(self, fault: Fault | None) -> None:
        """Answer every request, whatever its path, with ``fault`` (a 502 for all: a load
        balancer in front of a server that is down); None: serve normally again."""
        self._outage = fault

    def set_fault(self, url_id: str, fault: Fault | None) -> None:
        """Make requests for ``url_id`` misbehave (None: serve normally again)."""
        with self._lock:
            if fault is None:
                self._faults.pop(url_id, None)
            else:
                self._faults[url_id] = _FaultState(fault)

    def requests(self, url_id: str) -> int:
        """How many /pdf/ requests named ``url_id`` (whatever the answer was)."""
        with self._lock:
            return self._counts.get(url_id, 0)

    @property
    def total_requests(self) -> int:
        """How many /pdf/ requests arrived in all."""
        with self._lock:
            return len(self._times)

    def request_times(self, url_id: str | None = None) -> list[float]:
        """time.monotonic() of each /pdf/ request, oldest first (only ``url_id``'s if given)."""
        with self._lock:
            return [t for u, t in self._times if url_id is None or u == url_id]

    def user_agents(self) -> dict[str, int]:
        """The User-Agent headers of the /pdf/ requests, with how many requests sent each."""
        with self._lock:
            return dict(self._agents)

    def outage_requests(self) -> dict[str, int]:
        """The requests `set_outage` answered (whatever their path: probes too), by
        User-Agent: which client kept asking a server that was down."""
        with self._lock:
            return dict(self._outage_agents)

    def stats(self) -> dict[str, Any]:
        """The counts as served at /_stats: {"total": n, "by_id": {url_id: n}}."""
        with self._lock:
            return {"total": len(self._times), "by_id": dict(self._counts)}

    def _record(self, url_id: str, user_agent: str = "") -> Fault | None:
        """Count one request and decide, atomically, whether a fault applies to it."""
        with self._lock:
            self._counts[url_id] = self._counts.get(url_id, 0) + 1
            self._agents[user_agent] = self._agents.get(user_agent, 0) + 1
            self._times.append((url_id, time.monotonic()))
            state = self._faults.get(url_id)
            if state is None:
                return None
            if state.remaining is None:
                return state.fault
            if state.remaining <= 0:
                return None
            state.remaining -= 1
            return state.fault

    def _record_outage(self, user_agent: str) -> None:
        with self._lock:
            self._outage_agents[user_agent] = self._outage_agents.get(user_agent, 0) + 1

    def _bytes_of(self, file: Path) -> bytes:
        """The bytes one request gets of `file`: the file, or (`changing`) the file and a
        comment line numbering this answer, which a PDF reader skips after ``%%EOF``."""
        data = file.read_bytes()
        if not self.changing:
            return data
        with self._lock:
            self._versions += 1
            n = self._versions
        sep = b"" if data.endswith(b"\n") else b"\n"
        return data + sep + f"% rpa-mirror request {n}\n".encode()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


@functools.cache
def _bomb(megabytes: int) -> bytes:
    """`%PDF-1.4` and `megabytes` MB of zeros, gzip-compressed once (about 1 KB a MB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b"%PDF-1.4\n")]
    zeros = bytes(1 << 20)
    parts.extend(packer.compress(zeros) for _ in range(megabytes))
    parts.append(packer.flush())
    return b"".join(parts)


def mapping_from_dir(directory: Path) -> dict[str, Path]:
    """Map every ``*.pdf`` in ``directory`` by its stem (``hep-th_9108004.pdf`` -> as is)."""
    if not directory.is_dir():
        raise ConfigError(f"not a directory: {directory}")
    return {p.stem: p for p in sorted(directory.glob("*.pdf")) if p.is_file()}


def _write_atomically(path: Path, text: str) -> None:
    # Write-then-rename, so a parent polling for the file never reads half of it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """``python -m rpa.testing.mirror DIR [--port N] [--ready-file PATH]``."""
    parser = argparse.ArgumentParser(
        prog="python -m rpa.testing.mirror",
        description="Serve DIR/*.pdf on 127.0.0.1 at /pdf/<stem>.",
    )
    parser.add_argument("directory", type=Path, help="directory of PDFs to serve")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    parser.add_argument("--ready-file", type=Path, help="write the URL template here once up")
    args = parser.parse_args(argv)

    try:
        mirror = Mirror(mapping_from_dir(args.directory), port=args.port)
    except (ConfigError, OSError) as exc:
        print(f"rpa.mirror: {exc}", file=sys.stderr)
        return 2
    # Block the stop signals before any thread starts (threads inherit the mask), then
    # wait for one synchronously: no Python-level handler can run at an awkward moment,
    # e.g. while the main thread holds a lock the handler would need.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        with mirror:
            # Ready file first: a parent that has read our stdout line may rely on it.
            if args.ready_file is not None:
                _write_atomically(args.ready_file, mirror.url_template + "\n")
            print(mirror.url_template, flush=True)
            signal.sigwait(stop_signals)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    return 0


if __name__ == "__main__":
    sys.exit(main())

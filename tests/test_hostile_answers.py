"""Hostile answers and hostile names, from real servers on 127.0.0.1 and real files.

- What reaches a terminal: control sequences in a server's reason phrase and Content-Type
  (retitle, clear, recolour) are shown as text, never obeyed, in the run's output, `rpa status`
  and the stored reasons.
- A symlink out of a file:// folder is refused unread.
- arXiv's API (or what answers in its place) cannot make rpa read without bound: an endless
  answer is cut at the stage's size cap, a trickling one at its deadline; the papers are done,
  their records say why there is no metadata (`unavailable`), and the run ends normally; a
  gzip bomb (which rpa never asked for) is cut at the same cap, decoded off the event loop a
  bounded chunk at a time."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
from conftest import Cli, write_ids

ESC = "\x1b"
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31m"


@contextlib.contextmanager
def raw_server(answer: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """A server on 127.0.0.1 that reads each request and lets `answer(conn, stop)` write raw
    bytes (what no well-behaved HTTP server would send), each connection in a thread; yields
    its port and stops when the block ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def one(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65536)
                answer(conn, stop)
            except OSError:
                pass  # the client let go

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


@pytest.fixture
def hostile_server() -> Iterator[str]:
    """Answers every request `418 <control sequences>` with a hostile Content-Type."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        body = b"<html>nope</html>"
        head = (
            f"HTTP/1.1 418 Teapot{HOSTILE}reason\r\n"
            f"Content-Type: text/html{HOSTILE}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        conn.sendall(head.encode("latin-1") + body)

    with raw_server(answer) as port:
        yield f"http://127.0.0.1:{port}/pdf/{{id}}"


def test_a_servers_control_sequences_never_reach_the_terminal(
    tmp_path: Path, hostile_server: str
) -> None:
    cli = Cli(tmp_path, hostile_server)
    ids = write_ids(tmp_path / "ids.txt", ["ext:a", "ext:b"])
    result = cli.run("run", str(ids), *cli.knobs(progress=False, max_attempts=1))
    said = result.stdout + result.stderr
    assert result.returncode == 1, said
    assert "Teapot" in said  # the reason is shown ...
    assert ESC not in said and "\x07" not in said  # ... as text
    status = cli.run("status", "--db", str(cli.db))
    assert status.returncode == 0 and "Teapot" in status.stdout
    assert ESC not in status.stdout + status.stderr
    stored = cli.query("SELECT error_message FROM jobs")
    assert stored and all(ESC not in m and "Teapot" in m for (m,) in stored)


def test_a_symlink_out_of_a_local_folder_is_refused_unread(tmp_path: Path) -> None:
    """`--pdf-url file:///folder/{id}.pdf`: a link in the folder that leads out of it (to a
    secret) is not read: nothing of the secret is stored or shown; a link inside the folder,
    and a real PDF, are read as before."""
    from conftest import sample_pdfs

    folder = tmp_path / "pdfs"
    folder.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:the-secret-line\n")
    pdf = sample_pdfs()[0]
    (folder / "real.pdf").write_bytes(pdf.read_bytes())
    (folder / "inside.pdf").symlink_to(folder / "real.pdf")
    (folder / "escape.pdf").symlink_to(secret)
    cli = Cli(tmp_path, f"file://{folder}/{{id}}.pdf")
    ids = write_ids(tmp_path / "ids.txt", ["ext:real", "ext:inside", "ext:escape"])
    result = cli.run("run", str(ids), *cli.knobs(progress=False))
    said = result.stdout + result.stderr
    assert result.returncode == 1, said
    states = dict(cli.query("SELECT id, stage FROM jobs"))
    assert states == {"ext:real": "done", "ext:inside": "done", "ext:escape": "failed"}
    (message,) = cli.query("SELECT error_message FROM jobs WHERE id = 'ext:escape'")[0]
    assert "leads out of" in message
    # refused by the check in its extraction process, its attempt is explained there too
    kind = cli.query("SELECT error_kind FROM jobs WHERE id = 'ext:escape'")[0][0]
    errors = cli.query("SELECT job_id, stage, error_kind FROM attempts WHERE outcome = 'error'")
    assert errors == [("ext:escape", "download", kind)]
    everything = said + message + cli.run("status", "--db", str(cli.db)).stdout
    assert "the-secret-line" not in everything and "root:x" not in everything


def _api_answer(behaviour: str) -> Callable[[socket.socket, threading.Event], None]:
    """A stand-in for arXiv's API: `endless` sends a 200 whose body never ends (an Atom feed
    that opens and then is blanks, as fast as they are read: well-formed so far, so only the
    size cap stops it); `trickle` sends one byte every 0.3 s."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/atom+xml\r\n"
                     b"Content-Length: 1000000000000\r\n\r\n<?xml version='1.0'?>"
                     b'<feed xmlns="http://www.w3.org/2005/Atom">')  # fmt: skip
        block = b" " * 65536 if behaviour == "endless" else b" "
        while not stop.is_set():
            conn.sendall(block)
            if behaviour == "trickle":
                stop.wait(0.3)

    return answer


@contextlib.contextmanager
def _papers_and_api(
    tmp_path: Path, answer: Callable[[socket.socket, threading.Event], None], **knobs: Any
) -> Iterator[tuple[Cli, list[str]]]:
    """Two real papers served from 127.0.0.1, and `answer` in the place of arXiv's API:
    (the CLI, the arguments of a run of both), while both servers serve."""
    from conftest import sample_pdfs

    from rpa.testing.mirror import Mirror

    pdfs = sample_pdfs()
    with raw_server(answer) as port:
        api = f"http://127.0.0.1:{port}/api/query"
        with Mirror({"2301.00001": pdfs[0], "2301.00002": pdfs[1]}) as mirror:
            cli = Cli(tmp_path, mirror.url_template)
            ids = write_ids(tmp_path / "ids.txt", ["2301.00001", "2301.00002"])
            yield cli, ["run", str(ids), *cli.knobs(progress=False, metadata="arxiv-api",
                        metadata_url=api, metadata_rate="1/0.1s", **knobs)]  # fmt: skip


def _all_unavailable(cli: Cli, why: str) -> None:
    """Both papers' records say their metadata is `unavailable`, because of `why`."""
    out = cli.run("export", "--db", str(cli.db)).stdout
    metas = [json.loads(line)["metadata"] for line in out.splitlines()]
    assert [m["status"] for m in metas] == ["unavailable", "unavailable"]
    assert all(why in m["reason"] for m in metas)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("behaviour", ["endless", "trickle"])
def test_an_unbounded_metadata_answer_is_cut_and_the_run_goes_on(
    tmp_path: Path, behaviour: str
) -> None:
    with _papers_and_api(tmp_path, _api_answer(behaviour), connect_timeout=1,
                         read_timeout=1) as (cli, args):  # fmt: skip
        result = cli.run(*args, timeout=100)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said  # the papers are done; only their metadata is missing
    assert cli.count("stage = 'done'") == 2
    why = "over 16 MiB" if behaviour == "endless" else "no whole answer within 4 s"
    assert why in said, said
    _all_unavailable(cli, why)


def _gzip_bomb() -> bytes:
    """An Atom feed's start and then 1 GiB of blanks, gzip-compressed: ~1 MB on the wire."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b"<?xml version='1.0'?><feed xmlns=\"http://www.w3.org/2005/Atom\">")]
    blanks = b" " * 2**20
    parts += [packer.compress(blanks) for _ in range(1024)]
    return b"".join([*parts, packer.flush()])


def _bomb_answer(bomb: bytes) -> Callable[[socket.socket, threading.Event], None]:
    """Answer with the bomb as `Content-Encoding: gzip`, though rpa asks for `identity`."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/atom+xml\r\n"
                     b"Content-Encoding: gzip\r\n"
                     + f"Content-Length: {len(bomb)}\r\n\r\n".encode() + bomb)  # fmt: skip

    return answer


@pytest.mark.timeout(200)
def test_a_gzip_bombed_metadata_answer_is_cut_in_bounded_memory(tmp_path: Path) -> None:
    """1 MB on the wire, 1 GiB decoded: the run goes on, the papers are done, their metadata
    is `unavailable` (over the cap), and rpa's processes never held the answer (their peak
    resident memory, the kernel's count for the run and its extraction processes, stays far
    under the 1 GiB it decodes to)."""
    bomb = _gzip_bomb()
    assert len(bomb) < 2 * 2**20
    with _papers_and_api(tmp_path, _bomb_answer(bomb)) as (cli, args):
        proc = cli.popen(*args)
        _, status, usage = os.wait4(proc.pid, 0)  # this run's own peak, not the suite's
        proc.returncode = os.waitstatus_to_exitcode(status)
    said = (tmp_path / "run.log").read_text()
    assert proc.returncode == 0, said
    assert usage.ru_maxrss * 1024 < 512 * 2**20, usage.ru_maxrss  # Linux counts in KiB
    assert cli.count("stage = 'done'") == 2
    _all_unavailable(cli, "over 16 MiB")


async def test_a_compressed_answer_is_decoded_off_the_loop_a_bounded_chunk_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx decodes a gzip body on the event loop, a 64 KiB chunk of a bomb into 64 MiB in
    one call (the audit saw the loop stall 189 ms). The metadata stage reads the raw bytes
    and decodes them in its I/O pool, at most PARSE_CHUNK per call. Which thread decoded is
    what no real part can show from outside, so the real zlib decoder is wrapped by a spy that
    notes it; the server and the bomb are real."""
    import httpx

    from rpa.notices import Notices
    from rpa.run import api_answer, metadata

    calls: list[tuple[int, int]] = []  # (thread, bytes out) of each decode

    class Spy:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def decompress(self, data: bytes, limit: int) -> bytes:
            out: bytes = self.inner.decompress(data, limit)
            calls.append((threading.get_ident(), len(out)))
            return out

        def flush(self) -> bytes:
            out: bytes = self.inner.flush()
            calls.append((threading.get_ident(), len(out)))
            return out

        @property
        def unconsumed_tail(self) -> bytes:
            tail: bytes = self.inner.unconsumed_tail
            return tail

    from rpa.sources.http import body_decoder

    monkeypatch.setattr(api_answer, "body_decoder", lambda response: Spy(body_decoder(response)))
    with raw_server(_bomb_answer(_gzip_bomb())) as port, ThreadPoolExecutor(1) as io:
        url = f"http://127.0.0.1:{port}/api/query"
        service = metadata.MetadataService(
            mode="arxiv-api", queue=cast(Any, None), url=url, batch=2, gate=None,
            client=httpx.AsyncClient, io=io, notices=Notices(), deadline=60,
        )  # fmt: skip
        service._client = httpx.AsyncClient()
        try:
            got = await service._request(["2301.00001", "2301.00002"])
        finally:
            await service._client.aclose()
    assert got == f"the answer is over {api_answer.MAX_ANSWER_BYTES // 2**20} MiB"
    assert calls and threading.get_ident() not in {thread for thread, _ in calls}
    assert max(size for _, size in calls) <= api_answer.PARSE_CHUNK
    limit = api_answer.MAX_ANSWER_BYTES + api_answer.PARSE_CHUNK
    assert sum(size for _, size in calls) <= limit

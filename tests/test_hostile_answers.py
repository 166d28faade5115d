"""Hostile answers and hostile names, from real servers on 127.0.0.1 and real files.

- What reaches a terminal: control sequences in a server's reason phrase and Content-Type
  (retitle, clear, recolour) are shown as text, never obeyed, in the run's output, `rpa status`
  and the stored reasons.
- A symlink out of a file:// folder is refused unread.
- arXiv's API (or what answers in its place) cannot make rpa read without bound: an endless
  answer is cut at the stage's size cap, a trickling one at its deadline; the papers are done,
  their records say why there is no metadata (`unavailable`), and the run ends normally."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

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


@pytest.mark.timeout(120)
@pytest.mark.parametrize("behaviour", ["endless", "trickle"])
def test_an_unbounded_metadata_answer_is_cut_and_the_run_goes_on(
    tmp_path: Path, behaviour: str
) -> None:
    from conftest import sample_pdfs

    from rpa.testing.mirror import Mirror

    pdfs = sample_pdfs()
    with raw_server(_api_answer(behaviour)) as port:
        api = f"http://127.0.0.1:{port}/api/query"
        with Mirror({"2301.00001": pdfs[0], "2301.00002": pdfs[1]}) as mirror:
            cli = Cli(tmp_path, mirror.url_template)
            ids = write_ids(tmp_path / "ids.txt", ["2301.00001", "2301.00002"])
            knobs = cli.knobs(
                progress=False, metadata="arxiv-api", metadata_url=api,
                metadata_rate="1/0.1s", connect_timeout=1, read_timeout=1,
            )  # fmt: skip
            result = cli.run("run", str(ids), *knobs, timeout=100)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said  # the papers are done; only their metadata is missing
    assert cli.count("stage = 'done'") == 2
    why = "over 16 MiB" if behaviour == "endless" else "no whole answer within 4 s"
    assert why in said, said
    out = cli.run("export", "--db", str(cli.db)).stdout
    metas = [json.loads(line)["metadata"] for line in out.splitlines()]
    assert [m["status"] for m in metas] == ["unavailable", "unavailable"]
    assert all(why in m["reason"] for m in metas)

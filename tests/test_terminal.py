"""What reaches a terminal: a server's words are shown, never obeyed. A real server on
127.0.0.1 answers with control sequences in its reason phrase and Content-Type (retitle,
clear, recolour); the run's output, `rpa status` and the stored reasons carry none of them."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Cli, write_ids

ESC = "\x1b"
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31m"


@pytest.fixture
def hostile_server() -> Iterator[str]:
    """Answers every request `418 <control sequences>` with a hostile Content-Type."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    body = b"<html>nope</html>"
                    head = (
                        f"HTTP/1.1 418 Teapot{HOSTILE}reason\r\n"
                        f"Content-Type: text/html{HOSTILE}\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                    )
                    conn.sendall(head.encode("latin-1") + body)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/pdf/{{id}}"
    finally:
        stop.set()
        thread.join()
        listener.close()


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

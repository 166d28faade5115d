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

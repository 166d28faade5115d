"""The live table, as a person sees it: the real CLI under a real pseudo-terminal."""

from __future__ import annotations

import io
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from conftest import Cli, clean_env, sample_pdfs, write_ids
from test_hostile_answers import HOSTILE, raw_server
from test_status import build_queue

from rpa.testing.mirror import Mirror

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FRAME = re.compile(r"rpa (\d{8}T\d{6}-[0-9a-f]{16})  (\d+m\d\ds)  done (\d+)  failed (\d+)")


def _under_pty(cwd: Path, *args: str) -> tuple[str, int | None]:
    """Run the CLI with `args` under a real 150x60 pseudo-terminal to its end: (all it wrote
    to the terminal, its exit status)."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "rpa", *args],
        cwd=str(cwd),
        env=clean_env(TERM="xterm-256color", COLUMNS="150", LINES="60"),
        dimensions=(60, 150),
        encoding="utf-8",
        codec_errors="replace",
        timeout=80,
    )
    raw = []
    while True:
        try:
            raw.append(child.read_nonblocking(65536, timeout=80))
        except pexpect.EOF:
            break
    child.close()
    return "".join(raw), child.exitstatus


@pytest.mark.timeout(90)
def test_live_table_appears_updates_in_place_and_ends_with_the_summary(tmp_path: Path) -> None:
    # 12 jobs through one extraction process: a run of several seconds, papers done one by one
    files = {f"{p.stem}-{i}": p for p in sample_pdfs() for i in range(2)}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{name}" for name in files])
        screen, status = _under_pty(tmp_path, "run", str(ids),
                                    *cli.knobs(workers=20, extract_workers=1))  # fmt: skip
    assert status == 0, ANSI.sub("", screen)[-3000:]
    text = ANSI.sub("", screen)

    # the live table: its sections, the gates by name, the health of the loop
    for title in ("Queue", "Stages", "Speed", "Health", "Extraction", "Gates"):
        assert f"\n{title}" in text
    assert re.search(r"\n  download +\d+/64 ", text), "the download gate row"
    assert re.search(r"\n  extract +\d+/1 ", text), "the extract gate row"
    assert "loop lag p50" in text and "workers busy/idle" in text

    # it was redrawn in place (cursor up + erase line), many times, while papers got done
    assert screen.count("\x1b[1A") > 10
    frames = FRAME.findall(text)
    done = [int(d) for _, _, d, _ in frames]
    assert len({f[0] for f in frames}) == 1  # one run
    assert len(frames) >= 5, f"only {len(frames)} frames"
    assert done == sorted(done), "the done count went backwards"
    assert done[0] < len(files) and done[-1] == len(files)
    assert len(set(done)) >= 3, f"the table did not follow the run: {done}"

    # then the summary, after the last frame
    summary = text[text.rindex("\nrun ") :]
    assert f"finished: {len(files)} done, 0 failed this run" in summary
    for part in ("Slowest papers", "work s", "total wall time:", "event-loop lag over the run"):
        assert part in summary
    assert re.search(r"\n  download +12 +0 +0 ", summary), "per-stage counts in the summary"


@pytest.fixture
def hostile_503() -> Iterator[str]:
    """A PDF host that answers every request `503` with control sequences (retitle the
    terminal, ring, clear it, turn it red) in its reason phrase and its Content-Type."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        body = b"<html>down</html>"
        head = (
            f"HTTP/1.1 503 Unavail{HOSTILE}able\r\nContent-Type: text/html{HOSTILE}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        conn.sendall(head.encode("latin-1") + body)

    with raw_server(answer) as port:
        yield f"http://127.0.0.1:{port}/pdf/{{id}}"


@pytest.mark.timeout(90)
def test_a_servers_control_sequences_reach_the_live_table_as_text(
    tmp_path: Path, hostile_503: str
) -> None:
    """The live table shows a host's reason while it waits for it (the host is down: 503s)
    and in its failures: what reaches the terminal is the reason's text, each control
    character a U+FFFD, never the OSC that retitles it, the BEL, or the ESC[2J that clears it."""
    cli = Cli(tmp_path, hostile_503)
    ids = write_ids(tmp_path / "ids.txt", [f"ext:p{i}" for i in range(6)])
    screen, status = _under_pty(tmp_path, "run", str(ids), *cli.knobs())
    text = ANSI.sub("", screen)
    assert status == 1, text[-3000:]  # the host never answered: unreachable
    live = text[: text.rindex("\nrun ")]  # the frames, before the summary
    assert FRAME.search(live) and "waiting for 127.0.0.1" in live
    assert "Unavail\ufffd]0;pwned\ufffd\ufffd[2J\ufffd[31mable" in live  # shown, as text
    for sequence in ("\x1b]", "\x07", "\x1b[2J"):
        assert sequence not in screen, repr(sequence)


def _generated_at(path: Path) -> float:
    """The read time in the metrics file (0 while it is not there yet)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0.0
    match = re.search(r"^rpa_status_generated_timestamp_seconds (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.timeout(60)
def test_status_watch_refreshes_in_place_until_ctrl_c(tmp_path: Path) -> None:
    db, metrics = tmp_path / "q.db", tmp_path / "rpa.prom"
    build_queue(db)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "rpa", "status", "--watch", "--db", str(db), "--metrics-file", str(metrics)],
        cwd=str(tmp_path),
        env=clean_env(TERM="xterm-256color"),
        dimensions=(60, 160),
        encoding="utf-8",
        codec_errors="replace",  # the tty echoes ^C between the bytes of a box character
        timeout=30,
    )
    screen = io.StringIO()
    child.logfile_read = screen
    try:
        child.expect("Queue")
        child.expect("Runs")
        first = 0.0
        deadline = time.monotonic() + 20
        # every refresh rewrites the metrics file: wait for a second, later read
        while time.monotonic() < deadline:
            now = _generated_at(metrics)
            first = first or now
            if first and now > first:
                break
            child.expect([pexpect.TIMEOUT, "Queue"], timeout=0.2)
        else:
            raise AssertionError("status --watch did not refresh")
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0  # Ctrl-C ends the watch cleanly
    text = ANSI.sub("", screen.getvalue())
    # the queue left by two runs that are gone now: all six leases are stuck
    assert "Stuck: 6 (`rpa resume` reclaims them)" in text and "HTTP 404 for ext:p03" in text
    assert screen.getvalue().count("\x1b[1A") > 5  # redrawn in place, not appended

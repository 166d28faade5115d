"""`rpa demo`: the bundled sample papers, served by a loopback mirror, through a real run.

The demo keeps its own queue (rpa-demo.db) and output (rpa-demo-data/) unless told otherwise,
says so when it has already run, and can start afresh (`--fresh`). Its mirror listens on a new
port each time, so the demo, which owns it, moves the queue's stored `pdf_url` to it.
"""

from __future__ import annotations

import dataclasses
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
from rpa.queue import catalog, is_postgres_url, open_store, reads

__all__ = ["DEMO_DB", "DEMO_OUT", "DemoMirror", "demo_resolved", "demo_state", "remove_demo"]

DEMO_DB = "rpa-demo.db"
DEMO_OUT = Path("rpa-demo-data")
#: seconds the mirror may take to start
MIRROR_START = 30.0


def demo_resolved(resolved: Resolved) -> Resolved:
    """Unless --db or --out was given, the demo's own database and output folder."""
    if "db" in resolved.origins or "out" in resolved.origins:
        return resolved
    settings = dataclasses.replace(resolved.settings, db=DEMO_DB, out=DEMO_OUT)
    return dataclasses.replace(resolved, settings=settings)


def remove_demo(settings: Settings) -> None:
    """--fresh: delete the demo's SQLite database and its output folder."""
    if is_postgres_url(settings.db):
        raise ConfigError("--fresh deletes a SQLite demo database only")
    for suffix in ("", "-wal", "-shm"):
        Path(settings.db + suffix).unlink(missing_ok=True)
    shutil.rmtree(settings.out, ignore_errors=True)


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
        f"run it afresh: {command_hint('demo --fresh')} (deletes {settings.db} and "
        f"{settings.out}/)"
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

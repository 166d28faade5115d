"""The queue's status for `rpa status` and for --metrics-file, and a run's stage timings.

The status is the dict of `rpa status --json` (schema: docs/status.md), read on a read-only store of
its own. The metrics file follows the textfile-collector convention: a temporary file in the
same folder, fsync, rename over the target, so a scrape never sees half a file.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType
from typing import Any

from rpa import errors
from rpa.files import atomic_write
from rpa.queue import open_store, reads
from rpa.run.metrics_file import check_metrics_file
from rpa.run.snapshot import RunSnapshot
from rpa.show.openmetrics import render_openmetrics
from rpa.stages.store import counts as stage_counts

__all__ = ["StatusReader", "run_timings", "write_metrics_file", "write_status_metrics"]


def write_metrics_file(path: Path | str, text: str) -> None:
    """Replace `path` atomically (temporary file beside it, fsync, rename), mode 0644: the
    collector may run as another user."""
    atomic_write(Path(path), text, mode=0o644, make_folder=False)


def write_status_metrics(db: str | Path, path: Path | str, run: RunSnapshot | None = None) -> None:
    """Read the status on a read-only store of its own, render it, write `path`. Blocking:
    during a run it runs in the I/O pool, never on the loop or in a database thread."""
    store = open_store(db, readonly=True)
    try:
        status = reads.status(store)  # as of the database's clock
    finally:
        store.close()
    write_metrics_file(path, render_openmetrics(status, run))


class StatusReader:
    """`rpa status`: the queue's status, as often as asked, on one read-only store. With
    `metrics_file`, every read also rewrites that file (a failure to write it is a
    ConfigError naming the file). Raises rpa.errors.DatabaseError when the queue cannot be
    opened."""

    def __init__(self, db: str | Path, metrics_file: str = "") -> None:
        if metrics_file:
            check_metrics_file(metrics_file, db)
        self.metrics_file = metrics_file
        self._store = open_store(db, readonly=True)

    def read(self) -> dict[str, Any]:
        """The status now (and the metrics file written from it)."""
        data = reads.status(self._store)  # as of the database's clock
        data["user_stages"] = stage_counts(self._store)  # rpa.stages: per stage, per state
        if self.metrics_file:
            try:
                write_metrics_file(self.metrics_file, render_openmetrics(data))
            except OSError as exc:
                raise errors.ConfigError(
                    f"cannot write the metrics file {self.metrics_file}: {exc.strerror or exc}"
                ) from None
        return data

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> StatusReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_timings(db: str | Path, run_id: str, since: float | None = None) -> dict[str, Any] | None:
    """The per-stage timings of run `run_id` (or, `since` given, of every attempt since: a
    group's runs), for its summary; None when the queue cannot be read (the summary is shown
    without them)."""
    with contextlib.suppress(errors.RpaError, OSError):
        store = open_store(db, readonly=True)
        try:
            chosen = {"since": since} if since is not None else {"run_id": run_id}
            return {"run_id": run_id, "stages": reads.stage_timings(store, **chosen)}
        finally:
            store.close()
    return None

"""What a command shows, read from the queue: the status, the export's records, a run's timings.

Each function here opens a read-only store of its own, reads, and closes it; the caller gets
plain data (dicts, an iterator of records) and never a store. Blocking: during a run, call
them in the I/O pool, never on the event loop.

    StatusReader(db, metrics_file)   `rpa status` (once or watching); rewrites --metrics-file
    write_status_metrics(db, path)   the run's --metrics-file, with its live snapshot
    open_records(db)                 `rpa export`: the done papers' records, page by page
    run_timings(db, run_id)          the stage timings in a run's summary

Rendering is not done here: `rpa.show` turns this data into tables, text and files.
"""

from __future__ import annotations

from rpa.report.export import iter_records, open_records, stage_columns
from rpa.report.status import StatusReader, run_timings, write_metrics_file, write_status_metrics

__all__ = [
    "StatusReader",
    "iter_records",
    "open_records",
    "run_timings",
    "stage_columns",
    "write_metrics_file",
    "write_status_metrics",
]

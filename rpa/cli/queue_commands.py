"""The commands that read or upgrade the queue: `rpa status`, `rpa export`, `rpa migrate`.

They process nothing and are safe during a run. The reading is `rpa.report`'s (the status,
the records), the drawing and the formats `rpa.show`'s; what is left here is the choice of
output (a table, JSON, a live view, a file) and the mapping of errors to exit codes. They are
registered on the app in `rpa.cli`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.live import Live

from rpa import errors
from rpa.cli.knobs import with_knobs
from rpa.cli.output import EXIT_USAGE, err, one_line_errors, out, quiet_closed_pipe, say
from rpa.config import Resolved
from rpa.queue import open_store, redact, schema_version
from rpa.report import StatusReader, open_records, stage_columns
from rpa.show.export import write_csv, write_jsonl, write_parquet
from rpa.show.status_view import make_status

__all__ = ["WATCH_INTERVAL", "export", "migrate", "status"]

#: seconds between two reads of `rpa status --watch`
WATCH_INTERVAL = 1.0


@with_knobs({"db", "metrics_file"})
def status(
    as_json: Annotated[bool, typer.Option("--json", help="stable JSON (schema in README)")] = False,
    watch: Annotated[
        bool,
        typer.Option(help="refresh every second until Ctrl-C (with --json: one JSON line each)"),
    ] = False,
    *,
    resolved: Resolved,
) -> None:
    """What the queue holds right now (reads only the database; safe during a run).

    Example: rpa status --json | jq .totals
    Example: rpa status --watch --json | jq -c .totals
    """
    settings = resolved.settings
    with (
        one_line_errors(),
        quiet_closed_pipe(),
        StatusReader(settings.db, settings.metrics_file) as reader,
    ):
        if watch and as_json:
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    print(json.dumps(reader.read(), separators=(",", ":")), flush=True)
                    time.sleep(WATCH_INTERVAL)  # `status` has no event loop: a plain sleep
            return
        if watch:
            with (
                Live(console=out, refresh_per_second=2) as live,
                contextlib.suppress(KeyboardInterrupt),
            ):
                while True:
                    live.update(make_status(reader.read()))
                    time.sleep(WATCH_INTERVAL)
            return
        data = reader.read()
        if as_json:
            print(json.dumps(data, indent=2), flush=True)
        else:
            out.print(make_status(data))


@with_knobs({"db"})
def export(
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl, csv or parquet [default: jsonl]")
    ] = "jsonl",
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="file [default: stdout; parquet needs a file]"),
    ] = None,
    raw_csv: Annotated[
        bool,
        typer.Option(
            "--raw-csv",
            envvar="RPA_RAW_CSV",
            help="CSV cells as they are: no ' before a cell a spreadsheet would run as a "
            "formula (=, +, -, @)",
        ),
    ] = False,
    *,
    resolved: Resolved,
) -> None:
    """Stream one key-outcome record per done paper.

    Example: rpa export --format csv -o outcomes.csv
    Example: rpa export --format parquet -o outcomes.parquet
    Example: rpa export | head -3
    """
    if fmt not in ("jsonl", "csv", "parquet"):
        say("error: ", f"--format must be jsonl, csv or parquet, got {fmt!r}")
        raise typer.Exit(EXIT_USAGE)
    if fmt == "parquet" and output is None:
        say("error: ", "--format parquet writes a file: give -o PATH")
        raise typer.Exit(EXIT_USAGE)
    with one_line_errors():
        stages = stage_columns(resolved.settings.db) if fmt != "jsonl" else []
    writer = (
        write_jsonl if fmt == "jsonl" else functools.partial(write_csv, raw=raw_csv, stages=stages)
    )
    with one_line_errors(), quiet_closed_pipe(), open_records(resolved.settings.db) as records:
        if fmt == "parquet" and output is not None:
            n = write_parquet(records, output, stages)
        elif output is None:
            n = writer(records, sys.stdout)
            sys.stdout.flush()
        else:
            with output.open("w", encoding="utf-8", newline="") as fh:
                n = writer(records, fh)
    err.print(f"exported {n} records")


@with_knobs({"db"})
def migrate(*, resolved: Resolved) -> None:
    """Upgrade a queue database made by an older rpa to this rpa's schema (processes nothing).

    Example: rpa migrate --db rpa.db
    """
    db = resolved.settings.db
    with one_line_errors():
        before, target = schema_version(db)
        if before == 0:
            raise errors.DatabaseError(f"{redact(db)} is not an rpa queue (schema 0)")
        open_store(db, create=False).close()  # applies the migrations, each in a transaction
    if before == target:
        print(f"{redact(db)}: schema {target}, already current")
    else:
        print(f"{redact(db)}: schema {before} -> {target}")

"""The commands that read or upgrade the queue: `rpa status`, `rpa export`, `rpa migrate`.

They process nothing and are safe during a run. The reading is `rpa.report`'s (the status,
the records), the drawing and the formats `rpa.show`'s; what is left here is the choice of
output (a table, JSON, a live view, a file) and the mapping of errors to exit codes. They are
registered on the app in `rpa.cli`.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Optional

import typer
from rich.live import Live

from rpa import errors
from rpa.cli.knobs import with_knobs
from rpa.cli.output import (
    EXIT_USAGE,
    KINDS_OPTION,
    Kind,
    err,
    kind_names,
    one_line_errors,
    out,
    quiet_closed_pipe,
    say,
)
from rpa.config import Resolved
from rpa.files import TEMP_PREFIX, atomic_file
from rpa.hints import command_hint
from rpa.queue import is_queue_file, open_store, redact, schema_version
from rpa.queue.status import failed_papers
from rpa.report import StatusReader, open_records, stage_columns
from rpa.show.export import write_csv, write_jsonl, write_parquet
from rpa.show.failures_view import failure_json, failure_lines
from rpa.show.status_view import make_status
from rpa.units import count

__all__ = ["WATCH_INTERVAL", "export", "failures", "migrate", "status"]

#: seconds between two reads of `rpa status --watch`
WATCH_INTERVAL = 1.0


@with_knobs({"db", "metrics_file"})
def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="stable JSON (schema: docs/status.md)")
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(help="refresh every second until Ctrl-C (with --json: one JSON line each)"),
    ] = False,
    *,
    resolved: Resolved,
) -> None:
    """What the queue holds right now (reads only the database; safe during a run).

    Examples:

    \b
    rpa status --json | jq .totals
    rpa status --watch --json | jq -c .totals
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
def failures(
    kind: Annotated[
        Optional[list[Kind]],  # noqa: UP045
        KINDS_OPTION,
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object per paper, one a line")
    ] = False,
    ids: Annotated[
        bool,
        typer.Option("--ids", help="only the IDs, one a line: the input of another run"),
    ] = False,
    *,
    resolved: Resolved,
) -> None:
    """List the papers that failed for good: ID, kind, attempts, stage, last try, reason.

    Reads only the database (safe during a run).

    Examples:

    \b
    rpa failures --kind not_found
    rpa failures --json | jq -r .reason
    rpa failures --ids > failed.txt
    rpa failures --ids --kind timeout | rpa run - --db other.db --out other-data
    """
    db = resolved.settings.db
    kinds = kind_names(kind)
    if as_json and ids:
        say("error: ", "--json and --ids are two formats: give one")
        raise typer.Exit(EXIT_USAGE)
    n = 0
    with one_line_errors(), quiet_closed_pipe():
        store = open_store(db, readonly=True)
        try:
            for paper in failed_papers(store, kinds, stages=not ids):
                n += 1
                if ids:
                    print(paper["id"])
                elif as_json:
                    print(failure_json(paper))
                else:
                    out.print(failure_lines(paper))
                    if out.quiet:  # its reader left (`| head`): rich dropped stdout
                        break
        finally:
            store.close()
        sys.stdout.flush()
    which = f" of kind {', '.join(kinds)}" if kinds else ""
    if n and not (as_json or ids):
        kind_flags = "".join(f" --kind {k}" for k in kinds or ())
        retry = command_hint(f"retry --db {redact(db)}{kind_flags}")
        out.print(f"{count(n, 'failed paper')}{which}; `{retry}` puts them back")
    elif not n:
        err.print(f"no failed papers{which} in {redact(db)}")


class ExportFormat(enum.StrEnum):
    """`rpa export --format`."""

    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


#: the format an output file's extension names (`rpa export -o`), when --format is not given
_BY_SUFFIX = {
    ".csv": ExportFormat.csv,
    ".parquet": ExportFormat.parquet,
    ".pq": ExportFormat.parquet,
}


@with_knobs({"db"})
def export(
    fmt: Annotated[
        Optional[ExportFormat],  # noqa: UP045
        typer.Option(
            "--format", help="the format [default: -o's extension (.csv, .parquet), else jsonl]"
        ),
    ] = None,
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

    Examples:

    \b
    rpa export -o outcomes.csv
    rpa export -o outcomes.parquet
    rpa export | head -3
    """
    if fmt is None:
        suffix = output.suffix.lower() if output is not None else ""
        fmt = _BY_SUFFIX.get(suffix, ExportFormat.jsonl)
    if fmt == "parquet" and output is None:
        say("error: ", "--format parquet writes a file: give -o PATH")
        raise typer.Exit(EXIT_USAGE)
    db = resolved.settings.db
    if output is not None and is_queue_file(output, db):
        say("error: ", f"-o {output} is the queue database's file: name another file")
        raise typer.Exit(EXIT_USAGE)
    if output is not None and output.is_dir():
        say("error: ", f"{output} is a folder, not a file")
        raise typer.Exit(EXIT_USAGE)
    with one_line_errors():
        stages = stage_columns(resolved.settings.db) if fmt != "jsonl" else []
    writer = (
        write_jsonl if fmt == "jsonl" else functools.partial(write_csv, raw=raw_csv, stages=stages)
    )
    with one_line_errors(), quiet_closed_pipe(), open_records(resolved.settings.db) as records:
        if output is None:
            n = writer(records, sys.stdout)
            sys.stdout.flush()
        else:
            with _export_file(output) as raw:
                if fmt == "parquet":
                    n = write_parquet(records, raw, stages)
                else:
                    text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                    n = writer(records, text)
                    text.flush()
                    text.detach()  # the file is committed and closed by _export_file
    err.print(f"exported {n} records")


@contextlib.contextmanager
def _export_file(output: Path) -> Iterator[IO[bytes]]:
    """-o's file, written whole or not at all (a failed export leaves the file that was there;
    a symbolic link's target is replaced, the link kept); a device or a pipe (/dev/stdout)
    as it is. An error names `output`, not the temporary file beside it."""
    if output.exists() and not output.resolve().is_file():
        with output.open("wb") as fh:
            yield fh
        return
    try:
        with atomic_file(output.resolve(), make_folder=False) as raw:
            yield raw
    except OSError as exc:
        if exc.filename is not None and TEMP_PREFIX in os.path.basename(str(exc.filename)):
            exc.filename = str(output)
        raise


@with_knobs({"db"})
def migrate(*, resolved: Resolved) -> None:
    """Upgrade a queue database made by an older rpa to this rpa's schema (processes nothing).

    Example:

    \b
    rpa migrate --db rpa.db
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

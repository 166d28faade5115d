"""The command line: a thin adapter over the library.

Each command parses, resolves settings (defaults < config file < env < flags, in
`rpa.config.load_settings`), calls one library function and maps the one error tree to exit
codes: 0 all done, 1 some failed (or a host refused us), 2 usage/config/input errors,
130 interrupted. The knob options are generated from `Settings`, so a new knob is a flag, an
env var and a config key at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.live import Live

from rpa import __version__, errors
from rpa.config import ENV_PREFIX, Settings, knob_fields, load_settings
from rpa.db import connect, upgrade
from rpa.enqueue import enqueue_file
from rpa.export import write_csv, write_jsonl
from rpa.openmetrics import render_openmetrics, write_metrics_file
from rpa.politeness import politeness_notice
from rpa.render import (
    format_line,
    make_run_table,
    make_status,
    make_summary,
    snapshot_dict,
    summary_dict,
)
from rpa.status import collect_status, read_run_timings

if TYPE_CHECKING:
    # The pipeline pulls in httpx, pypdf and the pool: imported only by the commands that run
    # it, so `rpa status` and `rpa export` start fast.
    from rpa.pipeline import Runner, RunSummary

__all__ = ["app", "main"]

app = typer.Typer(
    name="rpa",
    help="Batch pipeline runner for research papers: arXiv IDs -> queue -> PDF -> text -> "
    "key outcomes. Every knob is a flag, an RPA_* env var and a key in the config TOML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
SAMPLES = Path(__file__).parent / "samples"
PROGRESS_INTERVAL = 0.25
LOG_INTERVAL = 5.0


# ---- options generated from Settings --------------------------------------------------------


def _knob_parameters(names: set[str] | None = None) -> list[inspect.Parameter]:
    params = []
    for f in knob_fields():
        if names is not None and f.name not in names:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        typ: Any = {"int": int, "float": float, "Path": Path, "bool": bool}.get(kind, str)
        decls = [f"{flag}/--no-{flag[2:]}"] if typ is bool else [flag]
        option = typer.Option(
            *decls,
            help=f"{f.metadata['help']} [default: {f.default}]",
            envvar=f"{ENV_PREFIX}{f.name.upper()}",
            show_envvar=True,
            show_default=False,
            rich_help_panel="Knobs",
        )
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[Optional[typ], option],  # noqa: UP045 (typer needs it)
            )
        )
    return params


CONFIG_PARAM = inspect.Parameter(
    "config",
    inspect.Parameter.KEYWORD_ONLY,
    default=None,
    annotation=Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--config",
            envvar="RPA_CONFIG",
            show_envvar=True,
            help="config TOML (default: ./rpa.toml if present)",
        ),
    ],
)


def with_knobs(names: set[str] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the knob options (all, or `names`) and `--config`; the function receives
    `settings` instead of them."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())
        own = [p for p in own if p.name != "settings"]
        knobs = _knob_parameters(names)
        knob_names = {p.name for p in knobs}

        def wrapper(**kwargs: Any) -> Any:
            ctx: typer.Context = kwargs.pop("ctx")
            flags = {}
            for name in knob_names:
                value = kwargs.pop(name)
                # Only what was typed counts as a flag; env and defaults are load_settings' job.
                # (Typer vendors click: compare the enum by name, not identity.)
                source = ctx.get_parameter_source(name)
                if source is not None and source.name == "COMMANDLINE":
                    flags[name] = value
            config = kwargs.pop("config")
            try:
                settings, _ = load_settings(config_path=config, flags=flags)
            except errors.ConfigError as exc:
                err.print(f"[red]config error:[/red] {exc}")
                raise typer.Exit(EXIT_USAGE) from None
            return fn(settings=settings, **kwargs)

        ctx_param = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )
        params = [ctx_param, *own, CONFIG_PARAM, *knobs]
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        return wrapper

    return decorate


# ---- running --------------------------------------------------------------------------------


async def _drive(runner: Runner, settings: Settings) -> RunSummary:
    """Run, with the live table (a terminal) or periodic lines (anything else)."""
    task = asyncio.create_task(runner.run())
    if settings.progress and out.is_terminal:
        # The loop only swaps in a fresh snapshot: no lock, no rendering, no terminal write.
        # Live's own thread renders it (cheaply, see rpa.render) and writes it, so neither the
        # drawing nor a slow terminal can hold up the loop.
        frame = [runner.snapshot()]
        with Live(
            get_renderable=lambda: make_run_table(frame[0]),
            console=out,
            refresh_per_second=1 / PROGRESS_INTERVAL,
            transient=False,
        ):
            while not task.done():
                await asyncio.wait({task}, timeout=PROGRESS_INTERVAL)
                frame[0] = runner.snapshot()
    elif settings.progress:
        while not task.done():
            await asyncio.wait({task}, timeout=LOG_INTERVAL)
            if not task.done():
                snap = runner.snapshot()
                line = (
                    json.dumps(snapshot_dict(snap))
                    if settings.log_format == "json"
                    else format_line(snap)
                )
                await asyncio.to_thread(print, line, flush=True)  # a pipe may be slow
    return await task


def _politeness(settings: Settings) -> None:
    """Before a large run against arXiv: what its politeness budget means (stderr)."""
    host = urlsplit(settings.pdf_url.replace("{id}", "x")).hostname or ""
    if not settings.db.exists():
        return
    conn = connect(settings.db, readonly=True)
    try:
        row = conn.execute("SELECT n FROM stage_counts WHERE stage = 'queued'").fetchone()
        pending = row[0] if row else 0
    finally:
        conn.close()
    notice = politeness_notice(pending, host, settings.rate_limits, settings.mailto)
    if notice:
        err.print(f"[yellow]{notice}[/yellow]", highlight=False)


def _run_queue(settings: Settings, command: str) -> None:
    _politeness(settings)
    from rpa.pipeline import Runner

    runner = Runner(settings, command=command)
    # What is alive now (every imported module, the settings) lives as long as the process:
    # frozen, the collector's full passes no longer walk it on the loop thread (54 ms each).
    gc.freeze()
    try:
        summary = asyncio.run(_drive(runner, settings))
    except errors.RpaError as exc:
        err.print(f"[red]error:[/red] {exc}")
        code = EXIT_USAGE if isinstance(exc, errors.DatabaseError) else EXIT_FAILED
        raise typer.Exit(code) from None
    timings = read_run_timings(settings.db, summary.run_id)
    if settings.log_format == "json" and not out.is_terminal:
        print(json.dumps(summary_dict(summary, timings)), flush=True)
    else:
        out.print(make_summary(summary, timings))
    if summary.status == "interrupted":
        out.print("interrupted: run `rpa resume` to continue where this stopped")
    raise typer.Exit(summary.exit_code)


def _enqueue(settings: Settings, ids: Path, strict: bool) -> None:
    def show(error: errors.InvalidIdError) -> None:
        if shown[0] < 20:
            err.print(
                f"[yellow]skipped[/yellow] {ids}:{error.line}: {error.text!r}: {error.reason}",
                highlight=False,
            )
        shown[0] += 1

    shown = [0]
    start = time.perf_counter()
    try:
        report = enqueue_file(settings.db, ids, strict=strict, on_invalid=show)
    except errors.RpaError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    if report.invalid > shown[0] or report.invalid > 20:
        err.print(f"... {report.invalid} invalid lines in all")
    out.print(
        f"queued {report.new} new of {report.valid} valid IDs ({report.duplicates} already "
        f"queued or repeated, {report.invalid} invalid) in {time.perf_counter() - start:.2f}s",
        highlight=False,
    )


@app.command()
@with_knobs()
def run(
    ids: Annotated[Path, typer.Argument(help="file of arXiv IDs, one per line (# comments)")],
    strict: Annotated[
        bool, typer.Option(help="refuse the whole file if any line is invalid")
    ] = False,
    *,
    settings: Settings,
) -> None:
    """Queue the IDs in IDS (idempotent) and process until nothing is left.

    Example: rpa run ids.txt --workers 200 --download-concurrency 32
    """
    _enqueue(settings, ids, strict)
    _run_queue(settings, "run")


@app.command()
@with_knobs()
def resume(*, settings: Settings) -> None:
    """Continue an interrupted run: reclaim dead leases, then process what is left.

    Example: rpa resume --db rpa.db
    """
    if not settings.db.exists():
        err.print(f"[red]error:[/red] no queue database at {settings.db}; start with `rpa run`")
        raise typer.Exit(EXIT_USAGE)
    _run_queue(settings, "resume")


def _write_metrics(settings: Settings, data: dict[str, Any]) -> None:
    if not settings.metrics_file:
        return
    try:
        write_metrics_file(settings.metrics_file, render_openmetrics(data))
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write the metrics file: {exc}")
        raise typer.Exit(EXIT_USAGE) from None


@app.command()
@with_knobs({"db", "metrics_file"})
def status(
    as_json: Annotated[bool, typer.Option("--json", help="stable JSON (schema in README)")] = False,
    watch: Annotated[
        bool,
        typer.Option(help="refresh every second until Ctrl-C (with --json: one JSON line each)"),
    ] = False,
    *,
    settings: Settings,
) -> None:
    """What the queue holds right now (reads only the database; safe during a run).

    Example: rpa status --json | jq .totals
    Example: rpa status --watch --json | jq -c .totals
    """
    try:
        conn = connect(settings.db, readonly=True)
    except errors.RpaError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        if watch and as_json:
            # JSON lines: one compact object a second, flushed, until Ctrl-C or a closed pipe.
            try:
                while True:
                    data = collect_status(conn)
                    _write_metrics(settings, data)
                    print(json.dumps(data, separators=(",", ":")), flush=True)
                    time.sleep(1.0)
            except KeyboardInterrupt:
                return
            except BrokenPipeError:  # the reader left (`| head -3`): not an error
                # Python would flush stdout again at exit and complain: point it at nothing.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
        if watch:
            # `status` has no event loop: a plain sleep between refreshes is right here.
            with (
                Live(console=out, refresh_per_second=2) as live,
                contextlib.suppress(KeyboardInterrupt),
            ):
                while True:
                    data = collect_status(conn)
                    _write_metrics(settings, data)
                    live.update(make_status(data))
                    time.sleep(1.0)
            return
        data = collect_status(conn)
        _write_metrics(settings, data)
        if as_json:
            print(json.dumps(data, indent=2))
        else:
            out.print(make_status(data))
    finally:
        conn.close()


@app.command()
@with_knobs({"db"})
def export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="file (default: stdout)",
        ),
    ] = None,
    *,
    settings: Settings,
) -> None:
    """Stream one key-outcome record per done paper.

    Example: rpa export --format csv -o outcomes.csv
    """
    if fmt not in ("jsonl", "csv"):
        err.print(f"[red]error:[/red] --format must be jsonl or csv, got {fmt!r}")
        raise typer.Exit(EXIT_USAGE)
    try:
        conn = connect(settings.db, readonly=True)
    except errors.RpaError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    writer = write_jsonl if fmt == "jsonl" else write_csv
    try:
        if output is None:
            n = writer(conn, sys.stdout)
        else:
            with output.open("w", encoding="utf-8", newline="") as fh:
                n = writer(conn, fh)
    finally:
        conn.close()
    err.print(f"exported {n} records", highlight=False)


@app.command()
@with_knobs({"db"})
def migrate(*, settings: Settings) -> None:
    """Upgrade a queue database made by an older rpa to this rpa's schema (processes nothing).

    Example: rpa migrate --db rpa.db
    """
    try:
        before, now = upgrade(settings.db)
    except errors.RpaError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    if before == now:
        print(f"{settings.db}: schema {now}, already current")
    else:
        print(f"{settings.db}: schema {before} -> {now}")


@app.command()
@with_knobs()
def demo(*, settings: Settings) -> None:
    """Offline demo: serve the bundled sample papers from a loopback mirror and run them.

    The samples are not arXiv papers: they are queued as ext:<name> IDs. Unless --db/--out are
    given, the demo uses rpa-demo.db and rpa-demo-data/. Example: rpa demo
    """
    defaults = Settings()
    if settings.db == defaults.db and settings.out == defaults.out:
        # Keep the demo out of a real queue in the same folder.
        settings = dataclasses.replace(settings, db=Path("rpa-demo.db"), out=Path("rpa-demo-data"))
    ids_file = Path(tempfile.mkdtemp(prefix="rpa-demo-")) / "demo-ids.txt"
    ready = ids_file.parent / "mirror-url"
    names = sorted(p.stem for p in SAMPLES.glob("*.pdf"))
    ids_file.write_text(
        "# bundled sample papers (not arXiv papers)\n" + "".join(f"ext:{n}\n" for n in names)
    )
    mirror = subprocess.Popen(
        [sys.executable, "-m", "rpa.mirror", str(SAMPLES), "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if mirror.poll() is not None or time.monotonic() > deadline:
                err.print("[red]error:[/red] the loopback mirror did not start")
                raise typer.Exit(EXIT_FAILED)
            time.sleep(0.05)
        template = ready.read_text().strip()
        out.print(f"serving {len(names)} sample papers at {template}", highlight=False)
        settings = dataclasses.replace(settings, pdf_url=template)
        _enqueue(settings, ids_file, strict=True)
        _run_queue(settings, "demo")
    finally:
        mirror.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            mirror.wait(timeout=5)


def _version(value: bool) -> None:
    if value:
        print(f"rpa {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """rpa: arXiv IDs -> durable queue -> download -> extract -> key outcomes."""


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)

"""The command line: a thin adapter over the library.

Each command parses, resolves settings (defaults < config file < env < flags, in
`rpa.config.load_settings`), calls the library and maps the one error tree to exit codes:
0 all done, 1 some failed (or a host refused us, or the run crashed), 2 usage, config, input or
database errors, 130 interrupted. Every error is one line (or a short paragraph), never a
traceback. The knob options are generated from `Settings`, so a new knob is a flag, an env var
and a config key at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from rpa import __version__, errors
from rpa.config import ENV_PREFIX, Resolved, Settings, knob_fields, load_settings
from rpa.queue import open_store, redact, schema_version
from rpa.queue.model import new_run_id
from rpa.report import StatusReader, open_records, run_timings
from rpa.run.prepare import Prepared, prepare
from rpa.run.tars import TarReport
from rpa.show.export import write_csv, write_jsonl, write_parquet
from rpa.show.status_view import make_status
from rpa.sources.politeness import politeness_notice

if TYPE_CHECKING:
    from rpa.run.runner import Runner, RunSummary

__all__ = ["app", "main"]

app = typer.Typer(
    name="rpa",
    help="Batch pipeline runner for research papers: arXiv IDs -> queue -> PDF -> text -> "
    "key outcomes. Every knob is a flag, an RPA_* env var and a key in the config TOML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are literal: `rpa[pdfium]`, `[default: 200]`
)


class _Out(Console):
    def on_broken_pipe(self) -> None:
        """A reader that leaves (`rpa run ids | head`) does not change how a command ends:
        the rest of the output goes nowhere and the exit code stays the command's (rich
        would exit 1 here, silently)."""
        _drop_stdout()


def _drop_stdout() -> None:
    """Standard output's reader is gone: what is still written goes nowhere (Python would
    flush it again at exit and complain)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    out.quiet = True


out = _Out(soft_wrap=True, highlight=False, markup=False)
err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
SAMPLES = Path(__file__).parent.parent / "samples"
PROGRESS_INTERVAL = 0.25
LOG_INTERVAL = 5.0


# ---- errors ----------------------------------------------------------------------------------


def _exit_code(exc: BaseException) -> int:
    usage = (errors.ConfigError, errors.InputError, errors.DatabaseError)
    return EXIT_USAGE if isinstance(exc, usage) else EXIT_FAILED


def _say(label: str, text: str, style: str = "red") -> None:
    """One message on stderr: a coloured label, then the text as it is (no markup)."""
    err.print(Text.assemble((label, style), str(text)))


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """Every error a command meets, as one red line and an exit code; never a traceback
    (set RPA_DEBUG=1 to see one for an error that is rpa's bug)."""
    try:
        yield
    except errors.RpaError as exc:
        _say("error: ", str(exc))
        raise typer.Exit(_exit_code(exc)) from None
    except OSError as exc:
        _say("error: ", str(exc))
        raise typer.Exit(EXIT_FAILED) from None
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if os.environ.get("RPA_DEBUG"):
            raise
        _say(
            "internal error: ",
            f"{type(exc).__name__}: {exc} (a bug in rpa: please report it; RPA_DEBUG=1 shows "
            "the traceback)",
        )
        raise typer.Exit(EXIT_FAILED) from None


# ---- options generated from Settings --------------------------------------------------------


def _knob_parameters(names: set[str] | None = None) -> list[inspect.Parameter]:
    params = []
    for f in knob_fields():
        if names is not None and f.name not in names:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).split("[")[0]
        typ: Any = {"int": int, "float": float, "Path": Path, "bool": bool}.get(kind, str)
        decls = [f"{flag}/--no-{flag[2:]}"] if typ is bool else [flag]
        default = f.default if not isinstance(f.default, str) or f.default else "''"
        option = typer.Option(
            *decls,
            help=f"{f.metadata['help']} [default: {default}]",
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
            help="config TOML [default: ./rpa.toml if present]",
        ),
    ],
)


def with_knobs(names: set[str] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the knob options (all, or `names`) and `--config`; the function receives
    `resolved` (the settings and where each came from) instead of them."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())
        own = [p for p in own if p.name != "resolved"]
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
            with _one_line_errors():
                resolved = load_settings(config_path=config, flags=flags)
                return fn(resolved=resolved, **kwargs)

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


class _Printer:
    """Lines for the terminal written in a thread of their own, in order: a slow pipe or
    terminal never holds up the event loop."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rpa-print")

    def say(self, text: str, *, stderr: bool = False) -> None:
        self._pool.submit(print, text, file=sys.stderr if stderr else sys.stdout, flush=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


async def _drive(runner: Runner, settings: Settings, printer: _Printer) -> RunSummary:
    """Run, with the live table (a terminal) or periodic lines (anything else)."""
    from rpa.show.live import format_line, make_run_table, snapshot_dict

    task = asyncio.create_task(runner.run())
    if settings.progress and out.is_terminal:
        # The loop only swaps in a fresh snapshot: no lock, no rendering, no terminal write.
        # Live's own thread renders it (cheaply, see rpa.show.fmt) and writes it, so neither
        # the drawing nor a slow terminal can hold up the loop.
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
            if not task.done():  # a line every LOG_INTERVAL, busy or idle
                snap = runner.snapshot()
                json_lines = settings.log_format == "json"
                printer.say(json.dumps(snapshot_dict(snap)) if json_lines else format_line(snap))
    return await task


def _show_report(ids: Path, report: Any, seconds: float) -> None:
    out.print(
        f"queued {report.new} new of {report.valid} valid IDs ({report.duplicates} already "
        f"queued or repeated, {report.invalid} invalid) in {seconds:.2f}s"
    )


def _show_tars(t: TarReport) -> None:
    out.print(
        f"indexed {t.tars} tars ({t.indexed} new or changed): {t.members:,} papers, in "
        f"{t.seconds:.2f}s"
    )
    for tar, why in t.damaged:
        _say("damaged tar ", f"{tar}: {why} (its members up to there are indexed)", "yellow")
    if t.listed is None:
        out.print(f"queued {t.new:,} new of the tars' {t.members:,} papers")
        return
    out.print(f"queued {t.new:,} new of {t.listed:,} listed IDs ({t.invalid} invalid)")
    if t.missing:
        sample = ", ".join(t.missing_sample)
        more = (
            f" and {t.missing - len(t.missing_sample)} more"
            if t.missing > len(t.missing_sample)
            else ""
        )
        _say("not in the tars: ", f"{t.missing} listed IDs: {sample}{more}", "yellow")


def _start_run(
    resolved: Resolved, command: str, *, ids: Path | None = None, strict: bool = False,
    reconfigure: bool = False,
) -> None:  # fmt: skip
    """Prepare (settings, checks, IDs), then run the queue, then say what happened."""
    shown = [0]

    def skipped(error: errors.InvalidIdError) -> None:
        if shown[0] < 20:
            _say("skipped ", f"{ids}:{error.line}: {error.text!r}: {error.reason}", "yellow")
        shown[0] += 1

    run_id = new_run_id()
    start = time.perf_counter()
    with _one_line_errors():
        prepared = prepare(
            resolved, command=command, run_id=run_id, now=time.time(), ids=ids, strict=strict,
            reconfigure=reconfigure, on_invalid=skipped,
        )  # fmt: skip
    settings = prepared.settings
    if prepared.tars is not None:
        _show_tars(prepared.tars)
    if prepared.report is not None and ids is not None:
        if prepared.report.invalid > 20:
            err.print(f"... {prepared.report.invalid} invalid lines in all")
        _show_report(ids, prepared.report, time.perf_counter() - start)
    for note in prepared.notes:
        _say("", note, "yellow")
    if prepared.snapshot is not None:
        j = prepared.snapshot
        out.print(f"metadata: {j.found:,} of {j.wanted:,} papers found in "
                  f"{settings.metadata_file} in {j.seconds:.1f}s")  # fmt: skip
    if prepared.remaining == 0:
        _nothing_left(settings, prepared)
    host = settings.pdf_url.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
    notice = politeness_notice(prepared.remaining, host, settings.rate_limits, settings.mailto)
    if notice:
        err.print(Text(notice, style="yellow"))
    summary = _execute(settings, command, run_id)
    _finish(settings, summary)


def _nothing_left(settings: Settings, prepared: Prepared) -> NoReturn:
    """The queue has no work left: say so, and start no run (an empty run's summary of
    dashes said nothing). Exit 1 when some papers failed for good, as a run would."""
    db = redact(settings.db)
    if _as_json(settings):  # `| jq` sees an event, as it would a run's summary
        with _reader_may_leave():
            print(json.dumps({"event": "nothing_left", "db": db, "done": prepared.done,
                              "failed": prepared.failed, "remaining": 0}), flush=True)  # fmt: skip
    say = _hints(settings)
    say.print(f"nothing left to do in {db}: {prepared.done} done, {prepared.failed} failed, "
              "0 remaining")  # fmt: skip
    _closing_lines(say, settings, prepared.failed, next_steps=False)
    raise typer.Exit(1 if prepared.failed else 0)


def _as_json(settings: Settings) -> bool:
    """Does stdout carry JSON lines (progress, summary) rather than text?"""
    return settings.log_format == "json" and not out.is_terminal


def _hints(settings: Settings) -> Console:
    """Where the closing hints go: after JSON lines on stdout, stderr (`| jq` must see only
    JSON)."""
    return err if _as_json(settings) else out


def _closing_lines(say: Console, settings: Settings, failed: int, *, next_steps: bool) -> None:
    """Where the results are, what to type next, and the retry hint when papers failed."""
    db = redact(settings.db)
    say.print(f"results: {Path(settings.out).resolve()} (outcome/, text/, pdf/)")
    if next_steps:
        say.print(f"next: rpa status --db {db}   |   rpa export --db {db} > outcomes.jsonl")
    if failed:
        say.print(f"failed papers: `rpa retry --db {db}` puts them back, then `rpa resume`")


def _execute(settings: Settings, command: str, run_id: str) -> RunSummary:
    import gc

    from rpa.run.runner import Runner
    from rpa.run.tally import Notices

    printer = _Printer()
    live_table = settings.progress and out.is_terminal
    # Without a live table, each notice (a wait, a lost lease, a host refusing us) is a line.
    notices = Notices(None if live_table else lambda text: printer.say(f"rpa: {text}", stderr=True))
    runner = Runner(settings, command=command, run_id=run_id, notices=notices)
    # What is alive now (every imported module, the settings) lives as long as the process:
    # frozen, the collector's full passes no longer walk it on the loop thread (54 ms each).
    gc.freeze()
    try:
        with _one_line_errors():
            return asyncio.run(_drive(runner, settings, printer))
    finally:
        printer.close()


def _finish(settings: Settings, summary: RunSummary) -> None:
    from rpa.show.summary import make_summary, summary_dict

    timings = run_timings(settings.db, summary.run_id)
    with _reader_may_leave():
        if _as_json(settings):
            print(json.dumps(summary_dict(summary, timings)), flush=True)
        else:
            out.print(make_summary(summary, timings))
        hint = _hints(settings)
        db = redact(settings.db)
        if summary.status == "interrupted":
            hint.print(f"interrupted: `rpa resume --db {db}` continues where this stopped")
        elif summary.status == "crashed":
            hint.print(f"crashed: fix the cause above, then `rpa resume --db {db}`")
        elif summary.status == "denied":
            hint.print(f"denied: a host refused us (see above); wait, then `rpa resume --db {db}`")
        _closing_lines(hint, settings, summary.totals.failed, next_steps=True)
    raise typer.Exit(summary.exit_code)


@contextlib.contextmanager
def _reader_may_leave() -> Iterator[None]:
    """A reader of a run's output that leaves (`rpa run ids | head`) does not change how the
    run ended: the rest of the output goes nowhere, the exit code stays the run's (click would
    make a closed pipe exit 1, silently)."""
    try:
        yield
    except BrokenPipeError:
        _drop_stdout()


RECONFIGURE = Annotated[
    bool,
    typer.Option(
        "--reconfigure",
        help="allow changing settings stored in the queue (out, pdf_url, pdf_tar, extractor, "
        "rate_limits, max_pdf_mb, follow_redirects); the change is recorded",
    ),
]


@app.command()
@with_knobs()
def run(
    ids: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(
            help="file of arXiv IDs, one per line (# comments); with --pdf-tar, "
            "optional: only these of the tars' papers [default: all of them]"
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="refuse the whole file if any line is invalid")
    ] = False,
    reconfigure: RECONFIGURE = False,
    *,
    resolved: Resolved,
) -> None:
    """Queue the IDs in IDS (idempotent) and process until nothing is left.

    Example: rpa run ids.txt --workers 200 --download-concurrency 32
    Example: rpa run --pdf-tar 'bulk/arXiv_pdf_*.tar'
    """
    _start_run(resolved, "run", ids=ids, strict=strict, reconfigure=reconfigure)


@app.command()
@with_knobs()
def resume(reconfigure: RECONFIGURE = False, *, resolved: Resolved) -> None:
    """Continue the queue where it stopped, with its stored settings: reclaim dead leases,
    then process what is left.

    Example: rpa resume --db rpa.db
    """
    _start_run(resolved, "resume", reconfigure=reconfigure)


@app.command()
@with_knobs({"db"})
def retry(
    kind: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--kind", help="only failures of this kind (repeatable) [default: all]"),
    ] = None,
    *,
    resolved: Resolved,
) -> None:
    """Put failed papers back in the queue with fresh attempts (processes nothing).

    Their checkpoints stay (a paper that failed extracting is not downloaded again) and their
    history stays in the attempts table. `rpa resume` then runs them.
    Example: rpa retry --kind connection --kind timeout
    """
    db = resolved.settings.db
    unknown = sorted(set(kind or ()) - errors.KINDS)
    if unknown:
        _say("error: ", f"no failure kind {', '.join(map(repr, unknown))}; the kinds are "
             f"{', '.join(sorted(errors.KINDS))}", "red")  # fmt: skip
        raise typer.Exit(EXIT_USAGE)
    with _one_line_errors():
        store = open_store(db, create=False)
        try:
            counts = store.retry_failed(kind or None, time.time())
        finally:
            store.close()
    if not counts:
        which = f" of kind {', '.join(kind)}" if kind else ""
        out.print(f"no failed papers{which} in {redact(db)}: nothing to retry")
        return
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        out.print(f"  {name:<16} {n:>8}")
    out.print(f"{sum(counts.values())} failed papers back in the queue; "
              f"`rpa resume --db {redact(db)}` runs them")  # fmt: skip


@contextlib.contextmanager
def _quiet_closed_pipe() -> Iterator[None]:
    """A reader that leaves (`| head`) is not an error: exit 0, quietly."""
    try:
        yield
    except BrokenPipeError:
        _drop_stdout()
        raise typer.Exit(EXIT_OK) from None


@app.command()
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
        _one_line_errors(),
        _quiet_closed_pipe(),
        StatusReader(settings.db, settings.metrics_file) as reader,
    ):
        if watch and as_json:
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    print(json.dumps(reader.read(), separators=(",", ":")), flush=True)
                    time.sleep(1.0)  # `status` has no event loop: a plain sleep is right
            return
        if watch:
            with (
                Live(console=out, refresh_per_second=2) as live,
                contextlib.suppress(KeyboardInterrupt),
            ):
                while True:
                    live.update(make_status(reader.read()))
                    time.sleep(1.0)
            return
        data = reader.read()
        if as_json:
            print(json.dumps(data, indent=2), flush=True)
        else:
            out.print(make_status(data))


@app.command()
@with_knobs({"db"})
def export(
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl, csv or parquet [default: jsonl]")
    ] = "jsonl",
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="file [default: stdout; parquet needs a file]"),
    ] = None,
    *,
    resolved: Resolved,
) -> None:
    """Stream one key-outcome record per done paper.

    Example: rpa export --format csv -o outcomes.csv
    Example: rpa export --format parquet -o outcomes.parquet
    Example: rpa export | head -3
    """
    if fmt not in ("jsonl", "csv", "parquet"):
        _say("error: ", f"--format must be jsonl, csv or parquet, got {fmt!r}")
        raise typer.Exit(EXIT_USAGE)
    if fmt == "parquet" and output is None:
        _say("error: ", "--format parquet writes a file: give -o PATH")
        raise typer.Exit(EXIT_USAGE)
    writer = write_jsonl if fmt == "jsonl" else write_csv
    with _one_line_errors(), _quiet_closed_pipe(), open_records(resolved.settings.db) as records:
        if fmt == "parquet" and output is not None:
            n = write_parquet(records, output)
        elif output is None:
            n = writer(records, sys.stdout)
            sys.stdout.flush()
        else:
            with output.open("w", encoding="utf-8", newline="") as fh:
                n = writer(records, fh)
    err.print(f"exported {n} records")


@app.command()
@with_knobs({"db"})
def migrate(*, resolved: Resolved) -> None:
    """Upgrade a queue database made by an older rpa to this rpa's schema (processes nothing).

    Example: rpa migrate --db rpa.db
    """
    db = resolved.settings.db
    with _one_line_errors():
        before, target = schema_version(db)
        if before == 0:
            raise errors.DatabaseError(f"{redact(db)} is not an rpa queue (schema 0)")
        open_store(db, create=False).close()  # applies the migrations, each in a transaction
    if before == target:
        print(f"{redact(db)}: schema {target}, already current")
    else:
        print(f"{redact(db)}: schema {before} -> {target}")


@app.command()
@with_knobs()
def demo(
    fresh: Annotated[
        bool, typer.Option(help="delete the demo's database and output first")
    ] = False,
    *,
    resolved: Resolved,
) -> None:
    """Offline demo: serve the bundled sample papers from a loopback mirror and run them.

    The samples are not arXiv papers: they are queued as ext:<name> IDs. Unless --db/--out are
    given, the demo uses rpa-demo.db and rpa-demo-data/. Example: rpa demo
    """
    from rpa.run.demo import DemoMirror, demo_resolved, demo_state, remove_demo

    with _one_line_errors():
        resolved = demo_resolved(resolved)
        settings = resolved.settings
        if fresh:
            remove_demo(settings)
        state = demo_state(settings)
        if state is not None:
            out.print(state)
            raise typer.Exit(EXIT_OK)
        with DemoMirror(SAMPLES, settings) as mirror:
            out.print(f"serving {mirror.count} sample papers at {mirror.template}")
            _start_run(mirror.resolved(resolved), "demo", ids=mirror.ids_file, strict=True)


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

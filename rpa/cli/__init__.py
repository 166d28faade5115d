"""The command line: a thin adapter over the library.

Each command parses, resolves settings (defaults < config file < env < flags, in
`rpa.config.load_settings`), calls the library and maps the one error tree to exit codes:
0 all done, 1 some failed (or a host refused us, or the run crashed), 2 usage, config, input or
database errors, 75 declared dead (another run took its jobs while it was paused), 130
interrupted. Every error is one line (or a short paragraph), never a
traceback. The knob options are generated from `Settings`, so a new knob is a flag, an env var
and a config key at once.

    rpa.cli                 the app, its root options (--version) and `main`
    rpa.cli.knobs           the options generated from Settings (`with_knobs`)
    rpa.cli.output          the consoles, one-line errors and exit codes, a reader that leaves
    rpa.cli.drive           a run as the CLI shows it: prepare, live table or lines, summary
    rpa.cli.run_commands    run, resume, retry, demo
    rpa.cli.queue_commands  status, failures, export, migrate

Only this package imports Typer; only it and `rpa.show` import Rich.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from rpa import __version__
from rpa.cli import queue_commands, run_commands
from rpa.cli.output import EXIT_INTERRUPTED, err
from rpa.hints import launcher

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

# In this order in `rpa --help`.
app.command()(run_commands.run)
app.command()(run_commands.resume)
app.command()(run_commands.retry)
app.command()(queue_commands.status)
app.command()(queue_commands.failures)
app.command()(queue_commands.export)
app.command()(queue_commands.migrate)
app.command()(run_commands.demo)


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
    """The `rpa` command (and `python -m rpa`)."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app(prog_name=launcher())  # its usage errors name the command as the user typed it
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)

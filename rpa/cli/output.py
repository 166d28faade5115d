"""Where the CLI's words go: the two consoles, the one-line errors, a reader that leaves.

Exit codes: 0 all done, 1 some failed (or a host refused us, or the run crashed), 2 usage,
config, input or database errors, 75 declared dead (another run took its jobs while it was
paused), 130 interrupted. Every error a command meets is one line on
stderr (or a short paragraph), never a traceback: `one_line_errors` maps the one error tree
(rpa.errors) to these codes. During a run, lines are written by `Printer`'s thread, so a slow
pipe or terminal never holds up the event loop.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from rpa import errors

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "KINDS_OPTION",
    "Printer",
    "choice_enum",
    "drop_stdout",
    "err",
    "event",
    "exit_code",
    "kind_names",
    "one_line_errors",
    "out",
    "quiet_closed_pipe",
    "reader_may_leave",
    "say",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def choice_enum(name: str, choices: tuple[str, ...] | list[str]) -> Any:
    """A str Enum of `choices`, for Typer: it lists them in --help (`<a|b>`) and refuses any
    other value (exit 2, naming them)."""
    return enum.StrEnum(name, {c: c for c in choices})


#: the failure kinds as a Typer choice: `--kind` of `rpa retry` and `rpa failures` accepts
#: only these (a typo is refused, exit 2, listing them)
Kind: Any = choice_enum("Kind", sorted(errors.KINDS))
#: `--kind`, repeatable
KINDS_OPTION = typer.Option(
    "--kind",
    help="only failures of this kind (repeatable): "
    + ", ".join(sorted(errors.KINDS))
    + " [default: all]",
    metavar="<kind>",
)


class _Out(Console):
    def on_broken_pipe(self) -> None:
        """A reader that leaves (`rpa run ids | head`) does not change how a command ends:
        the rest of the output goes nowhere and the exit code stays the command's (rich
        would exit 1 here, silently)."""
        drop_stdout()


def drop_stdout() -> None:
    """Standard output's reader is gone: what is still written goes nowhere (Python would
    flush it again at exit and complain)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    out.quiet = True


#: standard output: results, tables, summaries
out = _Out(soft_wrap=True, highlight=False, markup=False)
#: standard error: errors, warnings, and hints that must stay out of a JSON stream
err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)


def event(json_lines: bool, text: str, name: str, **fields: object) -> None:
    """What a command tells on stdout as it goes: `text`, or with `json_lines` (--log-format
    json, stdout not a terminal) one JSON object, `"event": name` and `fields`, so that every
    line a pipe reads is JSON (`rpa run ids.txt --log-format json | jq`)."""
    if json_lines:
        print(json.dumps({"event": name, **fields}), flush=True)
    else:
        out.print(text)


#: errors of a path the user gave (a folder for a file, a missing folder, no permission): 2
_ASKED_WRONG = frozenset(
    {errno.EISDIR, errno.ENOTDIR, errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG,
     errno.EROFS, errno.EEXIST}
)  # fmt: skip
_PLAIN = {errno.EISDIR: "is a folder, not a file", errno.ENOENT: "is not there",
          errno.ENOTDIR: "is under something that is not a folder"}  # fmt: skip


def os_error_line(exc: OSError) -> str:
    """An OSError as words: 'out.csv is a folder, not a file', not '[Errno 21] Is a
    directory: 'out.csv''."""
    if exc.filename is None:
        return exc.strerror or str(exc)
    name = os.fsdecode(exc.filename)
    return f"{name} {_PLAIN.get(exc.errno or 0, f'cannot be used: {exc.strerror}')}"


def exit_code(exc: BaseException) -> int:
    """The exit code of an error: 2 for what the user can fix by asking differently (usage,
    config, input, database), else 1."""
    usage = (errors.ConfigError, errors.InputError, errors.DatabaseError)
    return EXIT_USAGE if isinstance(exc, usage) else EXIT_FAILED


def kind_names(kinds: list[Any] | None) -> list[str] | None:
    """The `--kind` values as plain names (None: all kinds)."""
    return [k.value for k in kinds] if kinds else None


def say(label: str, text: str, style: str = "red") -> None:
    """One message on stderr: a coloured label, then the text as it is (no markup)."""
    err.print(Text.assemble((label, style), str(text)))


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Every error a command meets, as one red line and an exit code; never a traceback
    (set RPA_DEBUG=1 to see one for an error that is rpa's bug)."""
    try:
        yield
    except errors.RpaError as exc:
        say("error: ", str(exc))
        raise typer.Exit(exit_code(exc)) from None
    except OSError as exc:
        say("error: ", os_error_line(exc))
        raise typer.Exit(EXIT_USAGE if exc.errno in _ASKED_WRONG else EXIT_FAILED) from None
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if os.environ.get("RPA_DEBUG"):
            raise
        say(
            "internal error: ",
            f"{type(exc).__name__}: {exc} (a bug in rpa: please report it; RPA_DEBUG=1 shows "
            "the traceback)",
        )
        raise typer.Exit(EXIT_FAILED) from None


@contextlib.contextmanager
def reader_may_leave() -> Iterator[None]:
    """A reader of a run's output that leaves (`rpa run ids | head`) does not change how the
    run ended: the rest of the output goes nowhere, the exit code stays the run's (click would
    make a closed pipe exit 1, silently)."""
    try:
        yield
    except BrokenPipeError:
        drop_stdout()


@contextlib.contextmanager
def quiet_closed_pipe() -> Iterator[None]:
    """A reader that leaves (`| head`) is not an error: exit 0, quietly."""
    try:
        yield
    except BrokenPipeError:
        drop_stdout()
        raise typer.Exit(EXIT_OK) from None


class Printer:
    """Lines for the terminal written in a thread of their own, in order: a slow pipe or
    terminal never holds up the event loop."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rpa-print")

    def say(self, text: str, *, stderr: bool = False) -> None:
        self._pool.submit(print, text, file=sys.stderr if stderr else sys.stdout, flush=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

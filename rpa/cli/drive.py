"""A run as the CLI shows it: prepare, say what was prepared, drive the runner, say how it ended.

`start_run` is what `rpa run`, `rpa resume` and `rpa demo` share. The library decides
(`rpa.run.prepare.prepare`, `rpa.run.runner.Runner`); this module only drives the event loop
with the live table (a terminal) or a progress line every few seconds (anything else), and
writes the lines before and after. A run always ends in `typer.Exit` with the run's exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from rpa import errors
from rpa.cli.output import (
    EXIT_INTERRUPTED,
    Printer,
    err,
    event,
    one_line_errors,
    out,
    reader_may_leave,
    say,
)  # fmt: skip
from rpa.config import Resolved, Settings
from rpa.extract.worker import warm
from rpa.hints import command_hint
from rpa.hosts.politeness import politeness_notice
from rpa.idlist import STDIN
from rpa.queue import redact
from rpa.queue.enqueue import EnqueueReport
from rpa.queue.model import new_run_id
from rpa.report import run_timings, write_status_metrics
from rpa.run.prepare import Prepared, prepare
from rpa.run.queue_tars import TarReport
from rpa.stages.records import noted
from rpa.stages.remember import StageRequest
from rpa.stages.spec import StageSpec
from rpa.stages.store import work_left

if TYPE_CHECKING:
    from rpa.run.processes import ProcessGroup
    from rpa.run.runner import Runner, RunSummary
    from rpa.run.snapshot import RunSnapshot

__all__ = ["LOG_INTERVAL", "PROGRESS_INTERVAL", "start_run"]

T = TypeVar("T")

#: seconds between two frames of the live table
PROGRESS_INTERVAL = 0.25
#: seconds between two progress lines when stdout is not a terminal
LOG_INTERVAL = 5.0
#: invalid ID lines shown one by one; past that, only their number
SHOWN_INVALID = 20


def start_run(
    resolved: Resolved, command: str, *, ids: Path | None = None, strict: bool = False,
    reconfigure: bool = False, stages: StageRequest | None = None,
) -> NoReturn:  # fmt: skip
    """Prepare (settings, checks, IDs, the stages: the queue's with what `stages` says),
    then run the queue, then say what happened."""
    shown = [0]

    def skipped(error: errors.InvalidIdError) -> None:
        if shown[0] < SHOWN_INVALID:
            name = "stdin" if ids == STDIN else ids
            say("skipped ", f"{name}:{error.line}: {error.text!r}: {error.reason}", "yellow")
        shown[0] += 1

    if ids == STDIN and sys.stdin.isatty():  # `rpa run -` typed at a prompt: say what it waits for
        say("", "reading IDs from standard input, one a line; end with Ctrl-D", "yellow")
    # (neither knob is the queue's: a resume's stored settings do not change them)
    if resolved.settings.extract_pool == "process" and resolved.settings.processes == 1:
        warm()  # the extraction processes' fork server boots while the queue is prepared
    run_id = new_run_id()
    start, start_time = time.perf_counter(), time.time()
    with one_line_errors(), _queuing_interrupted(resolved.settings, ids):
        prepared = _when_the_database_lets_us(
            resolved.settings.db_wait,
            lambda: prepare(
                resolved, command=command, run_id=run_id, now=time.time(), ids=ids,
                strict=strict, reconfigure=reconfigure, on_invalid=skipped, stages=stages,
            ),
        )  # fmt: skip
    settings = prepared.settings
    as_json = _as_json(settings)
    if prepared.tars is not None:
        _show_tars(prepared.tars, as_json)
    if prepared.report is not None and ids is not None:
        if prepared.report.invalid > SHOWN_INVALID:
            err.print(f"... {prepared.report.invalid} invalid lines in all")
        _show_report(prepared.report, time.perf_counter() - start, as_json)
    for note in prepared.notes:
        say("", note, "yellow")
    if prepared.metadata_file is not None:
        j = prepared.metadata_file
        event(as_json, f"metadata: {j.found:,} of {j.wanted:,} papers found in "
              f"{settings.metadata_file} in {j.seconds:.1f}s", "metadata_file",
              found=j.found, wanted=j.wanted, seconds=round(j.seconds, 3))  # fmt: skip
    if (
        prepared.remaining == 0
        and not work_left(settings.db, prepared.stages)
        and not noted(Path(settings.out))  # outcome records to repair (rpa.stages.records)
    ):
        _nothing_left(settings, prepared)
    host = settings.pdf_host if settings.network else ""  # a tar, a folder: no request
    notice = politeness_notice(prepared.remaining, host, settings.rate_limits, settings.mailto)
    if notice:
        err.print(Text(notice, style="yellow"))
    group = settings.processes > 1
    # the settings as prepared (a resume's are the queue's), and where the user's came from
    summary = _execute(
        dataclasses.replace(resolved, settings=settings), command, run_id, prepared.stages
    )
    _finish(settings, summary, since=start_time if group else None, stages=prepared.stages)


# ---- before the run -------------------------------------------------------------------------


@contextlib.contextmanager
def _queuing_interrupted(settings: Settings, ids: Path | None) -> Iterator[None]:
    """Ctrl-C while the IDs are queued: what was queued stays (each batch is committed), and
    the rest is not in the queue, which `rpa resume` cannot know: say so (it exited 130
    without a word, and a resume did only the first part of the list)."""
    try:
        yield
    except KeyboardInterrupt:
        if ids is None or ids == STDIN:
            raise
        again = command_hint(f"run {ids} --db {redact(settings.db)}")
        say(
            "interrupted ",
            f"while queuing {ids}: the IDs queued so far (if any) stay, the rest are "
            f"not in the queue; `{again}` queues them (those queued are skipped)",
            "yellow",
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _when_the_database_lets_us(wait: float, step: Callable[[], T]) -> T:
    """`step()`, tried again while the queue's server is there but busy or starting (too
    many clients, say), for up to `wait` seconds (--db-wait), saying so. A server where
    nothing answers, or that refuses who we are, fails at once (a typo must not wait)."""
    start = time.monotonic()
    delay = 0.5
    while True:
        try:
            return step()
        except errors.DatabaseUnavailable as exc:
            if not exc.reachable or time.monotonic() - start + delay > wait:
                raise
            say("waiting: ", f"the queue database is busy ({exc.reason}); trying again", "yellow")
        time.sleep(delay)
        delay = min(2 * delay, 5.0)


def _show_report(report: EnqueueReport, seconds: float, as_json: bool) -> None:
    event(
        as_json,
        f"queued {report.new} new of {report.valid} valid IDs ({report.duplicates} already "
        f"queued or repeated, {report.invalid} invalid) in {seconds:.2f}s",
        "queued", new=report.new, valid=report.valid, duplicates=report.duplicates,
        invalid=report.invalid, seconds=round(seconds, 3),
    )  # fmt: skip


def _show_tars(t: TarReport, as_json: bool) -> None:
    event(
        as_json,
        f"indexed {t.tars} tars ({t.indexed} new or changed): {t.members:,} papers, in "
        f"{t.seconds:.2f}s",
        "tars_indexed", tars=t.tars, indexed=t.indexed, members=t.members,
        seconds=round(t.seconds, 3), damaged=[{"tar": str(tar), "why": why}
                                              for tar, why in t.damaged],
    )  # fmt: skip
    for tar, why in t.damaged:
        say("tar ", f"{tar}: {why}", "yellow")
    if t.listed is None:
        event(as_json, f"queued {t.new:,} new of the tars' {t.members:,} papers", "queued",
              new=t.new, members=t.members)  # fmt: skip
        return
    event(as_json, f"queued {t.new:,} new of {t.listed:,} listed IDs ({t.invalid} invalid)",
          "queued", new=t.new, listed=t.listed, invalid=t.invalid, missing=t.missing,
          other_version=t.other_version)  # fmt: skip
    if t.missing:
        sample = ", ".join(t.missing_sample)
        more = (
            f" and {t.missing - len(t.missing_sample)} more"
            if t.missing > len(t.missing_sample)
            else ""
        )
        say("not in the tars: ", f"{t.missing} listed IDs: {sample}{more}", "yellow")
    if t.other_version:
        listed, queued = t.other_version_sample[0]
        more = f"; {t.other_version - 1} more listed IDs like it" if t.other_version > 1 else ""
        say("versions: ", f"the tars hold one version of each paper: {listed} listed, "
            f"{queued} queued{more}", "yellow")  # fmt: skip


def _nothing_left(settings: Settings, prepared: Prepared) -> NoReturn:
    """The queue has no work left: say so, and start no run (an empty run's summary of
    dashes said nothing). Exit 1 when some papers failed for good, as a run would."""
    db = redact(settings.db)
    if _as_json(settings):  # `| jq` sees an event, as it would a run's summary
        with reader_may_leave():
            print(json.dumps({"event": "nothing_left", "db": db, "done": prepared.done,
                              "failed": prepared.failed, "remaining": 0}), flush=True)  # fmt: skip
    hint = _hints(settings)
    hint.print(f"nothing left to do in {db}: {prepared.done} done, {prepared.failed} failed, "
               "0 remaining")  # fmt: skip
    _closing_lines(hint, settings, prepared.failed, next_steps=False)
    raise typer.Exit(1 if prepared.failed else 0)


# ---- the run --------------------------------------------------------------------------------


def _execute(
    resolved: Resolved, command: str, run_id: str, stages: tuple[StageSpec, ...]
) -> RunSummary:
    import gc

    from rpa.notices import Notices

    # Imported here, not above: `rpa status` never loads the runner (and bench/rpa_main.py
    # swaps rpa.run.runner.Runner before a run starts).
    from rpa.run.processes import ProcessGroup, group_size
    from rpa.run.runner import Runner

    settings = resolved.settings
    printer = Printer()
    live_table = settings.progress and out.is_terminal
    # Without a live table, each notice (a wait, a lost lease, a host refusing us) is a line.
    notices = Notices(None if live_table else lambda text: printer.say(f"rpa: {text}", stderr=True))
    metrics = None
    if settings.metrics_file:
        metrics = functools.partial(write_status_metrics, settings.db, settings.metrics_file)
    runner: Runner | ProcessGroup
    if settings.processes > 1:  # N loops on the queue, this process only watches them
        # (its processes run the queue's stages: prepare stored them)
        runner = ProcessGroup(resolved, run_id, say=lambda text: printer.say(text, stderr=True))
    else:
        runner = Runner(
            settings, command=command, run_id=run_id, notices=notices, write_metrics=metrics,
            stages=stages,
        )  # fmt: skip
        runner.feeder.share = group_size()
    # What is alive now (every imported module, the settings) lives as long as the process:
    # frozen, the collector's full passes no longer walk it on the loop thread (54 ms each).
    gc.freeze()
    try:
        with one_line_errors():
            return asyncio.run(_drive(runner, settings, printer))
    finally:
        printer.close()


async def _drive(runner: Runner | ProcessGroup, settings: Settings, printer: Printer) -> RunSummary:
    """Run, with the live table (a terminal) or periodic lines (anything else); a process of
    a group (--processes) reports its snapshots to the group instead."""
    from rpa.run.processes import ENV_REPORT, READ_INTERVAL, report
    from rpa.show.live import format_line, make_run_table, snapshot_dict

    task = asyncio.create_task(runner.run())
    if os.environ.get(ENV_REPORT):
        while not task.done():
            await asyncio.wait({task}, timeout=READ_INTERVAL)
            snap = runner.snapshot()
            if snap is not None and not task.done():
                await asyncio.to_thread(report, snap)
    elif settings.progress and out.is_terminal:
        # The loop only swaps in a fresh snapshot: no lock, no rendering, no terminal write.
        # Live's own thread renders it (cheaply, see rpa.show.fmt) and writes it, so neither
        # the drawing nor a slow terminal can hold up the loop.
        frame = [runner.snapshot()]
        with Live(
            # fitted to the terminal as it is now (a row spare: Live's cursor needs one)
            get_renderable=lambda: _frame(frame[0], make_run_table),
            console=out,
            refresh_per_second=1 / PROGRESS_INTERVAL,
            transient=False,
        ):
            while not task.done():
                await asyncio.wait({task}, timeout=PROGRESS_INTERVAL)
                frame[0] = runner.snapshot() or frame[0]
    elif settings.progress:
        while not task.done():
            await asyncio.wait({task}, timeout=LOG_INTERVAL)
            snap = runner.snapshot()
            if snap is not None and not task.done():  # a line every LOG_INTERVAL, busy or idle
                json_lines = settings.log_format == "json"
                printer.say(json.dumps(snapshot_dict(snap)) if json_lines else format_line(snap))
    return await task


def _frame(snap: RunSnapshot | None, table: Callable[[RunSnapshot, int, int], Any]) -> Any:
    """The live table's frame (a group's first processes are starting: a line)."""
    if snap is None:
        return Text("starting the processes ...", style="dim")
    return table(snap, out.width, out.height - 1)


# ---- after the run --------------------------------------------------------------------------


def _finish(
    settings: Settings, summary: RunSummary, since: float | None = None,
    stages: tuple[StageSpec, ...] = (),
) -> NoReturn:  # fmt: skip
    """Say how the run ended (`since`: a group's start: its timings are those of every
    attempt since, its processes' runs; `stages`: the user's, whose work may be left)."""
    from rpa.run.processes import report
    from rpa.show.summary import make_summary, summary_dict

    report(summary)  # to the group, when this process is one of a group's
    timings = run_timings(settings.db, summary.run_id, since=since)
    with reader_may_leave():
        if _as_json(settings):
            print(json.dumps(summary_dict(summary, timings)), flush=True)
        else:
            out.print(make_summary(summary, timings))
        hint = _hints(settings)
        resume = command_hint(f"resume --db {redact(settings.db)}")
        if summary.status == "interrupted" and _all_done(settings, summary, stages):
            hint.print("interrupted after the queue's last paper: nothing is left to resume")
        elif summary.status == "interrupted":
            hint.print(f"interrupted: `{resume}` continues where this stopped")
        elif summary.status == "crashed":
            hint.print(f"crashed: fix the cause above, then `{resume}`")
        elif summary.status == "denied":
            hint.print(f"denied: a host refused us (see above); wait, then `{resume}`")
        _closing_lines(hint, settings, summary.totals.failed, next_steps=True)
    raise typer.Exit(summary.exit_code)


def _all_done(settings: Settings, summary: RunSummary, stages: tuple[StageSpec, ...]) -> bool:
    """Did the run stop with nothing left (a Ctrl-C whose grace period finished every paper)?"""
    if summary.totals.remaining or summary.held_elsewhere:
        return False
    try:
        return not work_left(settings.db, stages)
    except errors.RpaError:  # the queue cannot be read now: say what resume would do
        return False


def _as_json(settings: Settings) -> bool:
    """Does stdout carry JSON lines (every line: what was queued, progress, the summary)
    rather than text?"""
    return settings.log_format == "json" and not out.is_terminal


def _hints(settings: Settings) -> Console:
    """Where the closing hints go: after JSON lines on stdout, stderr (`| jq` must see only
    JSON)."""
    return err if _as_json(settings) else out


def _closing_lines(hint: Console, settings: Settings, failed: int, *, next_steps: bool) -> None:
    """Where the results are, what to type next, and the retry hint when papers failed."""
    db = redact(settings.db)
    kept = {"always": ", pdf/", "failed": ", pdf/ (failed papers')", "never": ""}[settings.keep_pdf]
    hint.print(f"results: {Path(settings.out).resolve()} (outcome/, text/{kept})")
    if next_steps:
        status, export = command_hint(f"status --db {db}"), command_hint(f"export --db {db}")
        hint.print(f"next: {status}   |   {export} > outcomes.jsonl")
    if failed:
        failures = command_hint(f"failures --db {db}")
        retry, resume = command_hint(f"retry --db {db}"), command_hint(f"resume --db {db}")
        hint.print(f"failed papers: `{failures}` lists them, `{retry}` puts them back, then "
                   f"`{resume}`")  # fmt: skip

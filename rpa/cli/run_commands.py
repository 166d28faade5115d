"""The commands that process papers: `rpa run`, `rpa resume`, `rpa retry`, `rpa demo`.

Each parses its arguments and hands them to the library: `run`, `resume` and `demo` to
`rpa.cli.drive.start_run` (which prepares, runs and reports), `retry` to the queue's
`rpa.queue.retry`. They are registered on the app in `rpa.cli`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from rpa.cli.drive import start_run
from rpa.cli.knobs import with_knobs
from rpa.cli.output import EXIT_OK, KINDS_OPTION, Kind, event, kind_names, one_line_errors, out, say
from rpa.cli.stage_options import Stages, with_stages
from rpa.config import Resolved
from rpa.hints import command_hint
from rpa.layout import Layout
from rpa.queue import catalog, open_store, redact
from rpa.queue import retry as requeue
from rpa.queue.model import QUEUE_SETTINGS
from rpa.run.demo import DEMO_DB, DEMO_OUT
from rpa.stages import store as stage_store
from rpa.stages.remember import stored_stages
from rpa.units import count

__all__ = ["SAMPLES", "demo", "resume", "retry", "run"]

#: the sample papers `rpa demo` serves
SAMPLES = Path(__file__).parent.parent / "samples"

RECONFIGURE = Annotated[
    bool,
    typer.Option(
        "--reconfigure",
        help="allow changing settings stored in the queue (out, pdf_url, pdf_tar, extractor, "
        "rate_limits, max_pdf_mb, follow_redirects, metadata, metadata_url, metadata_file, a "
        "stage's call, kind, version or after); "
        "the change is recorded",
    ),
]


@with_knobs()
@with_stages
def run(
    ids: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(
            help="file of arXiv IDs, one per line (# comments); - reads them from standard "
            "input (a pipe); with --pdf-tar, optional: only these of the tars' papers "
            "[default: all of them]"
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="refuse the whole file if any line is invalid")
    ] = False,
    reconfigure: RECONFIGURE = False,
    *,
    resolved: Resolved,
    stages: Stages | None = None,
) -> None:
    """Queue the IDs in IDS (idempotent) and process until nothing is left.

    Examples:

    \b
    rpa run ids.txt --workers 200 --download-concurrency 32
    rpa run --pdf-tar 'bulk/arXiv_pdf_*.tar'
    grep 2401 all-ids.txt | rpa run -
    """
    start_run(resolved, "run", ids=ids, strict=strict, reconfigure=reconfigure, stages=stages)


#: what a resume runs with instead of Settings' defaults: the queue's stored settings
RESUME_SHOWN = dict.fromkeys(QUEUE_SETTINGS, "the queue's, as first stored")
#: what the demo uses instead of Settings' defaults
DEMO_SHOWN = {"db": DEMO_DB, "out": str(DEMO_OUT), "pdf_url": "the demo's loopback mirror"}


@with_knobs(shown=RESUME_SHOWN)
@with_stages
def resume(
    reconfigure: RECONFIGURE = False, *, resolved: Resolved, stages: Stages | None = None
) -> None:
    """Continue the queue where it stopped, with its stored settings and stages: reclaim dead
    leases, then process what is left.

    Example:

    \b
    rpa resume --db rpa.db
    """
    start_run(resolved, "resume", reconfigure=reconfigure, stages=stages)


@with_knobs({"db"})
def retry(
    kind: Annotated[
        Optional[list[Kind]],  # noqa: UP045
        KINDS_OPTION,
    ] = None,
    stage: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--stage",
            help="re-open this stage of yours for the done papers (all, "
            "or those it failed with --kind); download and extraction stay",
        ),
    ] = None,
    *,
    resolved: Resolved,
) -> None:
    """Put failed papers back in the queue with fresh attempts (processes nothing).

    Their checkpoints stay (a paper that failed extracting is not downloaded again) and their
    history stays in the attempts table. `rpa resume` then runs them.

    Example:

    \b
    rpa retry --kind connection --kind timeout
    """
    db = resolved.settings.db
    kinds = kind_names(kind)
    if stage is not None:
        _retry_stage(db, stage, kinds)
        return
    with one_line_errors():
        store = open_store(db, create=False)
        try:
            suspect = requeue.unreadable_downloads(store, kinds)
            out_folder = catalog.queue_settings(store).get("out")
            counts = requeue.retry_failed(store, kinds, time.time())
        finally:
            store.close()
    layout = Layout(Path(out_folder or "."))
    for job_id in suspect if out_folder else ():
        path = layout.pdf_path(job_id)
        try:
            if _cut(path):  # fetched again, not adopted (a whole broken PDF stays: no request)
                path.unlink()
        except OSError as exc:
            say("warning: ", f"cannot remove {path} ({exc.strerror or exc}): {job_id} may "
                "fail again", "yellow")  # fmt: skip
    if not counts:
        which = f" of kind {', '.join(kinds)}" if kinds else ""
        out.print(f"no failed papers{which} in {redact(db)}: nothing to retry")
        return
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        out.print(f"  {name:<16} {n:>8}")
    total = sum(counts.values())
    out.print(f"{count(total, 'failed paper')} back in the queue; "
              f"`{command_hint(f'resume --db {redact(db)}')}` runs them")  # fmt: skip


def _cut(path: Path) -> bool:
    """Does the PDF at `path` end before its end (no `%%EOF` in its last KiB: a download cut
    with no Content-Length to tell)? False when it is not there."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 1024))
            return b"%%EOF" not in fh.read()
    except FileNotFoundError:
        return False


def _retry_stage(db: str, stage: str, kinds: list[str] | None) -> None:
    with one_line_errors():
        store = open_store(db, create=False)
        try:
            counts = stage_store.reopen(store, stage, kinds or None, time.time())
            kept = stage in stored_stages(store)
        finally:
            store.close()
    if not counts:
        out.print(f"stage {stage} has no papers to re-open in {redact(db)}")
        return
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        out.print(f"  {name:<16} {n:>8}")
    resume = command_hint(f"resume --db {redact(db)}")
    how = "" if kept else f" with the stage named (--stage {stage}=module:function)"
    out.print(f"{sum(counts.values())} papers re-opened for stage {stage}; `{resume}` runs it"
              f"{how}")  # fmt: skip


@with_knobs(shown=DEMO_SHOWN)
@with_stages
def demo(
    fresh: Annotated[
        bool, typer.Option(help="delete the demo's database and output first")
    ] = False,
    *,
    resolved: Resolved,
    stages: Stages | None = None,
) -> None:
    """Offline demo: serve the bundled sample papers from a loopback mirror and run them.

    The samples are not arXiv papers: they are queued as ext:<name> IDs. Unless --db or --out
    is given, the demo uses rpa-demo.db or rpa-demo-data/; it refuses a queue of other papers.

    Example:

    \b
    rpa demo
    """
    from rpa.run.demo import DemoMirror, check_demo_queue, demo_resolved, demo_state, remove_demo

    with one_line_errors():
        resolved = demo_resolved(resolved)
        settings = resolved.settings
        if fresh:
            kept = remove_demo(settings, SAMPLES)
            if kept:
                say("", kept, "yellow")
        check_demo_queue(settings, SAMPLES)
        state = demo_state(settings)
        if state is not None:
            json_lines = settings.log_format == "json" and not out.is_terminal
            event(json_lines, state, "demo_done", message=state)
            raise typer.Exit(EXIT_OK)
        with DemoMirror(SAMPLES, settings) as mirror:
            json_lines = settings.log_format == "json" and not out.is_terminal
            event(json_lines, f"serving {mirror.count} sample papers at {mirror.template}",
                  "demo_mirror", papers=mirror.count, url=mirror.template)  # fmt: skip
            start_run(
                mirror.resolved(resolved), "demo", ids=mirror.ids_file, strict=True,
                stages=stages,
            )  # fmt: skip

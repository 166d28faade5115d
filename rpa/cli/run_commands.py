"""The commands that process papers: `rpa run`, `rpa resume`, `rpa retry`, `rpa demo`.

Each parses its arguments and hands them to the library: `run`, `resume` and `demo` to
`rpa.cli.drive.start_run` (which prepares, runs and reports), `retry` to the queue's
`retry_failed`. They are registered on the app in `rpa.cli`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from rpa import errors
from rpa.cli.drive import start_run
from rpa.cli.knobs import with_knobs
from rpa.cli.output import EXIT_OK, EXIT_USAGE, one_line_errors, out, say
from rpa.cli.stage_options import with_stages
from rpa.config import Resolved
from rpa.queue import jobs, open_store, redact
from rpa.stages import store as stage_store

__all__ = ["SAMPLES", "demo", "resume", "retry", "run"]

#: the sample papers `rpa demo` serves
SAMPLES = Path(__file__).parent.parent / "samples"

RECONFIGURE = Annotated[
    bool,
    typer.Option(
        "--reconfigure",
        help="allow changing settings stored in the queue (out, pdf_url, pdf_tar, extractor, "
        "rate_limits, max_pdf_mb, follow_redirects); the change is recorded",
    ),
]


@with_knobs()
@with_stages
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
    start_run(resolved, "run", ids=ids, strict=strict, reconfigure=reconfigure)


@with_knobs()
@with_stages
def resume(reconfigure: RECONFIGURE = False, *, resolved: Resolved) -> None:
    """Continue the queue where it stopped, with its stored settings: reclaim dead leases,
    then process what is left.

    Example: rpa resume --db rpa.db
    """
    start_run(resolved, "resume", reconfigure=reconfigure)


@with_knobs({"db"})
def retry(
    kind: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--kind", help="only failures of this kind (repeatable) [default: all]"),
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
    Example: rpa retry --kind connection --kind timeout
    """
    db = resolved.settings.db
    if stage is not None:
        _retry_stage(db, stage, kind)
        return
    unknown = sorted(set(kind or ()) - errors.KINDS)
    if unknown:
        say("error: ", f"no failure kind {', '.join(map(repr, unknown))}; the kinds are "
            f"{', '.join(sorted(errors.KINDS))}", "red")  # fmt: skip
        raise typer.Exit(EXIT_USAGE)
    with one_line_errors():
        store = open_store(db, create=False)
        try:
            counts = jobs.retry_failed(store, kind or None, time.time())
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


def _retry_stage(db: str, stage: str, kinds: list[str] | None) -> None:
    with one_line_errors():
        store = open_store(db, create=False)
        try:
            counts = stage_store.reopen(store, stage, kinds or None, time.time())
        finally:
            store.close()
    if not counts:
        out.print(f"stage {stage} has no papers to re-open in {redact(db)}")
        return
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        out.print(f"  {name:<16} {n:>8}")
    out.print(f"{sum(counts.values())} papers re-opened for stage {stage}; "
              f"`rpa resume --db {redact(db)}` runs it (with the stage named)")  # fmt: skip


@with_knobs()
@with_stages
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

    with one_line_errors():
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
            start_run(mirror.resolved(resolved), "demo", ids=mirror.ids_file, strict=True)

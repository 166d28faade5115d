"""Everything checked and decided before any work: the queue's settings, the set-up, the IDs.

`prepare` runs before the event loop starts. In order: the ID file must exist (a missing one
creates no database); the queue's stored settings are applied (a value that contradicts one is
refused, naming both, unless `reconfigure`); the set-up is checked (the extractor, the output
folder); only then are IDs queued. An ID list with no valid ID is an input error unless the
queue holds work already. A refused command leaves nothing it made behind: a new queue file,
a new output folder (`_Made`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpa.config import Resolved, Settings
from rpa.errors import ConfigError, InputError, InvalidIdError
from rpa.hints import command_hint
from rpa.idlist import check_id_source
from rpa.layout import check_out_folder, check_owner, mark_owner
from rpa.queue import catalog, is_postgres_url, open_store, queue_exists, reads, redact
from rpa.queue.enqueue import EnqueueReport, enqueue_file
from rpa.queue.model import QUEUE_SETTINGS
from rpa.queue.store import QueueStore
from rpa.rates import parse_rate_limits
from rpa.run.join_metadata import MetadataFileReport, join_metadata_file
from rpa.run.metrics_file import check_metrics_file
from rpa.run.queue_tars import TarReport, queue_from_tars
from rpa.stages import remember
from rpa.stages.execute import load_call
from rpa.stages.spec import StageSpec

__all__ = ["Prepared", "apply_queue_settings", "check_setup", "prepare"]


@dataclass(frozen=True, slots=True)
class Prepared:
    settings: Settings  # what this invocation runs with (the queue's settings applied)
    report: EnqueueReport | None  # the ID file's, for `run`
    notes: list[str]  # what was decided (a reconfigured setting, say)
    remaining: int  # jobs left in the queue
    tars: TarReport | None = None  # what --pdf-tar indexed and queued
    metadata_file: MetadataFileReport | None = None  # what --metadata-file joined
    done: int = 0  # jobs done, in the queue as a whole
    failed: int = 0  # jobs failed for good
    stages: tuple[StageSpec, ...] = ()  # the user's stages this run runs (rpa.stages.remember)


def _stored_form(settings: Settings, key: str) -> Any:
    value = getattr(settings, key)
    if key == "out":
        return str(Path(value).expanduser().resolve())
    return value


def _same(key: str, a: Any, b: Any) -> bool:
    if key == "out":
        return bool(Path(str(a)).resolve() == Path(str(b)).resolve())
    if key == "rate_limits":
        try:
            return parse_rate_limits(str(a)) == parse_rate_limits(str(b))
        except ConfigError:
            return False
    if key == "max_pdf_mb":
        return float(a) == float(b)
    return bool(a == b)


def _anchor_out(typed: str, db: str) -> str:
    """The folder a relative `out` stored by an older rpa (a queue migrated from schema 4 kept
    it as typed) names: beside the SQLite file when that folder holds it (the queue and its
    output were made in one folder, the usual case), else from the current folder. Blocking
    (a stat or two: `prepare` runs before the loop)."""
    here = Path(typed).expanduser().resolve()
    if is_postgres_url(db):
        return str(here)
    beside = (Path(db).expanduser().resolve().parent / typed).resolve()
    return str(here if here.is_dir() and not beside.is_dir() else beside)


def apply_queue_settings(
    resolved: Resolved, stored: dict[str, Any], *, reconfigure: bool
) -> tuple[Settings, dict[str, Any], list[str]]:
    """The settings to run with: the queue's stored ones where the user gave none; the user's
    where the queue has none yet. Returns (settings, values to store, notes). A value the user
    gave (flag, env var or config file) that contradicts a stored one is a ConfigError naming
    both, unless `reconfigure`."""
    s = resolved.settings
    keep: dict[str, Any] = {}
    to_store: dict[str, Any] = {}
    notes: list[str] = []
    conflicts: list[str] = []
    typed = stored.get("out")
    if isinstance(typed, str) and not Path(typed).is_absolute():
        # a resume from another folder must not write to another `out`: anchor it, for good
        stored = {**stored, "out": _anchor_out(typed, str(s.db))}
        to_store["out"] = stored["out"]
        notes.append(f"out: {typed!r} was stored relative by an older rpa: {stored['out']!r}")
    for key in QUEUE_SETTINGS:
        mine = _stored_form(s, key)
        value = stored.get(key, mine)
        if key not in stored:
            to_store[key] = mine
        elif key in resolved.origins and not _same(key, mine, value):
            if not reconfigure:
                conflicts.append(
                    f"{key}: the queue has {value!r}, {resolved.origins[key]} says {mine!r}"
                )
                continue
            to_store[key] = value = mine
            notes.append(f"{key}: {stored[key]!r} -> {mine!r} (--reconfigure; recorded)")
        keep[key] = Path(value) if key == "out" else value
    if conflicts:
        raise ConfigError(
            "this queue was set up with other settings:\n  "
            + "\n  ".join(conflicts)
            + "\nThey decide where its work comes from and goes to. Leave them out to use the "
            "queue's, or pass --reconfigure to change them (the change is recorded)."
        )
    try:
        return dataclasses.replace(s, **keep), to_store, notes
    except ConfigError as exc:
        raise ConfigError(f"the queue's stored settings are not usable: {exc}") from None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_setup(settings: Settings) -> None:
    """The configuration errors a run would meet later, found now, before any ID is queued."""
    if settings.extractor == "pdfium" and not _importable("pypdfium2"):
        raise ConfigError(
            "--extractor pdfium needs the pdfium extra: pip install 'rpa[pdfium]' "
            "(./run.sh installs it)"
        )
    check_out_folder(Path(settings.out))
    if settings.metrics_file:
        check_metrics_file(settings.metrics_file, settings.db)


def prepare(
    resolved: Resolved,
    *,
    command: str,
    run_id: str,
    now: float,
    ids: Path | None = None,
    strict: bool = False,
    reconfigure: bool = False,
    on_invalid: Callable[[InvalidIdError], None] | None = None,
    stages: remember.StageRequest | None = None,
) -> Prepared:
    """Check and decide everything before a run (see the module doc). Blocking."""
    db = resolved.settings.db
    if ids is not None:
        check_id_source(ids)  # not there, a folder, a tar: said before any database is made
    exists = queue_exists(db)
    if not exists and "db" in resolved.origins and not is_postgres_url(db):
        folder = Path(db).expanduser().parent  # (the default, ./rpa.db, is always made)
        if not folder.is_dir():
            raise ConfigError(
                f"--db {db}: the folder {folder} is not there (a typo?); nothing was made. "
                f"To start a queue there, make the folder first: mkdir -p {folder}"
            )
    if command == "resume" and not exists:
        where = (
            f"no rpa queue in {redact(db)}" if is_postgres_url(db) else f"no queue database at {db}"
        )
        raise ConfigError(f"{where}; start one with `{command_hint('run IDS')}`")
    store: QueueStore | None = open_store(db, create=False) if exists else None
    made = _Made()
    try:
        stored = catalog.queue_settings(store) if store is not None else {}
        settings, to_store, notes = apply_queue_settings(resolved, stored, reconfigure=reconfigure)
        if command == "run" and ids is None and not settings.pdf_tar:
            hint = command_hint("run IDS")
            raise InputError(f"give a file of IDs ({hint}), or --pdf-tar to run the tars' papers")
        made.out = None if Path(settings.out).exists() else Path(settings.out)
        check_setup(settings)
        stored_stages = remember.stored_stages(store) if store is not None else {}
        stage_plan = remember.plan(
            stored_stages, stages or remember.StageRequest(), reconfigure=reconfigure
        )
        for spec in stage_plan.stages:  # a wrong call is refused before anything is made
            load_call(spec)
        notes += stage_plan.notes
        if store is None:
            store = open_store(db, create=True)
            made.db = None if is_postgres_url(db) else Path(db)
        owner = catalog.queue_id(store, now)
        where = redact(db) if is_postgres_url(db) else str(Path(db).expanduser().resolve())
        took = check_owner(Path(settings.out), owner, where)  # before anything is queued
        notes += [took] if took else []
        if to_store:
            catalog.store_queue_settings(store, to_store, run_id, now)
        remember.keep(store, stage_plan, run_id, now)
        report = tars = None
        if settings.pdf_tar and command == "run":
            tars = queue_from_tars(store, settings.pdf_tar, ids, on_invalid=on_invalid)
        elif ids is not None:
            report = enqueue_file(store, ids, strict=strict, on_invalid=on_invalid)
        joined = None
        if settings.metadata_mode == "file":
            joined = join_metadata_file(store, Path(settings.metadata_file).expanduser())
        totals = reads.totals(store, now)
        remaining = totals.remaining
        if report is not None and report.valid == 0 and remaining == 0:
            raise InputError(
                f"{ids} holds no valid ID ({report.lines} ID lines besides blank lines and "
                f"comments, {report.invalid} invalid) and the queue has no work left: nothing to do"
            )
        present = tars.members if tars and tars.listed is None else (
            (tars.listed or 0) - tars.missing if tars else 0)  # fmt: skip
        if tars is not None and present == 0 and remaining == 0:
            what = f"none of the {tars.listed} listed IDs is" if ids else "no paper is"
            damage = "".join(f"; {tar}: {why}" for tar, why in tars.damaged)
            raise InputError(f"{what} in the tars ({tars.members} papers{damage}): nothing to do")
        mark_owner(Path(settings.out), owner, where)
        return Prepared(
            settings, report, notes, remaining, tars, joined, totals.done, totals.failed,
            stage_plan.stages,
        )  # fmt: skip
    except (InputError, ConfigError):
        made.undo(store)  # (closes it)
        store = None
        raise
    finally:
        if store is not None:
            store.close()


@dataclass
class _Made:
    """What a preparation made, removed again when the command is refused: a refused command
    leaves no new queue file nor output folder behind (a new PostgreSQL queue's tables stay:
    they are in a database the user made)."""

    out: Path | None = None
    db: Path | None = None

    def undo(self, store: QueueStore | None) -> None:
        """Remove them (`store`, the queue, is closed here): the queue's file only while it
        holds no job and no run (another rpa may have started on it meanwhile), the output
        folder only while empty."""
        empty = False
        if store is not None:
            with contextlib.suppress(Exception):  # the refusal is what the user must see
                row = store.sql.one(
                    "SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM runs) AS n"
                )
                empty = row is not None and int(row["n"]) == 0
            with contextlib.suppress(Exception):
                store.close()
        if self.db is not None and empty:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        if self.out is not None:
            with contextlib.suppress(OSError):
                self.out.rmdir()

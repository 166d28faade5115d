"""The whole work on one paper's bytes, in the extraction process that has them.

The main process conducts: it claims a job, brings the PDF's bytes to a file (a download) or
finds where they are (a local file, a tar member), and sends a small `PaperTask`. Everything
that touches those bytes, or the text, or the record, happens here:

    locate   check the PDF (size cap, `%PDF-`, sha256): a download's private file (then
             fsync it and give it its final name, never replacing a PDF there:
             rpa.sources.publish), a local file (only where the template points), a tar
             member; or verify a PDF an earlier run checkpointed (size and sha256)
    extract  rpa.extract.pdf.extract_pdf: the text, written atomically, and the analysis
    record   the key-outcome record (rpa.extract.record), written whole under a private
             name, and the queue's `results` row of it (its JSON serialised here)

The text and the record get no fsync of their own (it would idle this core): the batch that
commits the paper syncs --out's file system first (rpa.run.completer). The PDF does, before
its final name points at it: a final name only ever holds a whole PDF.

and a small summary goes back: sizes, hash, pages, the timings, the row. The main process never
reads, hashes or serialises a PDF, a text or a record; it commits the row (fenced, in batches:
rpa.run.completer) and then renames the record into place.

A failure comes back as `{"ok": False, "kind", "message", "stage"}`: `stage` is the step that
failed, as the job processor names stages ("download" for a PDF that fails its check,
"extract", "outcome"). Like `extract_pdf`, this never raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from rpa.classify import classify
from rpa.errors import JobError
from rpa.extract.protocol import PDF_MISSING, Extractor, PaperTask
from rpa.extract.record import outcome_record, write_record
from rpa.queue.jobs import result_row
from rpa.queue.model import Job
from rpa.sources.check import check_pdf
from rpa.sources.local import check_local
from rpa.sources.publish import private_name, publish_whole
from rpa.sources.stored import verify_pdf
from rpa.sources.tar import read_checked

__all__ = ["PaperTask", "work_paper"]


class _Failed(Exception):
    def __init__(self, stage: str, kind: str, message: str, folder: str | None = None) -> None:
        super().__init__(message)
        self.stage, self.kind, self.message, self.folder = stage, kind, message, folder

    @classmethod
    def of(cls, stage: str, exc: Exception, *, reading: bool = False) -> _Failed:
        """`exc` classified (rpa.classify) as a failure of `stage`."""
        error = classify(exc, f"the {stage} stage", reading=reading)
        return cls(stage, error.kind, error.message, getattr(error, "folder", None))


def _gone(exc: OSError) -> _Failed:
    """A download removed under rpa before it was published (--out's files or folders
    deleted): no fault of the paper; the job processor downloads it again, uncounted
    (rpa.run.job)."""
    return _Failed("extract", PDF_MISSING, f"the download is gone: {exc}")


def _locate(task: PaperTask) -> tuple[str, int, str, bytes | None]:
    """(path, size, sha256, its bytes if the check read them all: a tar member's) of the
    task's PDF once it has passed its check."""
    try:
        if task.check == "download":
            private, final = Path(task.pdf), Path(task.publish_to or task.pdf)
            try:
                size, sha = check_pdf(lambda: private.open("rb"), None, task.max_bytes)
            except FileNotFoundError as exc:
                raise _gone(exc) from exc
            try:
                kept = publish_whole(private, final, first=task.first, vouch=task.vouch)
            except FileNotFoundError as exc:  # removed while the check read it: it passed
                raise _gone(exc) from exc
            except OSError as exc:  # a write: --out full, read-only...
                raise _Failed.of("download", exc) from exc
            return (str(final), size, sha, None) if kept is None else (str(final), *kept, None)
        if task.check == "local":
            return (task.pdf, *check_local(Path(task.pdf), Path(task.folder or "/"),
                                           task.max_bytes), None)  # fmt: skip
        if task.check == "tar":
            return (task.pdf, *read_checked(task.pdf, task.max_bytes))
        job = task.job
        if not verify_pdf(task.pdf, job.pdf_bytes, job.pdf_sha256):
            raise _Failed("extract", PDF_MISSING, f"the stored PDF is gone or changed: {task.pdf}")
        return task.pdf, int(job.pdf_bytes or 0), str(job.pdf_sha256 or ""), None
    except _Failed:
        raise
    except JobError as exc:
        raise _Failed("download", exc.kind, exc.message) from exc
    except OSError as exc:
        raise _Failed.of("download", exc, reading=True) from exc


def _record(task: PaperTask, job: Job) -> tuple[str, dict[str, Any], str | None]:
    """Write the record under its private name (whole, fsynced); (that name, its row, the
    other paper its PDF's arXiv stamp names: checks.stamp_mismatch)."""
    record = outcome_record(job, task.run_id, task.metadata)
    final = Path(task.outcome_path)
    if final.is_dir():  # found now, before the commit: the rename after it would fail
        raise IsADirectoryError(21, "Is a directory", str(final))
    private = private_name(final, task.run_id)
    write_record(private, record, run_id=task.run_id, sync=False)
    return str(private), result_row(record), (record.get("checks") or {}).get("stamp_mismatch")


def _kept(task: PaperTask, pdf_path: str, ok: bool) -> bool:
    """Does the paper's PDF stay (--keep-pdf)? Only a PDF rpa downloaded (at its final name
    under --out) is ever removed, never a local file or a tar of the user's."""
    if task.keep_pdf == "always" or pdf_path != task.publish_to:
        return True
    return task.keep_pdf == "failed" and not ok


def _let_go(task: PaperTask, pdf_path: str, ok: bool) -> None:
    if not _kept(task, pdf_path, ok):
        with contextlib.suppress(OSError):
            os.unlink(pdf_path)


def work_paper(task: PaperTask, extract_pdf: Extractor) -> dict[str, object]:
    """Check, extract (with `extract_pdf`: rpa.extract.worker.load_extractor's) and record
    one paper (see the module's doc); never raises."""
    t0 = time.perf_counter()
    try:
        pdf_path, size, sha, data = _locate(task)
        t1 = time.perf_counter()
        # the text and the record are not fsynced one by one: the batch that commits this
        # paper syncs the file system first (rpa.run.completer)
        result = extract_pdf(pdf_path, task.text_path, task.extractor, task.run_id, sync=False,
                             data=data)  # fmt: skip
        t2 = time.perf_counter()
        if not result.get("ok"):
            kind = str(result.get("kind"))
            if kind != PDF_MISSING:
                _let_go(task, pdf_path, ok=False)
            return {**result, "stage": "extract", "seconds": t2 - t1,
                    "parsed": kind != PDF_MISSING}  # fmt: skip
        result["text_path"] = task.text_path
        kept = _kept(task, pdf_path, ok=True)
        job = dataclasses.replace(
            task.job, stage="extracted", pdf_path=pdf_path if kept else None, pdf_bytes=size,
            pdf_sha256=sha, extract=result, extract_seconds=t2 - t1,
        )  # fmt: skip
        try:
            private, row, stamped = _record(task, job)
        except OSError as exc:
            raise _Failed.of("outcome", exc) from exc
        _let_go(task, pdf_path, ok=True)  # (the record says it was not kept)
        t3 = time.perf_counter()
    except _Failed as failed:
        return {"ok": False, "kind": failed.kind, "message": failed.message,
                "stage": failed.stage, "folder": failed.folder,
                "seconds": time.perf_counter() - t0}  # fmt: skip
    except MemoryError as exc:
        return {"ok": False, "kind": "memory_cap", "message": f"MemoryError: {exc}",
                "stage": "extract", "seconds": time.perf_counter() - t0}  # fmt: skip
    except Exception as exc:  # a bug of ours: the paper's attempt ends, explained
        failure = classify(exc, "the extract stage")
        return {"ok": False, "kind": failure.kind, "message": failure.message,
                "stage": "extract", "seconds": time.perf_counter() - t0}  # fmt: skip
    return {
        "ok": True,
        "pdf_path": pdf_path if kept else None,
        "pdf_bytes": size,
        "pdf_sha256": sha,
        "pages": result.get("pages", 0),
        "chars": result.get("chars", 0),
        "warnings": result.get("warnings", 0),
        "record_private": private,
        "row": row,
        "stamp_mismatch": stamped,
        "check_seconds": t1 - t0,
        "seconds": t2 - t1,
        "record_seconds": t3 - t2,
    }

"""The worker-side PDF work: one sync, top-level, picklable function that never raises.

`extract_pdf` runs inside an extraction process (or a thread in --extract-pool=thread). It opens
the PDF, extracts the text of every page, writes it atomically with `[PAGE n]` markers, runs the
key-outcome analysis and returns plain data (a JSON-able dict):

    {"ok": True, "pages": n, "chars": n, "page_errors": [...], "outcome": {...}, "warnings": n}
    {"ok": False, "kind": "<JobError kind>", "message": "Type: msg"}

Real-world files make pypdf raise far outside its own error hierarchy (TypeError,
AttributeError, AssertionError, RecursionError, DeprecationError, DependencyError ...), so
every exception becomes a failure dict; a page that fails is recorded and skipped.

Kinds: invalid_pdf (cannot be parsed), encrypted (the empty password does not open it, or
AES without `cryptography`), zero_pages, memory_cap (MemoryError under RLIMIT_AS), disk_full
(ENOSPC writing the text), write_error or io_error (writing the text), pdf_missing (no file at
the path: not a JobError kind, the job processor downloads it again), io_error (another error
reading it) and config
(unknown extractor, pypdfium2 missing; not a JobError kind: error_for_kind maps it to
PermanentError, and ExtractPool refuses such a setup before any paper).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, WrongPasswordError

from rpa.classify import classify
from rpa.errors import JobError
from rpa.extract import EXTRACTORS
from rpa.extract.outcome import analyze
from rpa.extract.outcome.text import clean_characters
from rpa.extract.protocol import PDF_MISSING
from rpa.files import atomic_file
from rpa.sources.stored import open_pdf

__all__ = ["EXTRACTORS", "MAX_PAGE_ERRORS", "extract_pdf"]

#: page errors kept in a result (the rest are counted): keeps the result small for the pipe
MAX_PAGE_ERRORS = 50
MAX_MESSAGE_CHARS = 300


class _Failure(Exception):
    """Internal: ends one extraction with a given JobError kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:MAX_MESSAGE_CHARS]


class _NoiseCounter(logging.Handler):
    """Counts (and swallows) pypdf's log records and Python warnings, per thread.

    pypdf logs a warning for every odd font or xref entry: 200 papers would flood stderr, and
    under `filterwarnings = error` a Python warning would even abort the parse. The state is
    process-wide (the `warnings` module has no per-thread filters before 3.14), so it is
    installed by the first active extraction and removed by the last: in thread mode a
    warning raised by other code meanwhile is swallowed too, and a hung extraction thread
    keeps it installed.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}
        self._saved: contextlib.ExitStack | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self._count()

    def _show(self, *args: Any, **kwargs: Any) -> None:
        self._count()

    def _count(self) -> None:
        tid = threading.get_ident()
        with self._lock:
            if tid in self._counts:
                self._counts[tid] += 1

    @contextlib.contextmanager
    def counting(self) -> Iterator[list[int]]:
        """Count pypdf noise of this thread; yields a one-item list filled in on exit."""
        tid = threading.get_ident()
        logger = logging.getLogger("pypdf")
        with self._lock:
            if self._saved is None:
                stack = contextlib.ExitStack()
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("always")
                warnings.showwarning = self._show
                logger.addHandler(self)
                # Not to the root logger (stderr, pytest's capture): counted here instead.
                saved_propagate, saved_level = logger.propagate, logger.level
                logger.propagate = False
                logger.setLevel(logging.WARNING)

                def restore() -> None:
                    logger.removeHandler(self)
                    logger.propagate, logger.level = saved_propagate, saved_level

                stack.callback(restore)
                self._saved = stack
            self._counts[tid] = 0
        total = [0]
        try:
            yield total
        finally:
            with self._lock:
                total[0] = self._counts.pop(tid, 0)
                if not self._counts and self._saved is not None:
                    self._saved.close()
                    self._saved = None


_NOISE = _NoiseCounter()
_PDFIUM_LOCK = threading.Lock()


def _pypdf_pages(stream: Any) -> tuple[list[str], list[str], dict[str, str]]:
    reader = PdfReader(stream)
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except Exception as exc:  # e.g. DependencyError: AES needs `cryptography`
            raise _Failure("encrypted", _describe(exc)) from exc
        if opened == PasswordType.NOT_DECRYPTED:
            raise _Failure("encrypted", "encrypted, and the empty password does not open it")
    count = len(reader.pages)
    if count == 0:
        raise _Failure("zero_pages", "the PDF has no pages")
    pages: list[str] = []
    errors: list[str] = []
    for n in range(count):
        try:
            pages.append(reader.pages[n].extract_text() or "")
        except MemoryError:
            raise
        except Exception as exc:  # any page failure: record it, the paper goes on
            errors.append(f"p{n + 1}: {_describe(exc)}")
            pages.append("")
    if reader.is_encrypted and len(errors) == count:
        # Opened with the empty password, yet no page decrypts (AES without `cryptography`).
        raise _Failure("encrypted", errors[0].split(": ", 1)[1])
    metadata: dict[str, str] = {}
    with contextlib.suppress(Exception):  # a broken /Info dictionary costs only the metadata
        metadata = {str(k): str(v) for k, v in (reader.metadata or {}).items()}
    return pages, errors, metadata


def _pdfium_pages(path: str | bytes) -> tuple[list[str], list[str], dict[str, str]]:
    try:
        import pypdfium2 as pdfium
    except ImportError as exc:
        raise _Failure("config", "the pdfium extractor needs the rpa[pdfium] extra") from exc
    # PDFium is not thread-safe: one document at a time per process (a no-op in process mode).
    with _PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(path)
        except pdfium.PdfiumError as exc:
            kind = "encrypted" if "password" in str(exc).lower() else "invalid_pdf"
            raise _Failure(kind, _describe(exc)) from exc
        return _pdfium_read(pdf)


def _pdfium_read(pdf: Any) -> tuple[list[str], list[str], dict[str, str]]:
    try:
        count = len(pdf)
        if count == 0:
            raise _Failure("zero_pages", "the PDF has no pages")
        pages: list[str] = []
        errors: list[str] = []
        for n in range(count):
            try:
                page = pdf[n]
                textpage = page.get_textpage()
                text = textpage.get_text_range().replace("\r\n", "\n")
                pages.append(_hyphens(text))
                textpage.close()
                page.close()
            except MemoryError:
                raise
            except Exception as exc:
                errors.append(f"p{n + 1}: {_describe(exc)}")
                pages.append("")
        metadata: dict[str, str] = {}
        with contextlib.suppress(Exception):
            metadata = {f"/{k}": str(v) for k, v in pdf.get_metadata_dict().items()}
        return pages, errors, metadata
    finally:
        pdf.close()


#: PDFium's mark where it removed a line break after a hyphen, between two lower-case letters
_SOFT_JOIN = re.compile("(?<=[a-zß-ÿ])\ufffe(?=[a-zß-ÿ])")


def _hyphens(text: str) -> str:
    """Resolve PDFium's U+FFFE marks (a noncharacter it puts where it joined the two halves of
    a word hyphenated at a line end): between lower-case letters the word was split by the
    typesetter ("per-sonal" -> "personal"); anywhere else the hyphen was real ("Self-BLEU")."""
    if "\ufffe" not in text:
        return text
    return _SOFT_JOIN.sub("", text).replace("\ufffe", "-")


def _write_text(text_path: str, pages: list[str], run_id: str, sync: bool) -> None:
    """Write the text with [PAGE n] markers, a page at a time, atomically (rpa.files.atomic_file:
    the temporary name carries the run's id; fsync, rename), so a reader (or a crash) never
    sees half a file. Created with mode 0600 (before the umask), as mkstemp made it before.
    `sync` False: no fsync (the caller makes the file system durable before it trusts it)."""
    with atomic_file(Path(text_path), run_id=run_id, create_mode=0o600, sync=sync) as out:
        for n, text in enumerate(pages, start=1):
            out.write(f"[PAGE {n}]\n{text}\n".encode())


def _clean(text: str) -> str:
    """A page's text as it is written: UTF-8-safe, no control characters (CR -> LF), ligatures
    and presentation forms as plain letters ("ﬁ" -> "fi": rpa.extract.outcome.text)."""
    # pypdf can emit lone surrogates (broken ToUnicode maps): not encodable as UTF-8.
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\r", "\n")
    return clean_characters(text)


def _extract(
    pdf_path: str, text_path: str, extractor: str, run_id: str, sync: bool, data: bytes | None
) -> dict[str, object]:
    if extractor not in EXTRACTORS:
        raise _Failure("config", f"unknown extractor {extractor!r}: one of {EXTRACTORS}")
    stream: Any
    try:
        # a bulk tar's member is read with one seek (unless its check read it: `data`); a
        # file is read lazily by the parse
        stream = io.BytesIO(data) if data is not None else open_pdf(pdf_path)
    except JobError as exc:
        raise _Failure(exc.kind, exc.message) from exc
    except FileNotFoundError as exc:  # deleted since its download: fetched again
        raise _Failure(PDF_MISSING, f"no PDF to parse: {_describe(exc)}") from exc
    except OSError as exc:  # EACCES, EIO...: the file may be readable later
        raise _Failure("io_error", f"cannot read the PDF: {_describe(exc)}") from exc
    with stream:
        try:
            if extractor == "pdfium":
                source = stream.getvalue() if isinstance(stream, io.BytesIO) else pdf_path
                pages, errors, metadata = _pdfium_pages(source)
            else:
                pages, errors, metadata = _pypdf_pages(stream)
        except (_Failure, MemoryError):
            raise
        except (FileNotDecryptedError, WrongPasswordError) as exc:
            raise _Failure("encrypted", _describe(exc)) from exc
        except DependencyError as exc:
            # pypdf tries the empty password while opening: AES needs `cryptography`.
            aes = "AES" in str(exc) or "cryptography" in str(exc)
            raise _Failure("encrypted" if aes else "invalid_pdf", _describe(exc)) from exc
        except Exception as exc:
            raise _Failure("invalid_pdf", _describe(exc)) from exc
    pages = [_clean(p) for p in pages]
    try:
        _write_text(text_path, pages, run_id, sync)
    except OSError as exc:
        failure = classify(exc, "writing the text")
        raise _Failure(failure.kind, failure.message[:MAX_MESSAGE_CHARS]) from exc
    if len(errors) > MAX_PAGE_ERRORS:
        errors = [*errors[:MAX_PAGE_ERRORS], f"... and {len(errors) - MAX_PAGE_ERRORS} more"]
    try:
        outcome = analyze(pages, metadata)
    except MemoryError:
        raise
    except Exception as exc:  # a heuristic's bug must not cost the paper its extracted text
        outcome = {"analysis_error": _describe(exc)}
    return {
        "ok": True,
        "pages": len(pages),
        "chars": sum(len(p) for p in pages),
        "page_errors": errors,
        "outcome": outcome,
    }


def extract_pdf(
    pdf_path: str, text_path: str, extractor: str = "pypdf", run_id: str = "", *,
    sync: bool = True, data: bytes | None = None,
) -> dict[str, object]:  # fmt: skip
    """Extract one PDF's text to `text_path` and analyse it; never raises (see module doc).
    `run_id` goes into the temporary file's name (rpa.files.temp_owner); `sync` False: the
    text is not fsynced (a paper's whole work: rpa.run.completer syncs the file system);
    `data`: the PDF's bytes, when the caller has read them already (a tar member it checked,
    rpa.extract.paper), parsed instead of `pdf_path`."""
    result: dict[str, object]
    with _NOISE.counting() as noise:
        try:
            result = _extract(pdf_path, text_path, extractor, run_id, sync, data)
        except _Failure as failure:
            result = {"ok": False, "kind": failure.kind, "message": failure.message}
        except MemoryError as exc:  # RLIMIT_AS reached: --extract-max-mb
            result = {"ok": False, "kind": "memory_cap", "message": _describe(exc)}
        except Exception as exc:  # anything unforeseen
            result = {"ok": False, "kind": "invalid_pdf", "message": _describe(exc)}
    if result["ok"]:
        result["warnings"] = noise[0]
    return result

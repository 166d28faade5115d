"""The one error tree of rpa.

    RpaError                      root: the CLI catches this, prints one line, exits 2 (usage) or 1
    ├── ConfigError               a bad knob value, config file or flag combination
    ├── InputError                an ID list that cannot be used (--strict, unreadable file)
    │   └── InvalidIdError        one line that is not an arXiv ID
    ├── DatabaseError             the queue database cannot be opened or is of an unknown schema
    ├── RunCrashed                the run itself cannot go on (its database broke under it)
    ├── DeclaredDead              another run found this one dead (no heartbeat) and took its jobs
    └── JobError                  a failure of one paper; `kind` is stored in the queue
        ├── TransientError        worth retrying later (the job goes back to the queue)
        │   ├── DownloadTimeout       connect/read timeout
        │   ├── ConnectionFailed      refused, reset, DNS
        │   ├── HttpTransient         429, 408, 500, 502, 503, 504 (may carry Retry-After)
        │   ├── TruncatedBody         fewer bytes than Content-Length, or a body cut mid-stream
        │   ├── DiskFull              ENOSPC while writing under --out
        │   ├── TransientIo           another OSError a later attempt may not meet (EIO, EMFILE)
        │   ├── QueueUnavailable      the queue database was busy or lost under this paper
        │   ├── WorkerCrashed         the extraction process died under this paper
        │   └── MemoryPressure        the memory governor shed this paper's extraction process
        ├── PermanentError        retrying cannot help: the paper ends as failed
        │   ├── NotFound              404 / 410
        │   ├── HttpPermanent         any other 4xx
        │   ├── NotPdf                body does not start with %PDF- (an HTML page, say)
        │   ├── TruncatedTar          the bulk tar ends inside this paper's member
        │   ├── TooLarge              over --max-pdf-mb
        │   ├── InvalidPdf            pypdf (or anything under it) cannot open the file
        │   ├── EncryptedPdf          encrypted and the empty password does not open it
        │   ├── ZeroPages             opens, but has no pages
        │   ├── ExtractTimeout        the parse ran past --extract-timeout; its process was killed
        │   ├── MemoryCapExceeded     the parse ran past --extract-max-mb
        │   ├── Poison                broke an extraction process too many times: quarantined
        │   ├── WriteError            a path under --out rpa cannot write (read-only, a folder)
        │   └── InternalError         a bug: any other exception, with its type and message
        └── RunLevelError         the host refuses us: stop downloading from it (circuit breaker)
            └── AccessDenied          403 or arXiv's denial page

Every JobError has a stable `kind` (a short snake_case word) that is what `rpa status` groups
failures by, and a human message. Nothing else in rpa raises bare exceptions across modules;
`classify` turns whatever else escapes the work on one paper into one of these, so that
paper fails, explained, and the run goes on. What each error means for the paper (an attempt
counted, given back, a host paused) is decided by the failure policy, rpa.run.policy.
"""

from __future__ import annotations

import errno

from rpa.printable import printable

__all__ = [
    "KINDS",
    "AccessDenied",
    "ConfigError",
    "ConnectionFailed",
    "DatabaseError",
    "DeclaredDead",
    "DiskFull",
    "DownloadTimeout",
    "EncryptedPdf",
    "ExtractTimeout",
    "HttpPermanent",
    "HttpTransient",
    "InputError",
    "InternalError",
    "InvalidIdError",
    "InvalidPdf",
    "JobError",
    "MemoryCapExceeded",
    "MemoryPressure",
    "NotFound",
    "NotPdf",
    "PermanentError",
    "Poison",
    "QueueUnavailable",
    "RpaError",
    "RunLevelError",
    "TooLarge",
    "TransientError",
    "TransientIo",
    "TruncatedBody",
    "TruncatedTar",
    "WorkerCrashed",
    "WriteError",
    "ZeroPages",
    "classify",
    "error_for_kind",
]


class RpaError(Exception):
    """Root of every error rpa raises on purpose."""


class ConfigError(RpaError):
    """A knob, config file or flag combination that cannot be used."""


class InputError(RpaError):
    """An input list that cannot be used as a whole."""


class InvalidIdError(InputError):
    """One input line that is not an arXiv ID (or an `ext:` name)."""

    def __init__(self, text: str, reason: str, line: int | None = None) -> None:
        self.text = text
        self.reason = reason
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{text!r}: {reason}")


class DatabaseError(RpaError):
    """The queue database cannot be opened or used."""


class RunCrashed(RpaError):
    """The run itself could not go on (its database broke under it, say): recorded as
    `crashed`; `rpa resume` continues once the cause is fixed."""


class DeclaredDead(RpaError):
    """Another run found this run dead (its heartbeat stopped, by the database's clock: a
    pause, a suspended laptop) and took its jobs: the run stops without writing anything."""


class JobError(RpaError):
    """A failure of one paper. `kind` is the stable word stored in the queue."""

    kind = "error"

    def __init__(
        self, message: str = "", *, retry_after: float | None = None, host: str | None = None
    ) -> None:
        # a paper's message quotes servers and files (reason phrases, types, previews): it is
        # stored, shown and logged, so it is made printable once, here
        message = printable(message)
        super().__init__(message or self.kind)
        self.message = message or self.kind
        #: seconds the server asked us to wait (Retry-After), if any
        self.retry_after = retry_after
        #: the host that answered so (for its cooldown or breaker), if a host did
        self.host = host


class TransientError(JobError):
    """Worth another attempt later."""

    kind = "transient"


class DownloadTimeout(TransientError):
    """The server did not connect or answer within the timeout."""

    kind = "timeout"


class ConnectionFailed(TransientError):
    """The connection was refused, reset or could not be made."""

    kind = "connection"


class HttpTransient(TransientError):
    """A status worth retrying: 408, 429, 500, 502, 503, 504."""

    kind = "http_transient"


class TruncatedBody(TransientError):
    """The body ended before Content-Length, or the stream broke mid-body."""

    kind = "truncated"


class DiskFull(TransientError):
    """No space left under --out."""

    kind = "disk_full"


class TransientIo(TransientError):
    """An OSError that a later attempt may not meet (EIO, too many open files...)."""

    kind = "io_error"


class QueueUnavailable(TransientError):
    """The queue database was busy, or its connection broke, while this paper was worked on:
    the attempt ends like any transient failure (counted; the paper is tried again later)."""

    kind = "database"


class WorkerCrashed(TransientError):
    """The extraction process died while working on this paper."""

    kind = "worker_crashed"


class MemoryPressure(TransientError):
    """The memory governor killed this paper's extraction process: memory ran short."""

    kind = "memory_pressure"


class PermanentError(JobError):
    """Retrying cannot help."""

    kind = "permanent"


class NotFound(PermanentError):
    """404 or 410."""

    kind = "not_found"


class HttpPermanent(PermanentError):
    """A 4xx status other than 403/404/408/410/429."""

    kind = "http_error"


class NotPdf(PermanentError):
    """The body is not a PDF (no %PDF- magic): an HTML page, an error text."""

    kind = "not_pdf"


class TruncatedTar(PermanentError):
    """The bulk tar ends before this paper's member does (a truncated download of it)."""

    kind = "truncated_tar"


class TooLarge(PermanentError):
    """Larger than --max-pdf-mb."""

    kind = "too_large"


class InvalidPdf(PermanentError):
    """The PDF cannot be opened or parsed at all."""

    kind = "invalid_pdf"


class EncryptedPdf(PermanentError):
    """Encrypted, and the empty password does not open it."""

    kind = "encrypted"


class ZeroPages(PermanentError):
    """Opens as a PDF with no pages."""

    kind = "zero_pages"


class ExtractTimeout(PermanentError):
    """The parse ran past --extract-timeout; its process was killed and replaced."""

    kind = "extract_timeout"


class MemoryCapExceeded(PermanentError):
    """The parse needed more memory than --extract-max-mb allows (a decompression bomb, say)."""

    kind = "memory_cap"


class Poison(PermanentError):
    """The paper broke an extraction process too many times: quarantined."""

    kind = "poison"


class WriteError(PermanentError):
    """A file rpa must write cannot be written: a directory in its place, no permission, a
    read-only mount. Retrying cannot help until someone fixes it (then `rpa retry`)."""

    kind = "write_error"


class InternalError(PermanentError):
    """Any other exception while processing the paper: a bug. Its type and message are kept."""

    kind = "internal"


class RunLevelError(JobError):
    """The host refuses us; downloads from it stop (circuit breaker)."""

    kind = "run_level"


class AccessDenied(RunLevelError):
    """403, or arXiv's denial page."""

    kind = "access_denied"


def _all_job_errors(cls: type[JobError]) -> list[type[JobError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_job_errors(sub))
    return found


_BY_KIND: dict[str, type[JobError]] = {c.kind: c for c in _all_job_errors(JobError)}
#: every kind a job can fail with (`error_kind` in the queue)
KINDS = frozenset(_BY_KIND)


def error_for_kind(kind: str, message: str = "") -> JobError:
    """Rebuild a JobError from the `kind` word a worker process sent back."""
    return _BY_KIND.get(kind, PermanentError)(message)


_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_CANNOT_WRITE = frozenset(
    {errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG,
     errno.EEXIST}
)  # fmt: skip


def classify(exc: BaseException, doing: str = "") -> JobError:
    """The JobError that explains `exc`, raised while `doing` something for one paper.

    A JobError is itself. No space left, anywhere: DiskFull. An OSError that names a path
    rpa cannot write: WriteError (permanent). Any other OSError: TransientIo. A busy or lost
    database: QueueUnavailable (transient). Anything else, a database refusing the change included,
    is InternalError (permanent), with its type and message.
    """
    if isinstance(exc, JobError):
        return exc
    where = f" while {doing}" if doing else ""
    text = str(exc)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, OSError):
        if exc.errno in _NO_SPACE:
            return DiskFull(f"no space left{where}: {described}")
        if exc.errno in _CANNOT_WRITE:
            return WriteError(f"cannot write{where}: {described}")
        return TransientIo(f"{described}{where}")
    if _is_database_error(exc):
        return QueueUnavailable(f"{described}{where}")
    return InternalError(f"{described}{where}")


def _is_database_error(exc: BaseException) -> bool:
    # Both drivers follow PEP 249 (no import needed to tell their classes apart): the
    # errors they raise for a busy or lost database are OperationalError or InterfaceError
    # (an IntegrityError, a constraint or a trigger refusing the change, is not transient).
    return any(
        cls.__name__ in ("OperationalError", "InterfaceError")
        and cls.__module__.split(".")[0] in ("sqlite3", "psycopg")
        for cls in type(exc).__mro__
    )

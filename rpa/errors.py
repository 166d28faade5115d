"""The one error tree of rpa.

    RpaError                      root: the CLI catches this, prints one line, exits 2 (usage) or 1
    ├── ConfigError               a bad knob value, config file or flag combination
    ├── InputError                an ID list that cannot be used (--strict, unreadable file)
    │   └── InvalidIdError        one line that is not an arXiv ID
    ├── DatabaseError             the queue database cannot be opened or is of an unknown schema
    │   ├── DatabaseUnavailable   it cannot be reached or is busy now (a run-level condition:
    │   │                         waited for by rpa.queue.aio, never a paper's failure)
    │   └── DatabaseStayedAway    it stayed unavailable past --db-wait: the run stops, interrupted
    ├── StayedAway                a condition outlasted its bound: the run stops, interrupted
    │   ├── (DatabaseStayedAway)  the queue database, past --db-wait (a DatabaseError too)
    │   ├── MetadataStayedAway    arXiv's metadata API, past --metadata-wait or never there
    │   └── SourceMissesAll       the PDF source found none of its first --first-misses papers
    ├── RunCrashed                the run itself cannot go on (its database broke under it)
    ├── DeclaredDead              another run found this one dead (no heartbeat) and took its jobs
    └── JobError                  a failure of one paper; `kind` is stored in the queue
        ├── TransientError        worth retrying later (the job goes back to the queue)
        │   ├── DownloadTimeout       connect/read timeout
        │   ├── ConnectionFailed      refused, reset, DNS
        │   ├── HttpTransient         429, 408, 500, 502, 503, 504 (may carry Retry-After)
        │   ├── TruncatedBody         fewer bytes than Content-Length, or a body cut mid-stream
        │   ├── TransientIo           another OSError a later attempt may not meet (EIO, EMFILE)
        │   ├── RetryAfter            a user stage's service asked to wait (rpa.RetryAfter)
        │   └── WorkerCrashed         the extraction process died under this paper (`alone`: with
        │                             the paper alone in a fresh process, no memory pressure)
        ├── PermanentError        retrying cannot help: the paper ends as failed
        │   ├── NotFound              404 / 410
        │   ├── HttpPermanent         any other 4xx
        │   ├── NotPdf                body does not start with %PDF- (an HTML page, say)
        │   ├── TruncatedTar          the bulk tar ends inside this paper's member
        │   ├── DamagedTar            this member's bytes hold another member's tar header
        │   ├── TooLarge              over --max-pdf-mb
        │   ├── InvalidPdf            pypdf (or anything under it) cannot open the file
        │   ├── EncryptedPdf          encrypted and the empty password does not open it
        │   ├── ZeroPages             opens, but has no pages
        │   ├── ExtractTimeout        the parse ran past --extract-timeout (`alone` as above)
        │   ├── MemoryCapExceeded     the parse ran past --extract-max-mb
        │   ├── Poison                broke an extraction process too many times: quarantined
        │   ├── WriteError            a path of this paper rpa cannot write (a folder in its place)
        │   └── InternalError         a bug: any other exception, with its type and message
        └── ConditionError        the run's world failed under this paper, not the paper: never
            │                     charged; what it concerns pauses (rpa.run.policy)
            ├── RunLevelError         a host refuses us: its breaker opens, its papers wait
            │   └── AccessDenied          403 or arXiv's denial page
            ├── HostDown              the paper's host is down (rpa.hosts.outage), not the paper
            ├── MemoryPressure        the memory governor shed this paper's extraction process
            ├── QueueUnavailable      the queue database was busy or lost (aio did not wait it out)
            ├── DiskFull              no space left (ENOSPC, EDQUOT): claiming pauses
            └── OutUnwritable         --out cannot be written now (read-only, permissions): pauses

An overloaded machine (the OOM killer, CPU starvation) has no class: it is a WorkerCrashed or
ExtractTimeout that was not `alone`, which the policy retries alone, uncounted. Every JobError
has a stable `kind` (what `rpa status` groups failures by) and a human message; `classify`
turns whatever else escapes the work on one paper into one of these. What each error means
for the paper (charged, given back, held, a host or the run paused) is decided in one place,
the failure policy: rpa.run.policy.
"""

from __future__ import annotations

from rpa.printable import printable

__all__ = [
    "KINDS", "AccessDenied", "ConditionError", "ConfigError", "ConnectionFailed", "DamagedTar",
    "DatabaseError", "DatabaseStayedAway", "DatabaseUnavailable", "DeclaredDead", "DiskFull",
    "DownloadTimeout", "EncryptedPdf", "ExtractTimeout", "HostDown", "HttpPermanent",
    "HttpTransient", "InputError", "InternalError", "InvalidIdError", "InvalidPdf", "JobError",
    "MemoryCapExceeded", "MemoryPressure", "MetadataStayedAway", "NotFound", "NotPdf",
    "OutUnwritable", "PermanentError", "Poison", "QueueUnavailable", "RetryAfter", "RpaError",
    "RunLevelError", "SourceMissesAll", "StayedAway", "TooLarge", "TransientError",
    "TransientIo", "TruncatedBody", "TruncatedTar", "WorkerCrashed", "WriteError", "ZeroPages",
    "error_for_kind",
]  # fmt: skip


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


class DatabaseUnavailable(DatabaseError):
    """The queue database cannot be reached, or refuses us for now (too many clients, starting
    up, shutting down). `reachable`: a server answered (busy or starting: worth waiting for
    even at start); False when nothing answered (a wrong host or port at start fails fast)."""

    def __init__(self, message: str, *, reason: str, reachable: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.reachable = reachable


class StayedAway(RpaError):
    """A condition of the run's world outlasted its bound: the run stops as `interrupted`
    (nothing is charged to any paper) and `rpa resume` continues (rpa.run.feeder)."""

    #: were papers charged for it (said at the stop); what `rpa resume` does, as said
    charged = False
    resume = "continues once it is back"


class DatabaseStayedAway(DatabaseError, StayedAway):
    """The queue database stayed unavailable longer than --db-wait: the run stops as
    `interrupted` (nothing is charged to any paper) and `rpa resume` continues."""


class MetadataStayedAway(StayedAway):
    """arXiv's metadata API gave no answer for longer than --metadata-wait, or never answered
    in this run (a wrong --metadata-url): the papers waiting for their metadata are not
    charged, nor done without it; the run stops as `interrupted` and `rpa resume` continues."""


class SourceMissesAll(StayedAway):
    """The PDF source answered 'not found' for each of the first --first-misses papers asked
    of it and served none: likelier a wrong --pdf-url than that many missing papers. They are
    failed `not_found`; the run stops as `interrupted` (rpa.run.misses)."""

    charged = True
    resume = "continues once the source is right (`--reconfigure --pdf-url ...`)"


class RunCrashed(RpaError):
    """The run could not go on (its database broke under it): `crashed`; `rpa resume`."""


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
    """A status worth retrying: 408, 429, 500, 502, 503, 504 (`status`, when known)."""

    kind = "http_transient"

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        host: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after, host=host)
        self.status = status


class TruncatedBody(TransientError):
    """The body ended before Content-Length, or the stream broke mid-body."""

    kind = "truncated"


class TransientIo(TransientError):
    """An OSError that a later attempt may not meet (EIO, too many open files...)."""

    kind = "io_error"


class RetryAfter(TransientError):
    """A user stage's service asked to wait `seconds` (rpa.RetryAfter): its stage pauses."""

    kind = "retry_after"

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"asked to wait {seconds:g}s", retry_after=float(seconds))


class _Isolation:
    """`alone`: the paper ran alone (no other extraction, a fresh process, no memory
    pressure), so the failure is its own; else the machine may be to blame (policy)."""

    alone: bool = False


class WorkerCrashed(_Isolation, TransientError):
    """The extraction process died while working on this paper."""

    kind = "worker_crashed"


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


class DamagedTar(PermanentError):
    """A tar member's claim holds another member's header (rpa.sources.tar.check_member)."""

    kind = "damaged_tar"


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


class ExtractTimeout(_Isolation, PermanentError):
    """The parse ran past --extract-timeout; its process was killed and replaced."""

    kind = "extract_timeout"


class MemoryCapExceeded(PermanentError):
    """The parse needed more memory than --extract-max-mb allows (a decompression bomb, say)."""

    kind = "memory_cap"


class Poison(PermanentError):
    """The paper broke an extraction process too many times: quarantined."""

    kind = "poison"


class WriteError(PermanentError):
    """A path of this paper's cannot be written (a directory in its place): `rpa retry`."""

    kind = "write_error"


class InternalError(PermanentError):
    """Any other exception while processing the paper: a bug. Its type and message are kept."""

    kind = "internal"


class ConditionError(JobError):
    """A condition of the run's world met while this paper was worked on (a host, memory, the
    queue database, the disk): never the paper's fault, never charged (rpa.run.policy)."""

    kind = "condition"

    #: the folder rpa could not write to, when known (the disk guard watches it)
    folder: str | None = None


class RunLevelError(ConditionError):
    """A host refuses us: its breaker opens and its papers wait (circuit breaker)."""

    kind = "run_level"


class AccessDenied(RunLevelError):
    """403, or arXiv's denial page."""

    kind = "access_denied"


class HostDown(ConditionError):
    """The paper's download failed at the connection while host health finds its host down
    (rpa.hosts.outage): the host's outage, not the paper's. Keeps the failure's message."""

    kind = "host_down"


class MemoryPressure(ConditionError):
    """The memory governor killed this paper's extraction process: memory ran short."""

    kind = "memory_pressure"


class QueueUnavailable(ConditionError):
    """The queue database was busy or its connection broke under this paper (what
    rpa.queue.aio did not wait out)."""

    kind = "database"


class DiskFull(ConditionError):
    """No space left (ENOSPC, EDQUOT) where rpa was writing."""

    kind = "disk_full"


class OutUnwritable(ConditionError):
    """--out, or a folder under it, cannot be written now: a read-only mount, permissions."""

    kind = "out_unwritable"


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

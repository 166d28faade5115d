"""The failure policy: what one paper's failure means, decided in one place.

Every error that ends an attempt at a paper comes here (as a JobError: `rpa.classify` turns
anything else into one) and gets a `Verdict`:

- `give_back`: not the paper's fault, no attempt counted: a host refused us (its breaker
  opens), the queue database was unavailable under it (rpa.queue.aio waits for it; what
  reaches here is a leftover), --out full or not writable (claiming pauses: rpa.run.disk), or
  the run is stopping and took the extraction process with it.
- `retry`: the paper waits for its next attempt (exponential backoff with jitter, floored by
  the server's Retry-After); the attempt is counted (`counted`) unless the failure is not the
  paper's: its host is down (host health found it: rpa.hosts.outage), a shed (the memory
  governor killed its process for memory another program may hold), or an extraction process
  that died or timed out among others (`runs_alone`).
- `fail`: the paper ends as failed: a permanent error, its last attempt, `poison` (it
  killed --poison-after extraction processes while alone), or a redirect to a host that
  refuses us.

An extraction process killed by the OOM killer or starved of CPU by an overloaded machine says
nothing about its paper. So a death or a timeout is charged (towards --poison-after, or as a
final `extract_timeout`) only when it happened with the paper alone: no other extraction in the
pool, a fresh process, no memory pressure (the error's `alone`, said by rpa.extract.pool). Else
the attempt is not counted and the paper's next extraction runs alone: the job's stored
`error_kind` says so (`runs_alone`), no column of its own.

The verdict also says whether the paper's host asked us to wait (a cooldown for every paper of
that host) or refused us. The job processor carries the verdict out; the queue records it
(`rpa.queue.jobs.fail` counts the attempt; `crashes` counts killed extraction processes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rpa import errors
from rpa.config import Settings
from rpa.hosts.outage import SERVER_DOWN
from rpa.queue.model import Job
from rpa.run.backoff import retry_delay

__all__ = ["ALONE_AFTER", "Verdict", "host_trouble", "judge", "proves_host_works", "runs_alone"]

Action = Literal["give_back", "retry", "fail"]

#: a paper whose last failure was one of these is extracted alone next time
ALONE_AFTER = frozenset({"worker_crashed", "extract_timeout", "poison"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a failure means: for the paper (`action`), and for its host."""

    action: Action
    #: the error as recorded (a worker crash past --poison-after becomes Poison)
    error: errors.JobError
    #: when the next attempt is due (wall clock), for `retry`
    next_at: float = 0.0
    #: the host refused us: stop every request to it
    refused: bool = False
    #: the host asked us to wait this long before any request (Retry-After)
    cooldown: float | None = None
    #: an extraction process died under the paper (counted towards --poison-after)
    crashed: bool = False
    #: does the attempt count (towards --max-attempts)?
    counted: bool = True
    #: what the user is told (a give-back, a retry alone)
    said: str | None = None
    #: --out cannot take the paper's files now (full, read-only): claiming pauses
    pause_out: bool = False


def runs_alone(job: Job) -> bool:
    """Must `job`'s next extraction run alone (its last failure may have been the machine's,
    or was its own and may recur)?"""
    return job.error_kind in ALONE_AFTER


def host_trouble(exc: errors.JobError) -> bool:
    """Does `exc` say nothing about the paper until its host is known to work? A connection
    refused or reset, a timeout, a body cut off, with no answer from the host at all (an
    answer that began and then stalled says the host works: `exc.host` names it); a server
    error (500, 502, 503 without Retry-After, 504: a proxy before a server that is down)."""
    no_answer = errors.ConnectionFailed | errors.DownloadTimeout | errors.TruncatedBody
    return (isinstance(exc, no_answer) and exc.host is None) or _server_down(exc)


def _server_down(exc: errors.JobError) -> bool:
    return (
        isinstance(exc, errors.HttpTransient)
        and exc.status in SERVER_DOWN
        and exc.retry_after is None
    )


def proves_host_works(exc: errors.JobError) -> bool:
    """Did the host answer, for all that the paper failed (a 404, a 429, a page that is no
    PDF)?"""
    return isinstance(
        exc, errors.NotFound | errors.HttpPermanent | errors.HttpTransient | errors.NotPdf
    ) and not _server_down(exc)


def judge(
    exc: errors.JobError,
    job: Job,
    settings: Settings,
    *,
    stopping: bool,
    now: float,
    host_down: bool = False,
) -> Verdict:
    """The verdict on `job`'s attempt that ended with `exc`, at wall time `now`; `host_down`:
    host health found the paper's host down (the failure tells nothing about the paper)."""
    if isinstance(exc, errors.RunLevelError):
        if exc.host and exc.host.lower().rstrip(".") != settings.pdf_host:
            # another host (a redirect's target) refuses us: nothing else can fetch this paper,
            # and giving it back would only ask again at once (a loop)
            return Verdict("fail", exc, refused=True)
        return Verdict("give_back", exc, refused=True)
    if isinstance(exc, errors.DiskFull | errors.OutUnwritable):
        # the output folder, not the paper: claiming pauses until it can be written again
        return Verdict("give_back", exc, pause_out=True)
    if host_down:
        # Not the paper's fault: uncounted. Not at once either: a host that answers only this
        # paper's requests with errors looks down at each of them, and an immediate give-back
        # would ask again as soon as a probe finds it up (a loop): its backoff first.
        return Verdict("retry", exc, next_at=now + _delay(job, exc, settings), counted=False)
    if isinstance(exc, errors.ConditionError):
        return Verdict("give_back", exc)
    if isinstance(exc, errors.WorkerCrashed) and stopping:
        # The run is stopping (a signal to the whole process group reaches the extraction
        # processes too): a process lost now is not the paper's fault.
        return Verdict(
            "give_back", exc, said=f"{job.id}: extraction cut short by the stop; it goes back"
        )
    if isinstance(exc, errors.MemoryPressure):  # shed: memory another program may hold
        return Verdict("retry", exc, next_at=now + _delay(job, exc, settings), counted=False)
    if isinstance(exc, errors.WorkerCrashed | errors.ExtractTimeout) and not exc.alone:
        what = "died" if isinstance(exc, errors.WorkerCrashed) else "ran past --extract-timeout"
        return Verdict(
            "retry", exc, next_at=now + _delay(job, exc, settings), counted=False,
            said=f"{job.id}: extraction process {what}; retrying it alone",
        )  # fmt: skip
    crashed = isinstance(exc, errors.WorkerCrashed)
    if crashed and job.crashes + 1 >= settings.poison_after:
        exc = errors.Poison(
            f"killed {job.crashes + 1} extraction processes while alone: {exc.message}"
        )
    final = isinstance(exc, errors.PermanentError) or job.attempts + 1 >= settings.max_attempts
    next_at = 0.0
    if not final:
        next_at = now + _delay(job, exc, settings)
    # the host's cooldown binds every job, this one's last try or not
    return Verdict(
        "fail" if final else "retry",
        exc,
        next_at=next_at,
        cooldown=exc.retry_after or None,
        crashed=crashed,
    )


def _delay(job: Job, exc: errors.JobError, settings: Settings) -> float:
    return retry_delay(job.attempts + 1, settings.retry_base, settings.retry_max, exc.retry_after)

"""The failure policy: what one paper's failure means, decided in one place.

Every error that ends an attempt at a paper comes here (as a JobError: `rpa.classify` turns
anything else into one) and gets a `Verdict`, one decision per branch of the error tree:

- A condition of the run's world (`errors.ConditionError`) is never charged. A host refusing
  us (403, a denial page) opens its breaker: the paper is given back (`give_back`) when it is
  --pdf-url's host (claiming stops: rpa.hosts.health); when it is another host, a redirect's
  target, the paper is held for it (`hold`: queued, uncounted, claimed by no process until the
  next run asks that host again; the run ends `denied` when only held papers are left). --out
  full or not writable: given back, claiming pauses (rpa.run.disk). The paper's host found
  down (`HostDown`: rpa.hosts.outage) or a shed (`MemoryPressure`: the memory governor killed
  its process for memory another program may hold): `retry` uncounted, after its backoff. The
  queue database unavailable (rpa.queue.aio waits for it; what reaches here is a leftover):
  given back.
- The machine's, maybe: an extraction process that died or timed out among others, or
  died because the run is stopping: retried alone uncounted, or given back.
- The paper's own (transient or permanent): `retry`, counted, after exponential backoff with
  jitter floored by the server's Retry-After; `fail` when permanent, on its last attempt, or
  `poison` (it killed --poison-after extraction processes while alone).

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
from rpa.queue.model import HELD, Job
from rpa.run.backoff import retry_delay

__all__ = [
    "ALONE_AFTER", "Verdict", "as_host_down", "cut_mid_body", "host_trouble", "judge",
    "proves_host_works", "runs_alone",
]  # fmt: skip

Action = Literal["give_back", "hold", "retry", "fail"]

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
    refused or reset, a timeout, a body cut off, with no answer from the host at all, or cut
    mid-body (`exc.host` names the host that began to answer: an outage that begins under a
    download looks just like a paper its host cannot send); a server error (500, 502, 503
    without Retry-After, 504: a proxy before a server that is down). Host health's strike
    rule decides: the paper's first such failure is not its own, a second one after its
    host answered in between is (rpa.hosts.health.HostHealth.connection_failed)."""
    return isinstance(exc, _NO_BODY) or _server_down(exc)


_NO_BODY = errors.ConnectionFailed | errors.DownloadTimeout | errors.TruncatedBody


def cut_mid_body(exc: errors.JobError) -> bool:
    """Did the host begin to answer (`exc.host`), and the body then stall or break off? No
    sign that the host is down, as no answer at all is."""
    return isinstance(exc, _NO_BODY) and exc.host is not None


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
    exc: errors.JobError, job: Job, settings: Settings, *, stopping: bool, now: float
) -> Verdict:
    """The verdict on `job`'s attempt that ended with `exc`, at wall time `now`. A failure
    of a host that host health found down comes as `HostDown` (`as_host_down`)."""
    if isinstance(exc, errors.ConditionError):
        return _condition(exc, job, settings, now)
    if isinstance(exc, errors.WorkerCrashed) and stopping:
        # The run is stopping (a signal to the whole process group reaches the extraction
        # processes too): a process lost now is not the paper's fault.
        return Verdict(
            "give_back", exc, said=f"{job.id}: extraction cut short by the stop; it goes back"
        )
    if isinstance(exc, errors.WorkerCrashed | errors.ExtractTimeout) and not exc.alone:
        # the machine's, maybe (the OOM killer, an overloaded CPU): retried alone, uncounted
        what = "died" if isinstance(exc, errors.WorkerCrashed) else "ran past --extract-timeout"
        return Verdict(
            "retry", exc, next_at=now + _delay(job, exc, settings), counted=False,
            said=f"{job.id}: extraction process {what}; retrying it alone",
        )  # fmt: skip
    return _charge(exc, job, settings, now)


def _condition(exc: errors.ConditionError, job: Job, settings: Settings, now: float) -> Verdict:
    """The run's world failed under the paper: never charged; what it concerns pauses."""
    if isinstance(exc, errors.RunLevelError):  # a host refuses us: its breaker opens
        if exc.host and exc.host.lower().rstrip(".") != settings.pdf_host:
            # another host (a redirect's target): only it could serve this paper, and giving
            # it back would ask again at once (a loop): held until the next run
            return Verdict("hold", exc, next_at=HELD, refused=True, counted=False)
        return Verdict("give_back", exc, refused=True)  # claiming stops (rpa.hosts.health)
    if isinstance(exc, errors.DiskFull | errors.OutUnwritable):
        # the output folder, not the paper: claiming pauses until it can be written again
        return Verdict("give_back", exc, pause_out=True)
    if isinstance(exc, errors.HostDown | errors.MemoryPressure):
        # Its host is down, or a shed (memory another program may hold). Not at once: a
        # host that answers only this paper's requests with errors looks down at each of
        # them, and an immediate give-back would ask again as soon as a probe finds it up.
        return Verdict("retry", exc, next_at=now + _delay(job, exc, settings), counted=False)
    return Verdict("give_back", exc)  # the queue database (rpa.queue.aio waits for it)


def _charge(exc: errors.JobError, job: Job, settings: Settings, now: float) -> Verdict:
    """The paper's own failure: counted; failed for good when permanent or its last."""
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


def as_host_down(exc: errors.JobError) -> errors.HostDown:
    """`exc` (a host-trouble failure) as the condition it is when its host is down."""
    down = errors.HostDown(exc.message, retry_after=exc.retry_after, host=exc.host)
    down.__cause__ = exc
    return down


def _delay(job: Job, exc: errors.JobError, settings: Settings) -> float:
    return retry_delay(job.attempts + 1, settings.retry_base, settings.retry_max, exc.retry_after)

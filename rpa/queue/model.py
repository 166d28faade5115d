"""The queue's plain data: what goes in and comes out of the queue's functions, as typed values.

Nothing above the queue sees a column name: a claim returns `Job`s, a checkpoint takes a
`Downloaded` or an `Extracted`, a failure is a `Failure`, a stage timing an `Attempt`.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIVE_STAGES",
    "FINAL_STAGES",
    "HELD",
    "QUEUE_SETTINGS",
    "STAGE_RESULTS",
    "Attempt",
    "Completion",
    "Downloaded",
    "Extracted",
    "Failure",
    "HostState",
    "Job",
    "Lease",
    "Reclaimed",
    "RunInfo",
    "TarMember",
    "Totals",
    "Wait",
    "dead_after",
    "new_run_id",
    "this_host",
]

#: a job is claimable in these stages (and none other)
ACTIVE_STAGES = ("queued", "downloaded", "extracted")
FINAL_STAGES = ("done", "failed")
#: the settings that decide where work comes from and goes to: they belong to the queue, not
#: to one invocation (a resume uses the stored ones; a contradicting value is refused)
QUEUE_SETTINGS = (
    "out", "pdf_url", "pdf_tar", "extractor", "rate_limits", "max_pdf_mb", "follow_redirects",
    "metadata", "metadata_url", "metadata_file",
)  # fmt: skip

#: the user stages' checkpoints (rpa.stages.store), one row per paper and stage; the same
#: statement in both backends (PostgreSQL's REAL read as double precision)
STAGE_RESULTS = (
    "CREATE TABLE stage_results (job_id TEXT NOT NULL, stage TEXT NOT NULL, "
    "version TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
    "next_at REAL NOT NULL DEFAULT 0, result_json TEXT, error_kind TEXT, error TEXT, "
    "lease_owner TEXT, lease_token BIGINT NOT NULL DEFAULT 0, seconds REAL, "
    "updated_at REAL, PRIMARY KEY (job_id, stage))"
)


def dead_after(heartbeat_seconds: float) -> float:
    """Seconds without a heartbeat after which a run is dead: three missed beats and 5 s of
    slack. The one definition, used by reclaim and by `rpa status` alike."""
    return 3 * heartbeat_seconds + 5.0


def new_run_id() -> str:
    """A run's id, its token: when it started, and 64 random bits (secrets), so that runs on
    any number of hosts never share one. Liveness and leases go by this id alone (never by
    hostname and pid: containers share hostnames, pids are reused). It names the run's
    temporary files, so it never holds a dot."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(8)}"


def this_host() -> str:
    """The hostname, shown by `rpa status` (never used to decide liveness)."""
    return socket.gethostname()


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to write one job: its id and the fence token the claim gave."""

    job_id: str
    token: int


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job, as the worker sees it."""

    id: str
    token: int
    stage: str
    attempts: int
    crashes: int
    pdf_path: str | None = None
    pdf_bytes: int | None = None
    pdf_sha256: str | None = None
    extract: dict[str, Any] | None = None
    download_seconds: float | None = None
    extract_seconds: float | None = None
    final_url: str | None = None
    http_status: int | None = None
    #: the kind of its last failure, if any (the failure policy reads it: rpa.run.policy)
    error_kind: str | None = None

    @property
    def lease(self) -> Lease:
        return Lease(self.id, self.token)


@dataclass(frozen=True, slots=True)
class Completion:
    """A paper's whole work, done in one go (rpa.extract.paper): where its PDF is, what it
    is, its text, and its record's `results` row (`row`: rpa.queue.jobs.result_row's)."""

    lease: Lease
    outcome_path: str
    row: dict[str, Any]
    pdf_path: str | None  # None: not kept (--keep-pdf)
    pdf_bytes: int
    pdf_sha256: str
    final_url: str | None
    http_status: int | None
    download_seconds: float | None
    text_path: str
    extract_seconds: float


@dataclass(frozen=True, slots=True)
class Downloaded:
    """The download checkpoint: the PDF is whole at `pdf_path`."""

    pdf_path: str
    pdf_bytes: int
    pdf_sha256: str
    final_url: str | None
    http_status: int | None
    download_seconds: float


@dataclass(frozen=True, slots=True)
class Extracted:
    """The extract checkpoint: the text is at `text_path`; `result` is the extraction's
    plain-data result (serialized by the store, in its own thread)."""

    text_path: str
    result: dict[str, Any]
    extract_seconds: float


#: the `next_attempt_at` of a job held for a host that refused us (a redirect's target): never
#: due, so no process of the queue claims it; the next run's start releases it
#: (rpa.queue.hosts.release_held). Far beyond any retry time, and finite (JSON has no inf).
HELD = 1e15


@dataclass(frozen=True, slots=True)
class Failure:
    """The end of an attempt in failure. `final`: the job fails for good; else it waits in
    the queue until `next_attempt_at`. `count_attempt=False` gives the job its attempt back
    (it was not the paper's fault)."""

    kind: str
    message: str
    final: bool
    next_attempt_at: float = 0.0
    crashed: bool = False
    count_attempt: bool = True


@dataclass(frozen=True, slots=True)
class Attempt:
    """One timed attempt at a stage, for `rpa status` and the end-of-run summary."""

    job_id: str
    run_id: str
    stage: str  # download | extract | outcome
    started_at: float
    gate_wait: float
    duration: float
    outcome: str  # ok | error
    error_kind: str | None = None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run as it registers itself."""

    id: str
    command: str
    started_at: float
    heartbeat_seconds: float
    settings_json: str
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=this_host)


@dataclass(frozen=True, slots=True)
class Wait:
    """What a run waits for now (the line its live table shows, with the reasons) and when
    the wait began, by this process's `time.monotonic()`: the heartbeat turns it into the
    database's clock in its own transaction (rpa.queue.runs.heartbeat), so a host whose clock
    is off still says the truth."""

    what: str
    began: float


@dataclass(frozen=True, slots=True)
class Reclaimed:
    dead_runs: int = 0
    dead_leases: int = 0
    expired_leases: int = 0


@dataclass(frozen=True, slots=True)
class HostState:
    host: str
    cooldown_until: float | None
    breaker_open: bool
    reason: str


@dataclass(frozen=True, slots=True)
class TarMember:
    """A paper's PDF inside one of arXiv's bulk tars (rpa.sources.tar)."""

    base: str  # its arXiv ID without version: "1501.00001", "astro-ph/0001001"
    version: int | None
    tar: str  # the tar's path
    name: str  # the member's name
    offset: int  # where its data starts in the tar
    size: int


@dataclass(frozen=True, slots=True)
class Totals:
    """Queue-wide counts."""

    queued: int = 0
    in_progress: int = 0
    retry_scheduled: int = 0
    done: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.in_progress + self.retry_scheduled + self.done + self.failed

    @property
    def remaining(self) -> int:
        return self.queued + self.in_progress + self.retry_scheduled

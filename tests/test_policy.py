"""The failure policy (rpa.run.policy), one verdict per branch of the error tree (issue 18).

A condition of the run's world is never charged: a host refusing us, a host found down,
memory pressure, the queue database, the disk. Pure functions of an error and a job: no
server is needed to tell what a verdict is (the end-to-end cases are in tests/test_faults.py,
tests/test_outage.py, tests/test_isolation.py, tests/test_db_outage.py).
"""

from __future__ import annotations

import pytest

from rpa import errors
from rpa.config import Settings
from rpa.queue.model import HELD, Job
from rpa.run import policy

SETTINGS = Settings(pdf_url="http://primary.org/pdf/{id}", max_attempts=3, retry_base=1.0)
NOW = 1000.0


def job(attempts: int = 0) -> Job:
    return Job(id="2301.00001", token=1, stage="queued", attempts=attempts, crashes=0)


def judge(exc: errors.JobError, attempts: int = 0) -> policy.Verdict:
    return policy.judge(exc, job(attempts), SETTINGS, stopping=False, now=NOW)


def test_every_condition_is_a_condition_error_with_its_stored_kind() -> None:
    """The kinds queues on disk hold are unchanged; the conditions are one branch."""
    kinds = {
        errors.AccessDenied: "access_denied",
        errors.RunLevelError: "run_level",
        errors.HostDown: "host_down",
        errors.MemoryPressure: "memory_pressure",
        errors.QueueUnavailable: "database",
        errors.DiskFull: "disk_full",
        errors.OutUnwritable: "out_unwritable",
    }
    for cls, kind in kinds.items():
        assert issubclass(cls, errors.ConditionError) and cls.kind == kind
        assert not issubclass(cls, errors.TransientError | errors.PermanentError)
        assert type(errors.error_for_kind(kind, "m")) is cls  # rebuilt from a worker's word


@pytest.mark.parametrize(
    ("exc", "action", "refused"),
    [
        # --pdf-url's host refuses us: given back, its breaker opens, claiming stops
        (errors.AccessDenied("403", host="primary.org"), "give_back", True),
        (errors.AccessDenied("denial page"), "give_back", True),  # no host: the primary's
        # a redirect's target refuses us: the paper is held for it, uncounted, not failed
        (errors.AccessDenied("403", host="mirror.example"), "hold", True),
        (errors.DiskFull("no space"), "give_back", False),
        (errors.QueueUnavailable("locked"), "give_back", False),
        (errors.HostDown("ConnectError: refused"), "retry", False),
        (errors.MemoryPressure("shed"), "retry", False),
    ],
)
def test_a_condition_is_never_charged_even_on_the_last_attempt(
    exc: errors.JobError, action: str, refused: bool
) -> None:
    verdict = judge(exc, attempts=SETTINGS.max_attempts - 1)
    assert (verdict.action, verdict.refused, verdict.error) == (action, refused, exc)
    # (a give-back releases the lease as it was: it records no failure to count)
    assert action == "give_back" or not verdict.counted
    if action == "hold":
        assert verdict.next_at == HELD  # claimed by no process until the next run
    if action == "retry":
        assert NOW < verdict.next_at < HELD  # after a backoff, not at once (no loop)
    assert verdict.pause_out == isinstance(exc, errors.DiskFull)


def test_a_failure_of_a_host_found_down_becomes_host_down_with_its_message() -> None:
    cause = errors.ConnectionFailed("ConnectError: [Errno 111] refused")
    assert policy.host_trouble(cause)
    down = policy.as_host_down(cause)
    assert (down.kind, down.message, down.__cause__) == ("host_down", cause.message, cause)
    assert judge(cause, attempts=2).action == "fail"  # not found down: the paper's last try
    assert (judge(down, attempts=2).action, judge(down).counted) == ("retry", False)

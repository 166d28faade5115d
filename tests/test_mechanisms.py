"""The small mechanisms every part leans on: header parsing, sites and host gates, the error
classifier, the one percentile method, and structures bounded however long a run is."""

from __future__ import annotations

import email.utils
import errno
import sqlite3
import time
from pathlib import Path

import pytest

from rpa import errors
from rpa.classify import classify
from rpa.hosts.registry import HostGates, same_site, site_of
from rpa.metrics import LagHistogram, Rate, Window, nearest_rank, percentile
from rpa.notices import Notices
from rpa.queue import jobs, open_store, reads
from rpa.queue.model import Attempt
from rpa.sources.http import MAX_RETRY_AFTER, parse_retry_after


def test_retry_after_is_parsed_strictly() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after("99999999999") == MAX_RETRY_AFTER  # a day at most
    date = email.utils.formatdate(1_000_060.0, usegmt=True)
    assert parse_retry_after(date, now=1_000_000.0) == pytest.approx(60.0)
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0  # in the past: now
    for bad in ("²", "١٢", "1.5", "-3", "soon", "Mon, 99 Foo 2026 25:61:00 GMT", "1e3"):
        with pytest.raises(ValueError, match="malformed Retry-After"):
            parse_retry_after(bad)


def test_sites_for_the_redirect_policy() -> None:
    assert site_of("export.arxiv.org") == "arxiv.org" == site_of("ARXIV.org.")
    assert same_site("arxiv.org", "export.arxiv.org")
    assert not same_site("arxiv.org", "arxiv.org.evil.com")
    assert site_of("www.example.co.uk") == "example.co.uk"
    assert same_site("127.0.0.1", "127.0.0.1") and not same_site("127.0.0.1", "localhost")
    assert not same_site("127.0.0.1", "127.0.0.2")


async def test_every_host_has_its_own_gate_with_its_own_cap_and_breaker() -> None:
    hosts = HostGates("a.org=2/1s", primary="a.org")
    assert hosts.gate("A.org").count == 2 and hosts.gate("b.org").count is None
    assert hosts.gate("a.org") is hosts.gate("a.org.")
    await hosts.acquire("b.org")
    assert hosts.open_breaker("b.org", "403") and not hosts.open_breaker("b.org", "again")
    with pytest.raises(errors.AccessDenied, match=r"downloads from b\.org are stopped: 403"):
        await hosts.acquire("b.org")
    await hosts.acquire("a.org")  # another host's breaker is not this one's
    hosts.pause_until("a.org", time.monotonic() + 60)
    assert [h for h, _ in hosts.cooling_down()] == ["a.org"]
    assert {g.name for g in hosts.statistics()} == {"host a.org"}  # capped or cooling down


def test_every_exception_is_classified_by_its_cause() -> None:
    def kind(exc: BaseException) -> tuple[str, str]:
        found = classify(exc, "writing the outcome")
        branches = {
            errors.TransientError: "transient",
            errors.PermanentError: "permanent",
            errors.ConditionError: "condition",  # the run's world: never charged
        }
        return found.kind, next(b for c, b in branches.items() if isinstance(found, c))

    assert kind(OSError(errno.ENOSPC, "No space left on device")) == ("disk_full", "condition")
    assert kind(OSError(errno.EDQUOT, "Disk quota exceeded")) == ("disk_full", "condition")
    assert kind(IsADirectoryError(errno.EISDIR, "Is a directory")) == ("write_error", "permanent")
    denied = PermissionError(errno.EACCES, "Permission denied", "/out/outcome/2401/x.json")
    assert kind(denied) == ("out_unwritable", "condition")
    condition = classify(denied)
    assert isinstance(condition, errors.OutUnwritable)
    assert condition.folder == "/out/outcome/2401"  # what the disk guard watches
    assert kind(OSError(errno.EROFS, "Read-only file system")) == ("out_unwritable", "condition")
    assert kind(OSError(errno.EIO, "I/O error")) == ("io_error", "transient")
    assert kind(sqlite3.OperationalError("database is locked")) == ("database", "condition")
    assert kind(sqlite3.IntegrityError("refused by a trigger")) == ("internal", "permanent")
    assert kind(ValueError("unsafe storage name")) == ("internal", "permanent")
    assert kind(errors.NotPdf("html")) == ("not_pdf", "permanent")  # a JobError is itself
    message = classify(KeyError("title"), "the outcome stage").message
    assert message == "KeyError: 'title' while the outcome stage"


def test_one_percentile_method_the_live_table_and_the_database_agree(tmp_path: Path) -> None:
    """The live table (a Window) and the summary (ranked by SQL) said 526 ms and 836 ms
    for the same six extractions; now one method, nearest rank half up, in both."""
    durations = [0.212, 0.526, 0.836, 0.301, 1.41, 0.64]
    window = Window(60.0)
    for d in durations:
        window.add(d)
    live = window.stats()
    store = open_store(tmp_path / "q.db")
    jobs.record_attempts(
        store,
        [Attempt(f"ext:p{i}", "r", "extract", 0.0, 0.0, d, "ok") for i, d in enumerate(durations)],
    )
    ranked = reads.stage_timings(store, run_id="r")["extract"]
    store.close()
    assert (live.p50, live.p95, live.max) == (
        ranked["duration_p50"], ranked["duration_p95"], ranked["duration_max"]
    )  # fmt: skip
    assert live.p50 == 0.64  # index (500 * 5 + 500) // 1000 = 3 of the sorted six
    for n in range(1, 60):
        values = sorted(float(v) for v in range(n))
        assert percentile(values, 0.5) == values[nearest_rank(500, n)]
        assert percentile(values, 1.0) == values[-1]


def test_the_whole_run_lag_is_a_fixed_size_histogram_within_two_percent() -> None:
    hist = LagHistogram()
    samples = [0.0001 * (1.0003**i) for i in range(20_000)]  # 0.1 ms .. 40 ms
    for s in samples:
        hist.add(s)
    assert len(hist._counts) == LagHistogram.BINS  # the same size after any number of samples
    exact = sorted(samples)
    for q in (500, 950, 990):
        true = exact[nearest_rank(q, len(exact))]
        assert true <= hist.quantile(q) <= true * 1.021
    assert hist.stats().max == exact[-1] and hist.stats().count == len(samples)


def test_rates_and_notices_hold_a_bounded_amount() -> None:
    now = [0.0]
    rate = Rate(60.0, clock=lambda: now[0])
    for _ in range(100_000):
        now[0] += 0.01
        rate.add(1.0)
    assert len(rate._events) <= 6_001  # one window's worth, however many were added
    assert rate.per_second() == pytest.approx(100.0, rel=0.01)
    printed: list[str] = []
    notices = Notices(on_new=printed.append)
    for i in range(10_000):
        notices.add(f"lease lost: ext:p{i}")
        notices.add("disk low", key="disk")
    assert len(notices._recent) == 100 and len(notices._said) == 1
    assert notices.recent(2) == ["lease lost: ext:p9998", "lease lost: ext:p9999"]
    assert printed.count("disk low") == 1 and len(printed) == 10_001

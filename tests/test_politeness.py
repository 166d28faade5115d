"""The politeness notice printed before a large run against arXiv (a pure function)."""

from __future__ import annotations

from rpa.config import ARXIV_RATE_LIMITS, Settings
from rpa.hosts.politeness import BULK_DATA_URL, politeness_notice, politeness_seconds
from rpa.rates import parse_rate_limits


def test_budget_is_full_windows_after_the_first_burst() -> None:
    assert politeness_seconds(0, 4, 1.0) == 0.0
    assert politeness_seconds(4, 4, 1.0) == 0.0  # one burst
    assert politeness_seconds(5, 4, 1.0) == 1.0
    assert politeness_seconds(1_000_000, 4, 1.0) == 249_999.0  # ~2.9 days
    assert politeness_seconds(10, 1, 3.0) == 27.0


def test_small_runs_and_other_hosts_get_no_notice() -> None:
    assert politeness_notice(100, "export.arxiv.org", ARXIV_RATE_LIMITS) is None
    assert politeness_notice(1_200, "export.arxiv.org", ARXIV_RATE_LIMITS) is None  # < 10 min
    assert politeness_notice(10_000_000, "127.0.0.1", ARXIV_RATE_LIMITS) is None
    assert politeness_notice(10_000_000, "mirror.example.org", "") is None
    assert politeness_notice(0, "arxiv.org", ARXIV_RATE_LIMITS) is None


def test_a_large_arxiv_run_is_told_its_eta() -> None:
    notice = politeness_notice(
        10_000, "export.arxiv.org", ARXIV_RATE_LIMITS, mailto="me@example.org"
    )
    assert notice is not None
    assert "10,000 papers from export.arxiv.org" in notice
    assert "at most 4 requests per 2 s" in notice
    assert "at least 1h 23m" in notice  # 2,499 full windows of 2 s after the first burst
    assert BULK_DATA_URL not in notice and "--mailto" not in notice


def test_a_very_large_run_is_pointed_to_bulk_data_and_mailto() -> None:
    notice = politeness_notice(1_000_000, "arxiv.org", ARXIV_RATE_LIMITS)
    assert notice is not None
    assert "at least 5d 18h" in notice  # 499,998 s
    assert BULK_DATA_URL in notice
    assert "--mailto" in notice


def test_a_custom_limit_is_what_the_eta_uses() -> None:
    notice = politeness_notice(7_201, "export.arxiv.org", "export.arxiv.org=1/1s", "a@b.c")
    assert notice is not None and "at least 2h 00m" in notice


def test_arxiv_without_a_limit_is_warned() -> None:
    notice = politeness_notice(50, "export.arxiv.org", "")
    assert notice is not None
    assert "no rate limit" in notice and "4 requests in a burst, then a 1 second pause" in notice


def test_arxiv_hosts_are_limited_by_default_and_others_are_not() -> None:
    limits = parse_rate_limits(Settings().rate_limits)
    # arXiv's "bursts of 4 requests per second with a 1 second sleep per burst", read
    # conservatively: no 2-second window holds more than 4 requests
    assert limits == {"arxiv.org": (4, 2.0), "export.arxiv.org": (4, 2.0)}
    assert "127.0.0.1" not in limits


def test_a_wait_past_today_is_said_with_its_date() -> None:
    """Retry-After: 99999999 (capped at a day) was said 'no request to it before 01:15:11',
    a time of tomorrow without its date."""
    import time

    from rpa.hosts.health import _clock_time

    now = time.time()
    assert len(_clock_time(now)) == len("12:00:00")
    tomorrow = _clock_time(now + 86_400)
    assert tomorrow.startswith(time.strftime("%Y-%m-%d ", time.localtime(now + 86_400)))

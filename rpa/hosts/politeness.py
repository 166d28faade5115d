"""What arXiv's politeness budget means for a run, said before the run starts.

arXiv allows robots "bursts of 4 requests per second with a 1 second sleep per burst", a contact
address in the User-Agent, and for large collections its bulk data instead
(https://info.arxiv.org/help/bulk_data.html). rpa reads that conservatively (4 requests in any
2 seconds: rpa.config.ARXIV_RATE_LIMITS), at which a million papers take nearly six days of
downloading however many workers run, so a user should hear that before
the run, not after.
"""

from __future__ import annotations

from rpa.rates import parse_rate_limits

__all__ = [
    "ARXIV_HOSTS",
    "BULK_DATA_URL",
    "LARGE_RUN_SECONDS",
    "VERY_LARGE_RUN_SECONDS",
    "politeness_notice",
    "politeness_seconds",
]

ARXIV_HOSTS = frozenset({"arxiv.org", "export.arxiv.org"})
BULK_DATA_URL = "https://info.arxiv.org/help/bulk_data.html"
#: a run whose downloads alone need longer than this gets the notice (10 min: 2,400 papers)
LARGE_RUN_SECONDS = 600.0
#: ... and past this, the advice to use arXiv's bulk data instead (1 day: ~345,600 papers)
VERY_LARGE_RUN_SECONDS = 24 * 3600.0


def _is_arxiv(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host in ARXIV_HOSTS or host.endswith(".arxiv.org")


def politeness_seconds(n_requests: int, count: int, period: float) -> float:
    """The least time `n_requests` take at most `count` per `period` seconds: full windows
    after the first burst (retries and redirects come on top)."""
    if n_requests <= 0:
        return 0.0
    return ((n_requests - 1) // count) * period


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)  # "at least": never round up
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{max(minutes, 1)} min"


def politeness_notice(n_jobs: int, host: str, rate_limits: str, mailto: str = "") -> str | None:
    """The note to print before a run of `n_jobs` downloads from `host`, or None.

    `rate_limits` is the --rate-limits spec in force. Only arXiv's hosts get a note: the ETA
    their limit implies when it is long (and arXiv's bulk data when it is very long), a warning
    when no limit is set for them, and a reminder of --mailto when the run is large.
    """
    if n_jobs <= 0 or not _is_arxiv(host):
        return None
    limit = parse_rate_limits(rate_limits).get(host.lower().rstrip("."))
    if limit is None:
        return (
            f"{n_jobs:,} papers from {host} with no rate limit for it: arXiv asks robots for "
            "4 requests in a burst, then a 1 second pause (--rate-limits "
            "'export.arxiv.org=4/2s')."
        )
    count, period = limit
    seconds = politeness_seconds(n_jobs, count, period)
    if seconds < LARGE_RUN_SECONDS:
        return None
    lines = [
        f"{n_jobs:,} papers from {host} at most {count} requests per {period:g} s "
        f"(arXiv's guidance): downloading alone will take at least {_duration(seconds)}, "
        "however many workers run."
    ]
    if seconds >= VERY_LARGE_RUN_SECONDS:
        lines.append(
            f"For a list this large, arXiv asks for its bulk data instead: {BULK_DATA_URL}"
        )
    if not mailto:
        lines.append("arXiv asks robots for a contact address: add --mailto you@example.org.")
    return "\n".join(lines)

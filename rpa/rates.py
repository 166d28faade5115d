"""Rates as the knobs write them: 'N/Ts' (at most N requests in any T seconds) and
'host=N/Ts,...' (one such budget a host)."""

from __future__ import annotations

from rpa.errors import ConfigError

__all__ = ["parse_rate", "parse_rate_limits"]


def parse_rate(rate: str, knob: str = "metadata_rate") -> tuple[int, float]:
    """'N/Ts' -> (N, T): at most N requests in any T seconds (`/Ts` may be left out: 1 s)."""
    count_text, _, period_text = rate.strip().partition("/")
    try:
        count = int(count_text)
        period = float(period_text.strip().rstrip("s") or 1) if period_text else 1.0
    except ValueError:
        raise ConfigError(f"{knob}: cannot read {rate!r} (expected N/Ts, e.g. 1/3s)") from None
    if count < 1 or period <= 0:
        raise ConfigError(f"{knob}: {rate!r} needs N >= 1 and T > 0")
    return count, period


def parse_rate_limits(spec: str) -> dict[str, tuple[int, float]]:
    """'host=N/Ts,...' -> {host: (N, T)}: at most N requests to host in any T seconds.

    `export.arxiv.org=4/1s` means at most 4 requests in any 1 second window; `/1s` may be left
    out. Hosts are matched exactly (lowercase).
    """
    limits: dict[str, tuple[int, float]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        host, equals, rate = part.partition("=")
        if not equals:
            raise ConfigError(
                f"rate_limits: cannot read {part!r} (expected host=N/Ts, e.g. a.org=4/1s)"
            )
        if not host.strip():
            raise ConfigError(f"rate_limits: {part!r} needs a host, N >= 1 and T > 0")
        try:
            limits[host.strip().lower()] = parse_rate(rate, "rate_limits")
        except ConfigError:
            raise ConfigError(
                f"rate_limits: cannot read {part!r} (expected host=N/Ts with N >= 1 and T > 0, "
                "e.g. a.org=4/1s)"
            ) from None
    return limits

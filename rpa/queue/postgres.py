"""The PostgreSQL backend (work in progress in this tree: not usable yet)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from rpa.errors import DatabaseError
from rpa.queue.store import Backend

__all__ = ["open_backend", "redact_url", "schema_version"]


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def open_backend(url: str, *, readonly: bool, create: bool) -> Backend:
    raise DatabaseError(f"PostgreSQL queues are not supported yet: {redact_url(url)}")


def schema_version(url: str) -> tuple[int, int]:
    raise DatabaseError(f"PostgreSQL queues are not supported yet: {redact_url(url)}")

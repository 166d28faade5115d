"""--db as the queue opens it: its accepted forms (`normalize_db`) and what is refused, said
with the forms (a mistyped URL, a path that names a folder)."""

from __future__ import annotations

import os
from typing import Any

from rpa.errors import ConfigError

__all__ = ["DB_FORMS", "normalize_db", "refuse_folder_db"]

#: what --db may be, said when it is something else
DB_FORMS = (
    "a SQLite file path, sqlite:///path (sqlite:////absolute/path), or a PostgreSQL URL "
    "postgresql://user@host/dbname (postgres:// and postgresql+psycopg:// are read as "
    "postgresql://)"
)


def refuse_folder_db(path: str, typed: Any, origin: str) -> None:
    """Refuse a --db that names a folder (`q.db/`: as a path, the queue was the file q.db)."""
    folders = ("", ".", "..")
    if os.path.basename(path) in folders:
        file = path.rstrip("/")
        named = os.path.basename(file) not in folders
        drop = f" (for the file {file}, leave out the '/')" if named else ""
        named_by = f"{origin} {typed}" if origin[:1] in "-$" else f"{origin}: db = {typed!r}"
        raise ConfigError(f"{named_by} names a folder, not a queue database file{drop}")


def normalize_db(db: str) -> str:
    """--db as the queue opens it: a SQLite path, or a `postgresql://` URL (DB_FORMS, any
    case). Any other scheme is refused: a mistyped URL must never become a SQLite file named
    after it (in a fleet, a private queue with its own politeness budget)."""
    scheme, sep, rest = db.partition("://")
    if not sep:
        return db
    kind = scheme.lower()
    if kind in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql://{rest}"
    if kind == "sqlite":
        path = rest[1:] if rest.startswith("/") else ""
        if path and "://" not in path:
            return path
        raise ConfigError(f"db: {db!r} names no SQLite file: use {DB_FORMS}")
    raise ConfigError(f"db: {db!r} is not a queue database rpa knows: use {DB_FORMS}")

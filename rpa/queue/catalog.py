"""What the queue keeps beside its jobs: the index of bulk PDF tars, the papers' metadata,
the queue's own settings (and the record of their changes), and the list of job ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from rpa.queue.model import TarMember
from rpa.queue.sql import chunks
from rpa.queue.store import QueueStore

__all__ = [
    "index_tar",
    "job_ids",
    "metadata_for",
    "queue_id",
    "queue_settings",
    "settings_changes",
    "store_metadata",
    "store_queue_settings",
    "tar_indexed",
    "tar_keys",
    "tar_keys_for",
    "tar_member",
]


def tar_indexed(store: QueueStore, path: str) -> tuple[int, float, str | None] | None:
    """(size, mtime, what was wrong with it) of a tar when it was indexed, None if it never
    was."""
    row = store.sql.one("SELECT size, mtime, error FROM tars WHERE path = ?", (path,))
    return None if row is None else (int(row["size"]), float(row["mtime"]), row["error"])


def index_tar(
    store: QueueStore, path: str, size: int, mtime: float, members: Sequence[TarMember],
    error: str | None, now: float,
) -> None:  # fmt: skip
    """Record a tar's paper members (a paper in two tars, or in two versions: the highest
    version's member wins)."""
    with store.sql.transaction():
        store.sql.execute("DELETE FROM tar_members WHERE tar = ?", (path,))
        store.sql.executemany(
            "INSERT INTO tar_members (base, version, tar, member, data_offset, size) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (base) DO UPDATE SET "
            "version = excluded.version, tar = excluded.tar, member = excluded.member, "
            "data_offset = excluded.data_offset, size = excluded.size "
            "WHERE coalesce(excluded.version, 0) >= coalesce(tar_members.version, 0)",
            [(m.base, m.version, m.tar, m.name, m.offset, m.size) for m in members],
        )
        store.sql.execute(
            "INSERT INTO tars (path, size, mtime, members, error, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
            "size = excluded.size, mtime = excluded.mtime, members = excluded.members, "
            "error = excluded.error, indexed_at = excluded.indexed_at",
            (path, size, mtime, len(members), error, now),
        )


def tar_member(store: QueueStore, base: str) -> TarMember | None:
    row = store.sql.one(
        "SELECT base, version, tar, member, data_offset, size FROM tar_members WHERE base = ?",
        (base,),
    )
    if row is None:
        return None
    return TarMember(row["base"], row["version"], row["tar"], row["member"],
                  int(row["data_offset"]), int(row["size"]))  # fmt: skip


def tar_keys(store: QueueStore, after: str, limit: int) -> list[str]:
    """Queue keys of indexed members (ID, with the version a member name gave), in order."""
    return [
        r["base"] + (f"v{r['version']}" if r["version"] else "")
        for r in store.sql.rows(
            "SELECT base, version FROM tar_members WHERE base > ? ORDER BY base LIMIT ?",
            (after, limit),
        )
    ]


def tar_keys_for(store: QueueStore, bases: Sequence[str]) -> dict[str, str]:
    """base -> the queue key of its member (with the version its name gave), for the
    bases the tars hold."""
    found: dict[str, str] = {}
    for part in chunks(list(bases), 500):
        marks = ", ".join("?" * len(part))
        for r in store.sql.rows(
            f"SELECT base, version FROM tar_members WHERE base IN ({marks})", tuple(part)
        ):
            found[r["base"]] = r["base"] + (f"v{r['version']}" if r["version"] else "")
    return found


def metadata_for(store: QueueStore, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored metadata (as JSON-able dicts) of the papers `ids` (without versions)."""
    found: dict[str, dict[str, Any]] = {}
    for part in chunks(list(ids), 500):
        marks = ", ".join("?" * len(part))
        for r in store.sql.rows(
            f"SELECT id, json FROM metadata WHERE id IN ({marks})", tuple(part)
        ):
            found[r["id"]] = json.loads(r["json"])
    return found


def store_metadata(store: QueueStore, papers: Sequence[dict[str, Any]], now: float) -> None:
    """Keep papers' metadata (each with its `id`, `status` and `source`)."""
    if not papers:
        return
    with store.sql.transaction():
        store.sql.executemany(
            "INSERT INTO metadata (id, status, source, json, fetched_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
            "source = excluded.source, json = excluded.json, "
            "fetched_at = excluded.fetched_at",
            [(p["id"], p["status"], p["source"], json.dumps(p, ensure_ascii=False), now)
             for p in papers],
        )  # fmt: skip


def job_ids(store: QueueStore, after: str, limit: int) -> list[str]:
    """Every job's id, in order, a page at a time."""
    return [
        r["id"]
        for r in store.sql.rows(
            "SELECT id FROM jobs WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        )
    ]


def queue_settings(store: QueueStore) -> dict[str, Any]:
    """The stored settings that belong to the queue (see model.QUEUE_SETTINGS)."""
    return {
        r["key"]: json.loads(r["value"])
        for r in store.sql.rows("SELECT key, value FROM queue_settings ORDER BY key")
    }


def store_queue_settings(
    store: QueueStore, values: dict[str, Any], run_id: str, now: float
) -> None:
    """Store `values`; a change of a stored value is recorded in `settings_changes`."""
    with store.sql.transaction():
        old = queue_settings(store)
        for key, value in values.items():
            text = json.dumps(value)
            if key in old and json.dumps(old[key]) == text:
                continue
            if key in old:
                store.sql.execute(
                    "INSERT INTO settings_changes (changed_at, key, old_value, new_value, "
                    "run_id) VALUES (?, ?, ?, ?, ?)",
                    (now, key, json.dumps(old[key]), text, run_id),
                )
            store.sql.execute(
                "INSERT INTO queue_settings (key, value, set_at, set_by) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "set_at = excluded.set_at, set_by = excluded.set_by",
                (key, text, now, run_id),
            )


def queue_id(store: QueueStore, now: float) -> str:
    """The queue's identity, made once (a random id, kept among its settings as `queue_id`;
    runs starting together on a queue that has none agree on the first one written): what
    marks its --out as its own (rpa.layout.check_owner)."""
    with store.sql.transaction():
        store.sql.execute(
            "INSERT INTO queue_settings (key, value, set_at, set_by) VALUES ('queue_id', ?, ?, "
            "'rpa') ON CONFLICT (key) DO NOTHING",
            (json.dumps(uuid.uuid4().hex), now),
        )
        row = store.sql.one("SELECT value FROM queue_settings WHERE key = 'queue_id'")
    assert row is not None
    return str(json.loads(row["value"]))


def settings_changes(store: QueueStore, limit: int = 10) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in store.sql.rows(
            "SELECT changed_at, key, old_value, new_value, run_id FROM settings_changes "
            "ORDER BY changed_at DESC LIMIT ?",
            (limit,),
        )
    ]

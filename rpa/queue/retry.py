"""`rpa retry`: failed jobs back in the queue, with fresh attempts.

A job goes back at the stage it failed at: a paper that failed extracting is not downloaded
again. Except a paper whose PDF could not be read (`invalid_pdf`): it goes back before its
download, which adopts rpa's copy under --out as before, unless the CLI removed it first
(`unreadable_downloads`) because it ends before its `%%EOF` (a download cut with no
Content-Length to tell): that one is fetched again. An adversary's trial: a retry
re-extracted the cut file, for ever. A whole PDF that is broken stays, and costs no request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rpa.queue.store import QueueStore

__all__ = ["REFETCH", "retry_failed", "unreadable_downloads"]

#: a failed job whose PDF could not be read: `rpa retry` fetches it again
REFETCH = "error_kind = 'invalid_pdf'"


def unreadable_downloads(store: QueueStore, kinds: Sequence[str] | None) -> list[str]:
    """The jobs whose PDF `retry_failed` (same `kinds`) sends to be fetched again: their
    files under --out are to be set aside first, or the new download would adopt them."""
    if kinds and "invalid_pdf" not in kinds:
        return []
    rows = store.sql.rows(f"SELECT id FROM jobs WHERE stage = 'failed' AND {REFETCH}")
    return [r["id"] for r in rows]


def retry_failed(store: QueueStore, kinds: Sequence[str] | None, now: float) -> dict[str, int]:
    """Put failed jobs (all, or of `kinds`) back in the queue with fresh attempts, at the
    stage they failed at (a paper that failed extracting is not downloaded again, unless its
    downloaded PDF could not be read: `REFETCH`). Their attempts stay in `attempts`. Returns
    how many per kind."""
    where = "stage = 'failed'"
    params: tuple[Any, ...] = ()
    if kinds:
        where += f" AND error_kind IN ({', '.join('?' * len(kinds))})"
        params = tuple(kinds)
    with store.sql.transaction():
        counts = {
            r["kind"] or "unknown": r["n"]
            for r in store.sql.rows(
                f"SELECT error_kind AS kind, count(*) AS n FROM jobs WHERE {where} "
                "GROUP BY error_kind",
                params,
            )
        }
        # a download that cannot be read is fetched again (its bytes may have been cut with
        # no Content-Length to tell): back before its download, its file set aside by the CLI
        store.sql.execute(
            "UPDATE jobs SET stage = 'queued', pdf_path = NULL, pdf_bytes = NULL, "
            "pdf_sha256 = NULL, failed_stage = NULL, attempts = 0, crashes = 0, "
            f"next_attempt_at = 0, done_at = NULL, updated_at = ? WHERE {where} AND {REFETCH}",
            (now, *params),
        )
        store.sql.execute(
            "UPDATE jobs SET stage = coalesce(failed_stage, CASE "
            "WHEN extract_json IS NOT NULL THEN 'extracted' "
            "WHEN pdf_path IS NOT NULL THEN 'downloaded' ELSE 'queued' END), "
            "failed_stage = NULL, attempts = 0, crashes = 0, next_attempt_at = 0, "
            f"done_at = NULL, updated_at = ? WHERE {where}",
            (now, *params),
        )
    return counts

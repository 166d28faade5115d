"""`rpa export`: stream the key-outcome records out of the results table.

Rows are read in pages by primary key (not one huge cursor held open), so a million results
export in constant memory while a run keeps writing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any, TextIO

from rpa.queue.store import QueueStore

__all__ = ["CSV_FIELDS", "iter_records", "write_csv", "write_jsonl"]

CSV_FIELDS = [
    "id", "arxiv_id", "version", "title", "page_count", "word_count", "references_count",
    "arxiv_stamp_id", "arxiv_stamp_version", "sha256", "bytes", "download_seconds",
    "extract_seconds", "headings", "abstract",
]  # fmt: skip
PAGE = 1000


def iter_records(store: QueueStore) -> Iterator[dict[str, Any]]:
    last = ""
    while True:
        rows = store.results_page(last, PAGE)
        if not rows:
            return
        for _, outcome_json in rows:
            yield json.loads(outcome_json)
        last = rows[-1][0]


def write_jsonl(store: QueueStore, out: TextIO) -> int:
    n = 0
    for record in iter_records(store):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        n += 1
    return n


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    stamp = record.get("arxiv_stamp") or {}
    pdf = record.get("pdf") or {}
    durations = record.get("durations") or {}
    return {
        "id": record["id"],
        "arxiv_id": record.get("arxiv_id"),
        "version": record.get("version"),
        "title": record.get("title"),
        "page_count": record.get("page_count"),
        "word_count": record.get("word_count"),
        "references_count": (record.get("references") or {}).get("count"),
        "arxiv_stamp_id": stamp.get("id"),
        "arxiv_stamp_version": stamp.get("version"),
        "sha256": pdf.get("sha256"),
        "bytes": pdf.get("bytes"),
        "download_seconds": durations.get("download"),
        "extract_seconds": durations.get("extract"),
        "headings": " | ".join(record.get("headings") or []),
        "abstract": record.get("abstract"),
    }


def write_csv(store: QueueStore, out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    n = 0
    for record in iter_records(store):
        writer.writerow(_flat(record))
        n += 1
    return n

"""`rpa export`'s formats: the key-outcome records it is given, as JSON lines, CSV or Parquet.

JSON lines carry each record whole; CSV and Parquet flatten it to one table (`FIELDS`), arXiv's
metadata as `meta_*` columns, each user stage's result keys as `stage_<name>_<key>` text
columns (`stages`: the (name, key) pairs the queue's results have). Lists (authors, headings,
references, categories) are Parquet lists of strings, and in CSV joined with " | ". Parquet
(pyarrow, the `rpa[parquet]` extra) is written a row group of `ROW_GROUP` records at a time,
every column typed. The records come from `rpa.report.export` (read lazily, page by page):
nothing here opens the queue.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, TextIO

from rpa.errors import ConfigError

__all__ = [
    "FIELDS",
    "FORMULA_STARTS",
    "ROW_GROUP",
    "flat",
    "neutralised",
    "write_csv",
    "write_jsonl",
    "write_parquet",
]

#: the columns of CSV and Parquet, and their kind
FIELDS: dict[str, str] = {
    "id": "str", "arxiv_id": "str", "version": "int", "title": "str", "authors": "list",
    "abstract": "str", "title_source": "str", "authors_source": "str", "abstract_source": "str",
    "page_count": "int", "word_count": "int", "references_count": "int", "headings": "list",
    "references": "list", "arxiv_stamp_id": "str", "arxiv_stamp_version": "int",
    "stamp_mismatch": "str", "sha256": "str", "bytes": "int", "pdf_path": "str",
    "text_path": "str", "download_seconds": "float", "extract_seconds": "float",
    "meta_status": "str", "meta_source": "str", "meta_version": "int",
    "meta_primary_category": "str", "meta_categories": "list", "meta_published": "str",
    "meta_updated": "str", "meta_doi": "str", "meta_journal_ref": "str", "meta_comment": "str",
    "meta_license": "str",
}  # fmt: skip
#: the user stages' (name, key) columns
Stages = Sequence[tuple[str, str]]
#: records per Parquet row group
ROW_GROUP = 1000


def write_jsonl(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    """Each record as one JSON line; returns how many."""
    n = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        n += 1
    return n


def _listed(values: Any) -> list[str]:
    return [str(v) for v in values or []]


def _joined(row: dict[str, Any]) -> dict[str, Any]:
    """A flat row with its lists joined by " | " (CSV has no lists; an empty one is empty)."""
    return {k: (" | ".join(v) or None) if FIELDS.get(k) == "list" else v for k, v in row.items()}


def _cell(value: Any) -> str | None:
    """A stage's value as text: lists joined with " | ", the rest as JSON (strings as they are)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return " | ".join(v if isinstance(v, str) else json.dumps(v) for v in value)
    return json.dumps(value, ensure_ascii=False)


def _stage_cells(record: dict[str, Any], stages: Stages) -> dict[str, Any]:
    results = record.get("stages") or {}
    return {
        f"stage_{name}_{key}": _cell((results.get(name) or {}).get(key)) for name, key in stages
    }


def flat(record: dict[str, Any], stages: Stages = ()) -> dict[str, Any]:
    """One record as the flat row of FIELDS."""
    stamp = record.get("arxiv_stamp") or {}
    pdf = record.get("pdf") or {}
    durations = record.get("durations") or {}
    sources = record.get("sources") or {}
    meta = record.get("metadata") or {}
    categories = meta.get("categories") or []
    references = record.get("references") or {}
    return {
        "id": record["id"],
        "arxiv_id": record.get("arxiv_id"),
        "version": record.get("version"),
        "title": record.get("title"),
        "authors": _listed(record.get("authors")),
        "abstract": record.get("abstract"),
        "title_source": sources.get("title"),
        "authors_source": sources.get("authors"),
        "abstract_source": sources.get("abstract"),
        "page_count": record.get("page_count"),
        "word_count": record.get("word_count"),
        "references_count": references.get("count"),
        "headings": _listed(record.get("headings")),
        # every reference (records before `items` kept only the first five)
        "references": _listed(references.get("items", references.get("first"))),
        "arxiv_stamp_id": stamp.get("id"),
        "arxiv_stamp_version": stamp.get("version"),
        "stamp_mismatch": (record.get("checks") or {}).get("stamp_mismatch"),
        "sha256": pdf.get("sha256"),
        "bytes": pdf.get("bytes"),
        "pdf_path": pdf.get("path"),
        "text_path": record.get("text_path"),
        "download_seconds": durations.get("download"),
        "extract_seconds": durations.get("extract"),
        "meta_status": meta.get("status"),
        "meta_source": meta.get("source"),
        "meta_version": meta.get("version"),
        "meta_primary_category": categories[0] if categories else None,
        "meta_categories": _listed(categories),
        "meta_published": meta.get("published"),
        "meta_updated": meta.get("updated"),
        "meta_doi": meta.get("doi"),
        "meta_journal_ref": meta.get("journal_ref"),
        "meta_comment": meta.get("comment"),
        "meta_license": meta.get("license"),
    } | _stage_cells(record, stages)


#: what a spreadsheet reads as the start of a formula (OWASP's list for CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with every text cell that a spreadsheet would run as a formula made text: a `'`
    before it (OWASP's rule). Titles, authors and abstracts come from PDFs and from servers
    rpa does not control: `=HYPERLINK(...)` or `=cmd|' /C calc'!A0` must not run when the
    CSV is opened."""
    return {
        k: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v
        for k, v in row.items()
    }


def write_csv(
    records: Iterable[dict[str, Any]], out: TextIO, *, raw: bool = False, stages: Stages = ()
) -> int:
    """The flat rows as CSV with a header, formula cells neutralised unless `raw`; returns
    how many."""
    names = [f"stage_{name}_{key}" for name, key in stages]
    writer = csv.DictWriter(out, fieldnames=[*FIELDS, *names])
    writer.writeheader()
    n = 0
    for record in records:
        row = _joined(flat(record, stages))
        writer.writerow(row if raw else neutralised(row))
        n += 1
    return n


def write_parquet(
    records: Iterable[dict[str, Any]], path: Path | IO[bytes], stages: Stages = ()
) -> int:
    """The flat table as Parquet at `path` or into a binary file (pyarrow; a row group every
    ROW_GROUP records); returns how many."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            "--format parquet needs pyarrow: pip install 'rpa[parquet]' (./run.sh installs it)"
        ) from None
    kinds = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(),
             "list": pa.list_(pa.string())}  # fmt: skip
    columns = [*FIELDS.items(), *((f"stage_{n}_{k}", "str") for n, k in stages)]
    schema = pa.schema([(name, kinds[kind]) for name, kind in columns])
    n = 0
    with pq.ParquetWriter(path, schema) as writer:
        page: list[dict[str, Any]] = []
        for record in records:
            page.append(flat(record, stages))
            if len(page) >= ROW_GROUP:
                writer.write_table(pa.Table.from_pylist(page, schema=schema))
                n += len(page)
                page = []
        if page or n == 0:
            writer.write_table(pa.Table.from_pylist(page, schema=schema))
            n += len(page)
    return n

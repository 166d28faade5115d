"""The key-outcome record: what it holds, how it is built from a job, how it is written.

One JSON object per paper, at OUT/outcome/<shard>/<name>.json (rpa.layout), also stored in the
queue's results (rpa.queue.jobs.complete) and exported from there:

    id, arxiv_id, version        the job's ID; the arXiv ID without version (None for ext:
                                 IDs), the version asked for (None: the latest)
    title, authors, abstract     arXiv's metadata when it has them, else the text's guesses
    sources                      where each of those came from: the metadata's source
                                 ("arxiv-api", "metadata-file"), "text" or "none";
                                 "headings" is always "text"
    metadata                     the paper's metadata as stored (None without it)
    from_text                    the text's guesses (title, authors, abstract,
                                 abstract_truncated), kept whichever was chosen
    headings, page_count, word_count, chars, references, arxiv_stamp, page_errors
                                 from the extraction (rpa.extract.pdf, rpa.extract.outcome)
    checks                       stamp_mismatch: the ID the PDF's arXiv stamp names when it
                                 is another paper than the job's ID (its metadata may not be
                                 this PDF's), else None
    pdf                          sha256, bytes, url (the final URL or tar member), http_status,
                                 path (a file, or tar:OFFSET:SIZE:PATH)
    text_path                    the extracted text
    durations                    download and extract seconds
    run_id                       the run that wrote it

The JSON is indented by one, UTF-8 (not ASCII-escaped), and written atomically with the run's
id in its temporary name (rpa.files). A run writes it first under a private name and renames it
into place only once its fenced `complete` committed (rpa.run.publish), so that a worker whose
lease another run took never replaces the record that run wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rpa.extract.outcome.stamp import stamp_mismatch
from rpa.files import atomic_write
from rpa.ids import parse_id
from rpa.queue.model import Job

__all__ = ["outcome_record", "write_record"]


def outcome_record(job: Job, run_id: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The key-outcome record of an extracted `job`. Title, authors and abstract are arXiv's
    when its metadata has them, else the text's guesses; `sources` says which, field by
    field, and `from_text` keeps the guesses either way."""
    paper = parse_id(job.id)
    extract = job.extract or {}
    outcome: dict[str, Any] = dict(extract.get("outcome") or {})
    guessed = {
        "title": outcome.get("title"),
        "authors": list(outcome.get("authors") or []),
        "abstract": outcome.get("abstract"),
    }
    known = metadata if metadata and metadata.get("status") in ("found", "withdrawn") else {}
    best: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for field, guess in guessed.items():
        value = known.get(field)
        if value:
            best[field], sources[field] = value, str(known.get("source"))
        else:
            best[field], sources[field] = guess, "text" if guess else "none"
    sources["headings"] = "text"
    return {
        "id": job.id,
        "arxiv_id": paper.base if paper.is_arxiv else None,
        "version": paper.version,
        "title": best["title"],
        "authors": best["authors"],
        "abstract": best["abstract"],
        "sources": sources,
        "metadata": metadata,
        # the text's guesses; its abstract is cut at MAX_ABSTRACT_CHARS (then flagged)
        "from_text": {**guessed, "abstract_truncated": bool(outcome.get("abstract_truncated"))},
        "headings": outcome.get("headings", []),
        "page_count": extract.get("pages"),
        "word_count": outcome.get("word_count"),
        "chars": extract.get("chars"),
        "references": outcome.get("references", {"count": 0, "first": [], "items": []}),
        "arxiv_stamp": outcome.get("arxiv_stamp"),
        "checks": {"stamp_mismatch": stamp_mismatch(outcome.get("arxiv_stamp"), job.id)},
        "page_errors": extract.get("page_errors", []),
        "pdf": {
            "sha256": job.pdf_sha256,
            "bytes": job.pdf_bytes,
            "url": job.final_url,
            "http_status": job.http_status,
            "path": job.pdf_path,
        },
        "text_path": extract.get("text_path"),
        "durations": {
            "download": round(job.download_seconds or 0.0, 4),
            "extract": round(job.extract_seconds or 0.0, 4),
        },
        "run_id": run_id,
    }


def write_record(
    path: Path, record: dict[str, Any], *, run_id: str = "", sync: bool = True
) -> None:
    """Write `record` to `path` as JSON, whole or not at all (rpa.files.atomic_write; `sync`
    False: not fsynced). Blocking: the I/O pool's work, the JSON encoding included."""
    text = json.dumps(record, ensure_ascii=False, indent=1)
    atomic_write(path, text, run_id=run_id, sync=sync)

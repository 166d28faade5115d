"""arXiv's metadata file (its OAI snapshot) as an offline source (`--metadata-file PATH`).

arXiv publishes its metadata, CC0, as one JSON object per line (through Kaggle: "arXiv
Dataset", `arxiv-metadata-oai-snapshot.json`, several GB), each with `id`, `submitter`,
`authors`, `title`, `comments`, `journal-ref`, `doi`, `report-no`, `categories` (space
separated, the primary first), `license`, `abstract`, `versions` ([{"version": "v1",
"created": ...}]), `update_date` and `authors_parsed` ([[last, first, suffix]]). The file is
streamed a line at a time, and only the lines of wanted papers are parsed: it is never loaded
whole. A `.gz` file is read as it is.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from rpa.sources.arxiv_api import PaperMetadata

__all__ = ["iter_metadata_file", "metadata_file_paper"]

_ID = re.compile(rb'"id"\s*:\s*"([^"]+)"')


def _iso(value: str | None) -> str | None:
    """An RFC 2822 date ("Mon, 2 Apr 2007 19:18:42 GMT") as ISO 8601, else as it is."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, IndexError, OverflowError):
        return value


def _authors(data: dict[str, Any]) -> list[str]:
    parsed = data.get("authors_parsed")
    if isinstance(parsed, list) and parsed:
        names = []
        for parts in parsed:
            if isinstance(parts, list) and parts:
                last, first = str(parts[0]).strip(), str(parts[1]).strip() if len(parts) > 1 else ""
                suffix = str(parts[2]).strip() if len(parts) > 2 else ""
                names.append(" ".join(p for p in (first, last, suffix) if p))
        return [n for n in names if n]
    text = str(data.get("authors") or "")
    return [a.strip() for a in re.split(r",| and ", text) if a.strip()]


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def metadata_file_paper(data: dict[str, Any]) -> PaperMetadata:
    """One line of the file as PaperMetadata."""
    versions = data.get("versions") or []
    comment = _clean(data.get("comments"))
    withdrawn = bool(comment and "withdrawn" in comment.lower())
    latest = versions[-1] if versions else {}
    return PaperMetadata(
        id=str(data["id"]),
        status="withdrawn" if withdrawn else "found",
        source="metadata-file",
        version=len(versions) or None,
        title=_clean(data.get("title")),
        authors=_authors(data),
        abstract=_clean(data.get("abstract")),
        categories=str(data.get("categories") or "").split(),
        published=_iso(versions[0].get("created")) if versions else None,
        updated=_iso(latest.get("created")) or _clean(data.get("update_date")),
        doi=_clean(data.get("doi")),
        journal_ref=_clean(data.get("journal-ref")),
        comment=comment,
        license=_clean(data.get("license")),
    )


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def iter_metadata_file(path: Path, wanted: Callable[[str], bool]) -> Iterator[PaperMetadata]:
    """The papers of the metadata file at `path` that `wanted(id)` accepts, streamed: a line's JSON
    is parsed only when its id is wanted. A line that is not valid JSON is skipped."""
    with _open(path) as fh:
        for line in fh:
            m = _ID.search(line, 0, 200)
            if m is None or not wanted(m.group(1).decode("utf-8", "replace")):
                continue
            try:
                yield metadata_file_paper(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue

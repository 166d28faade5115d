"""Where files go under --out, and the stages' file work (run in the I/O pool, not the loop).

    OUT/pdf/<shard>/<name>.pdf        downloaded PDFs (final names hold only whole, checked files)
    OUT/text/<shard>/<name>.txt       extracted text with [PAGE n] markers
    OUT/outcome/<shard>/<name>.json   the key-outcome record

<name> is `ids.storage_name(key)`, a checked single path component, so no input can write
outside OUT; <shard> (the yymm of the ID, or archive_yymm, or "ext") keeps folders small.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from rpa.download import sniff_pdf
from rpa.ids import parse_id, storage_name, url_for
from rpa.jobs import Job

__all__ = ["Layout"]

_NEW = re.compile(r"^(\d{4})\.")
_OLD = re.compile(r"^([a-z-]+)(?:\.[A-Za-z-]+)?/(\d{4})")


def shard(key: str) -> str:
    if m := _NEW.match(key):
        return m.group(1)
    if m := _OLD.match(key):
        return f"{m.group(1)}_{m.group(2)}"
    return "ext"


def _is_temporary(name: str) -> bool:
    """Temporary names: downloads and outcomes (`.tmp-*`), texts written by an extraction
    process (`.rpa-*.tmp`). No final name starts with a dot."""
    return name.startswith(".tmp-") or (name.startswith(".rpa-") and name.endswith(".tmp"))


def _sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class Layout:
    """Paths and file operations under the output folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / shard(key) / f"{storage_name(key)}{suffix}"

    def pdf_path(self, key: str) -> Path:
        return self._path("pdf", key, ".pdf")

    def text_path(self, key: str) -> Path:
        return self._path("text", key, ".txt")

    def outcome_path(self, key: str) -> Path:
        return self._path("outcome", key, ".json")

    @staticmethod
    def url(template: str, key: str) -> str:
        return url_for(template, key)

    def prepare(self) -> int:
        """Create the folders and delete temporary files left by an interrupted run."""
        removed = 0
        for kind in ("pdf", "text", "outcome"):
            base = self.root / kind
            base.mkdir(parents=True, exist_ok=True)
            for folder in (base, *(p for p in base.iterdir() if p.is_dir())):
                for entry in os.scandir(folder):
                    if _is_temporary(entry.name) and entry.is_file():
                        os.unlink(entry.path)
                        removed += 1
        return removed

    @staticmethod
    def adopt_pdf(dest: Path) -> tuple[int, str] | None:
        """(size, sha256) of a complete PDF already at its final name, else None."""
        try:
            with dest.open("rb") as fh:
                head = fh.read(1024)
        except FileNotFoundError:
            return None
        if not sniff_pdf(head):
            dest.unlink(missing_ok=True)
            return None
        return _sha256_file(dest)

    @staticmethod
    def verify_pdf(path: str, size: int | None, sha256: str | None) -> bool:
        """Is the checkpointed PDF still there, with the recorded size and sha256?"""
        p = Path(path)
        try:
            if size is not None and p.stat().st_size != size:
                return False
        except FileNotFoundError:
            return False
        return sha256 is None or _sha256_file(p)[1] == sha256

    @staticmethod
    def write_json(path: Path, record: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{path.name}"
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(record, fh, ensure_ascii=False, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @staticmethod
    def outcome_record(job: Job, run_id: str) -> dict[str, Any]:
        paper = parse_id(job.id)
        extract = job.extract or {}
        outcome: dict[str, Any] = dict(extract.get("outcome") or {})
        return {
            "id": job.id,
            "arxiv_id": paper.base if paper.is_arxiv else None,
            "version": paper.version,
            "title": outcome.get("title"),
            "abstract": outcome.get("abstract"),
            "headings": outcome.get("headings", []),
            "page_count": extract.get("pages"),
            "word_count": outcome.get("word_count"),
            "chars": extract.get("chars"),
            "references": outcome.get("references", {"count": 0, "first": []}),
            "arxiv_stamp": outcome.get("arxiv_stamp"),
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

    @staticmethod
    def result_row(record: dict[str, Any]) -> dict[str, Any]:
        stamp = record.get("arxiv_stamp")
        return {
            "title": record.get("title"),
            "pages": record.get("page_count"),
            "words": record.get("word_count"),
            "references": (record.get("references") or {}).get("count"),
            "arxiv_stamp": json.dumps(stamp) if stamp else None,
            "sha256": record["pdf"]["sha256"],
            "bytes": record["pdf"]["bytes"],
            "outcome_json": json.dumps(record, ensure_ascii=False),
        }

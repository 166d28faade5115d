"""arXiv's export API (https://info.arxiv.org/help/api/): a paper's metadata, in batches.

`GET /api/query?id_list=ID,ID,...&max_results=N` answers an Atom feed with one `<entry>` per
paper found. What arXiv really answers, and how it reads here (real responses, recorded by the
arxiv.py client's tests, are in ../shared/corpus/arxiv-api):

- an ID that does not exist is simply absent from the feed (a partial batch: the rest come);
- a feed of none is an empty feed, status 200;
- a malformed ID is status 400 with one error entry (`<id>` an `.../api/errors#...` URL);
- an entry's `<id>` is `http://arxiv.org/abs/<id>v<N>`: the latest version, whichever was asked;
- old-style IDs keep their slash (`astro-ph/0601001v1`).

arXiv's API terms ask for at most one request every three seconds, one connection at a time,
counted over all of a user's machines: the run's metadata gate does that (rpa.run.metadata).
The metadata is CC0.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode

__all__ = ["ARXIV_API", "Feed", "PaperMetadata", "parse_feed", "query_url"]

ARXIV_API = "https://export.arxiv.org/api/query"
_ATOM = "{http://www.w3.org/2005/Atom}"
_ARXIV = "{http://arxiv.org/schemas/atom}"
_ABS = re.compile(r"arxiv\.org/abs/(?P<id>.+?)(?:v(?P<version>\d+))?$")
_BAD_ID = re.compile(r"incorrect id format for (?P<id>\S+)")


@dataclass(frozen=True, slots=True)
class PaperMetadata:
    """What arXiv knows of a paper (CC0), and where it came from."""

    id: str  # without version
    status: str  # found | withdrawn | not_found | error
    source: str  # arxiv-api | metadata-file
    version: int | None = None  # the latest version
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    abstract: str | None = None
    categories: list[str] = field(default_factory=list)  # the primary first
    published: str | None = None  # ISO 8601, the first version's
    updated: str | None = None  # ISO 8601, the latest version's
    doi: str | None = None
    journal_ref: str | None = None
    comment: str | None = None
    license: str | None = None
    reason: str | None = None  # why it is not_found or error

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PaperMetadata:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Feed:
    found: dict[str, PaperMetadata]  # id (without version) -> metadata
    bad_ids: list[str]  # IDs arXiv called malformed (status 400)
    errors: list[str]  # other error entries


def query_url(base_url: str, ids: Sequence[str]) -> str:
    """The query for a batch: `id_list` of IDs without versions, all of them in one page."""
    params = {"id_list": ",".join(ids), "max_results": str(len(ids)), "start": "0"}
    return f"{base_url}?{urlencode(params, safe=',/')}"


def _text(element: ET.Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    text = " ".join(element.text.split())
    return text or None


def _withdrawn(comment: str | None, abstract: str | None) -> bool:
    words = f"{comment or ''} {abstract or ''}".lower()
    return "withdrawn" in words and ("paper has been withdrawn" in words or
                                     words.strip().startswith("withdrawn"))  # fmt: skip


def _entry(entry: ET.Element) -> PaperMetadata | None:
    raw = entry.findtext(f"{_ATOM}id") or ""
    m = _ABS.search(raw.strip())
    if m is None:
        return None
    primary = entry.find(f"{_ARXIV}primary_category")
    categories = [primary.get("term", "")] if primary is not None else []
    for category in entry.findall(f"{_ATOM}category"):
        term = category.get("term", "")
        if term and term not in categories:
            categories.append(term)
    comment = _text(entry.find(f"{_ARXIV}comment"))
    abstract = _text(entry.find(f"{_ATOM}summary"))
    version = m.group("version")
    return PaperMetadata(
        id=m.group("id"),
        status="withdrawn" if _withdrawn(comment, abstract) else "found",
        source="arxiv-api",
        version=int(version) if version else None,
        title=_text(entry.find(f"{_ATOM}title")),
        authors=[
            name
            for author in entry.findall(f"{_ATOM}author")
            if (name := _text(author.find(f"{_ATOM}name")))
        ],
        abstract=abstract,
        categories=[c for c in categories if c],
        published=_text(entry.find(f"{_ATOM}published")),
        updated=_text(entry.find(f"{_ATOM}updated")),
        doi=_text(entry.find(f"{_ARXIV}doi")),
        journal_ref=_text(entry.find(f"{_ARXIV}journal_ref")),
        comment=comment,
    )


def parse_feed(body: bytes) -> Feed:
    """Read an API answer with a real XML parser. Raises ValueError if it is no Atom feed."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"the API answered something that is not XML: {exc}") from None
    if root.tag != f"{_ATOM}feed":
        raise ValueError(f"the API answered XML that is not an Atom feed ({root.tag})")
    found: dict[str, PaperMetadata] = {}
    bad: list[str] = []
    errors: list[str] = []
    for entry in root.findall(f"{_ATOM}entry"):
        raw = entry.findtext(f"{_ATOM}id") or ""
        if "/api/errors" in raw:
            summary = _text(entry.find(f"{_ATOM}summary")) or raw
            if m := _BAD_ID.search(summary):
                bad.append(m.group("id"))
            else:
                errors.append(summary)
            continue
        paper = _entry(entry)
        if paper is not None:
            found[paper.id] = paper
    return Feed(found, bad, errors)

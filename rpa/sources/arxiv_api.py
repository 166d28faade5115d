"""arXiv's export API (https://info.arxiv.org/help/api/): a paper's metadata, in batches.

`GET /api/query?id_list=ID,ID,...&max_results=N` answers an Atom feed with one `<entry>` per
paper found. What arXiv really answers, and how it reads here (real responses, recorded by the
arxiv.py client's tests, are in ../shared/corpus/arxiv-api):

- an ID that does not exist is simply absent from the feed (a partial batch: the rest come,
  and `opensearch:totalResults` counts the entries that came);
- a feed of none is an empty feed, status 200, `totalResults` 0: that is all a genuine "no
  such paper" looks like. arXiv's API also answers empty pages now and then for papers it has,
  so one empty answer proves nothing (`judge`);
- a malformed ID is status 400 with one error entry (`<id>` an `.../api/errors#...` URL);
- an entry's `<id>` is `http://arxiv.org/abs/<id>v<N>`: the latest version, whichever was asked;
- old-style IDs keep their slash (`astro-ph/0601001v1`), without a subject class.

The answer is read as it comes (FeedReader: one entry in memory at a time, no DTD); `judge`
says what it means for each ID asked. arXiv's API terms ask for at most one request every
three seconds, one connection at a time, counted over all of a user's machines: the run's
metadata gate does that (rpa.run.metadata). The metadata is CC0.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from rpa.errors import InvalidIdError
from rpa.ids import parse_id

__all__ = [
    "ARXIV_API", "Feed", "FeedReader", "PaperMetadata", "Verdict", "judge", "match_key",
    "parse_feed", "query_url",
]  # fmt: skip

ARXIV_API = "https://export.arxiv.org/api/query"
_ATOM = "{http://www.w3.org/2005/Atom}"
_ARXIV = "{http://arxiv.org/schemas/atom}"
_OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
_ABS = re.compile(r"arxiv\.org/abs/(?P<id>.+?)(?:v(?P<version>[0-9]+))?$")
_SUBJECT_CLASS = re.compile(r"^(?P<archive>[^./]+)\.[^/]+/")
_BAD_ID = re.compile(r"incorrect id format for (?P<id>\S+)")


@dataclass(frozen=True, slots=True)
class PaperMetadata:
    """What arXiv knows of a paper (CC0), and where it came from."""

    id: str  # without version
    status: str  # found | withdrawn | not_found | unavailable (not stored) | error
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
    """What one answer said. `found` holds only the entries about IDs that were asked (all of
    them when nothing was named); entries about other IDs are only counted, so the parse keeps
    one entry at a time and at most a batch of answers, whatever the feed's size."""

    found: dict[str, PaperMetadata]  # id (without version) -> metadata
    bad_ids: list[str]  # IDs arXiv called malformed (status 400)
    errors: list[str]  # other error entries
    entries: int = 0  # every <entry> of the feed, error entries included
    foreign: list[str] = field(default_factory=list)  # the first IDs of entries not asked
    foreign_count: int = 0  # entries about IDs not asked (or about no readable ID)
    total: int | None = None  # opensearch:totalResults, when the feed says it


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
    try:
        parse_id(m.group("id"))
    except InvalidIdError:
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


class _Target:
    """The parser's target: the feed's own elements are skipped (but its totalResults), each
    `<entry>` is built alone, read, and dropped. A DTD is refused where it starts, so no entity
    can be declared (billion laughs, external entities); expat refuses undeclared ones."""

    def __init__(self, wanted: dict[str, str] | None) -> None:
        self.wanted = wanted  # match_key -> the ID as asked
        self.depth = 0
        self.entry: ET.TreeBuilder | None = None
        self.total: list[str] | None = None
        self.found: dict[str, PaperMetadata] = {}
        self.bad: list[str] = []
        self.errors: list[str] = []
        self.entries = 0
        self.foreign: list[str] = []
        self.foreign_count = 0
        self.total_text = ""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise ValueError("the API answered XML with a DTD (refused: entities are not read)")

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1 and tag != f"{_ATOM}feed":
            raise ValueError(f"the API answered XML that is not an Atom feed ({tag[:80]})")
        if self.entry is None and self.depth == 2 and tag == f"{_ATOM}entry":
            self.entry = ET.TreeBuilder()
        if self.entry is not None:
            self.entry.start(tag, attrib)
        elif self.depth == 2 and tag == f"{_OPENSEARCH}totalResults":
            self.total = []

    def data(self, text: str) -> None:
        if self.entry is not None:
            self.entry.data(text)
        elif self.total is not None and len(self.total) < 64:
            self.total.append(text)

    def end(self, tag: str) -> None:
        self.depth -= 1
        if self.entry is not None:
            self.entry.end(tag)
            if self.depth == 1:
                element = self.entry.close()
                self.entry = None
                self._read(element)
        elif self.total is not None:
            self.total_text = "".join(self.total).strip()[:32]
            self.total = None

    def close(self) -> None:
        return None

    def _read(self, entry: ET.Element) -> None:
        self.entries += 1
        raw = entry.findtext(f"{_ATOM}id") or ""
        if "/api/errors" in raw:
            summary = _text(entry.find(f"{_ATOM}summary")) or raw
            if m := _BAD_ID.search(summary):
                self.bad.append(m.group("id")[:100])
            elif len(self.errors) < 10:
                self.errors.append(summary[:300])
            return
        paper = _entry(entry)
        if paper is not None:
            key = match_key(paper.id)
            asked = paper.id if self.wanted is None else self.wanted.get(key)
            if asked is not None:
                self.found.setdefault(asked, replace(paper, id=asked))
                return
        self.foreign_count += 1
        if len(self.foreign) < 5:
            self.foreign.append(paper.id if paper is not None else raw.strip()[:100] or "?")


class FeedReader:
    """A bounded, streaming read of one API answer: `feed()` its bytes as they come, then
    `close()` for the Feed. Memory: one entry and the asked IDs' answers, not the feed.
    Blocking (expat): the metadata stage calls it in its I/O pool. Raises ValueError for an
    answer that is not an Atom feed (not XML, another root, a DTD)."""

    def __init__(self, wanted: Sequence[str] | None = None) -> None:
        keys = {match_key(i): i for i in wanted} if wanted is not None else None
        self._target = _Target(keys)
        self._parser = ET.XMLParser(target=self._target)

    def feed(self, data: bytes) -> None:
        try:
            self._parser.feed(data)
        except ET.ParseError as exc:
            raise ValueError(f"the API answered something that is not XML: {exc}") from None

    def close(self, data: bytes = b"") -> Feed:
        self.feed(data)
        try:
            self._parser.close()
        except ET.ParseError as exc:
            raise ValueError(f"the API answered something that is not XML: {exc}") from None
        t = self._target
        total = int(t.total_text) if t.total_text.isascii() and t.total_text.isdigit() else None
        return Feed(t.found, t.bad, t.errors, t.entries, t.foreign, t.foreign_count, total)


def parse_feed(body: bytes, wanted: Sequence[str] | None = None) -> Feed:
    """Read a whole API answer (see FeedReader). Raises ValueError if it is no Atom feed."""
    return FeedReader(wanted).close(body)


def match_key(base: str) -> str:
    """How arXiv names a paper in its answers: an old-style ID without its subject class
    (`math.AG/0101001` is answered as `math/0101001`); versions are already gone."""
    return _SUBJECT_CLASS.sub(r"\g<archive>/", base)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one answer means for each ID asked."""

    found: dict[str, PaperMetadata]  # the ID as asked -> its entry: kept
    absent: list[str]  # left out of an answer that can be believed: a sign of no such paper
    refused: list[str]  # not answered (an empty page, an answer about others): ask again
    bad: list[str]  # IDs arXiv called malformed
    again: list[str]  # not looked at (a 400 is about the malformed ID only): ask again now
    why: str = ""  # why `refused`, in words for the screen and the records


def judge(asked: Sequence[str], feed: Feed, status: int = 200) -> Verdict:
    """What `feed` (the answer to `asked`, IDs without versions) says of each asked ID.

    An ID left out counts as absent only when the answer can be believed: no entry about an
    ID not asked, no error entry, `totalResults` (when given) equal to the entries that came,
    and either some entry came or the ID was asked alone. An empty page for several IDs, an
    answer about other IDs, or one that counts more results than it holds answers nothing
    for the IDs it leaves out: they are `refused`. The caller asks absent IDs again alone and
    stores `not_found` only when that answer leaves them out too."""
    found = {i: feed.found[i] for i in asked if i in feed.found}
    bad = [i for i in asked if i in feed.bad_ids]
    missing = [i for i in asked if i not in found and i not in bad]
    if status == 400 and bad:
        return Verdict(found, [], [], bad, missing)
    if not missing:
        return Verdict(found, [], [], bad, [])
    why = ""
    if feed.foreign_count:
        why = (f"answered about other IDs ({feed.foreign_count} entries, "
               f"{', '.join(feed.foreign[:3])}...) for {len(missing)} IDs")  # fmt: skip
    elif feed.errors:
        why = f"answered an error ({feed.errors[0]}) for {len(missing)} IDs"
    elif feed.total is not None and feed.total != feed.entries:
        why = (f"answered {feed.entries} entries where its feed counts {feed.total}, "
               f"for {len(missing)} IDs")  # fmt: skip
    elif feed.entries == 0 and len(asked) > 1:
        why = f"answered an empty page for {len(asked)} IDs"
    if why:
        return Verdict(found, [], missing, bad, [], why)
    return Verdict(found, missing, [], bad, [])

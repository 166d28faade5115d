"""arXiv identifiers: parsing, canonical queue keys, safe file names and ID-list streaming.

Two ID schemes exist (https://info.arxiv.org/help/arxiv_identifier.html):

* new style, from April 2007: ``YYMM.NNNN`` (0704-1412) or ``YYMM.NNNNN`` (from 1501),
  optionally ``vN``;
* old style, August 1991 to March 2007: ``archive[.SC]/YYMMNNN``, optionally ``vN``.

Besides those, ``ext:<slug>`` names a paper that is not on arXiv (mirrors of other
collections, the bundled demo papers). Everything else is rejected with a reason that
says what is wrong, so ``rpa add`` can print it next to the line number.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rpa.config import validate_pdf_url
from rpa.errors import InputError, InvalidIdError

__all__ = [
    "MAX_ID_LENGTH",
    "OLD_STYLE_ARCHIVES",
    "IdLine",
    "KeyBatch",
    "PaperId",
    "iter_id_batches",
    "iter_id_lines",
    "iter_key_batches",
    "parse_id",
    "storage_name",
    "url_for",
    "validate_url_template",
]

#: Longest accepted input (after trimming). The longest real form, a URL to an old-style ID
#: with a subject class and version, is under 80 characters; an ext slug is at most 100.
MAX_ID_LENGTH = 256

#: Archives that had old-style identifiers (the ones arXiv still resolves).
OLD_STYLE_ARCHIVES = frozenset(
    {
        "acc-phys", "adap-org", "alg-geom", "ao-sci", "astro-ph", "atom-ph", "bayes-an",
        "chao-dyn", "chem-ph", "cmp-lg", "comp-gas", "cond-mat", "cs", "dg-ga", "funct-an",
        "gr-qc", "hep-ex", "hep-lat", "hep-ph", "hep-th", "math", "math-ph", "mtrl-th",
        "nlin", "nucl-ex", "nucl-th", "patt-sol", "physics", "plasm-ph", "q-alg", "q-bio",
        "q-fin", "quant-ph", "solv-int", "stat", "supr-con",
    }
)  # fmt: skip

# Length past which an ID-list line is declared overlong; the reader keeps no more than this
# (plus one read block) of a line, so a file without newlines is never loaded whole.
_MAX_LINE_BYTES = 4096
_BLOCK_BYTES = 64 * 1024

_VERSION = r"(?:v(?P<version>\d{1,4}))?"
_NEW_RE = re.compile(r"(?P<yymm>\d{4})\.(?P<num>\d{4,5})" + _VERSION)
_OLD_RE = re.compile(
    r"(?P<archive>[A-Za-z]+(?:-[A-Za-z]+)?)(?:\.(?P<sc>[A-Za-z]+(?:-[A-Za-z]+)?))?"
    r"/(?P<yy>\d\d)(?P<mm>\d\d)(?P<num>\d{3})" + _VERSION
)
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_URL_RE = re.compile(
    r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>[^/]*)(?P<path>/.*)?", re.DOTALL
)
_ARXIV_HOSTS = frozenset({"arxiv.org", "www.arxiv.org", "export.arxiv.org"})
_URL_PATH_RE = re.compile(r"/(?:abs|pdf)/(?P<id>.+?)(?:\.pdf)?/?")


@dataclass(frozen=True, slots=True)
class PaperId:
    """A parsed, canonical paper identifier."""

    #: canonical ID without version ("2301.00001", "hep-th/9901001", "ext:some-slug")
    base: str
    #: the explicit version ("v2" -> 2), None when the input named no version
    version: int | None

    @property
    def key(self) -> str:
        """The queue key: the base plus ``vN`` when a version was given."""
        return f"{self.base}v{self.version}" if self.version is not None else self.base

    @property
    def is_arxiv(self) -> bool:
        """False for ``ext:`` names, which no arXiv URL can serve."""
        return not self.base.startswith("ext:")

    @property
    def url_id(self) -> str:
        """What replaces ``{id}`` in a URL template."""
        return self.base[4:] if not self.is_arxiv else self.key


def _current_yymm() -> int:
    today = _dt.datetime.now(_dt.UTC)
    return (today.year % 100) * 100 + today.month


# Cached because reading the clock per line would be a large part of parsing a big list;
# time only moves forward, so a cached month that accepts an ID is never wrong.
_latest_seen_yymm = _current_yymm()


def _is_future(yymm: int) -> bool:
    # arXiv numbers a paper by the month it was submitted in, so an ID from a month that has
    # not started yet cannot exist. UTC runs ahead of arXiv's clock (US Eastern), so this
    # never rejects a real ID.
    global _latest_seen_yymm
    if yymm <= _latest_seen_yymm:
        return False
    _latest_seen_yymm = _current_yymm()
    return yymm > _latest_seen_yymm


def _version(text: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    version = int(raw)
    if version == 0:
        raise InvalidIdError(text, "versions start at v1 (v0 does not exist)")
    return version


def _parse_new(text: str, m: re.Match[str]) -> PaperId:
    # Kept lean: this runs once per line of ID lists with millions of lines.
    yymm_text, num, raw_version = m[1], m[2], m[3]
    yymm = int(yymm_text)
    if not 1 <= yymm % 100 <= 12:
        raise InvalidIdError(text, f"month {yymm_text[2:]} is not a month (01-12)")
    if yymm < 704:
        raise InvalidIdError(text, "new-style IDs start in 0704 (April 2007)")
    if _is_future(yymm):
        raise InvalidIdError(text, f"{yymm_text} is a month in the future")
    if yymm <= 1412 and len(num) != 4:
        raise InvalidIdError(text, f"IDs from {yymm_text} have a 4-digit number (0704-1412)")
    if yymm >= 1501 and len(num) != 5:
        raise InvalidIdError(text, f"IDs from {yymm_text} have a 5-digit number (since 1501)")
    if num.count("0") == len(num):
        raise InvalidIdError(text, "paper numbers start at 1")
    base = m.group(0) if raw_version is None else m.string[m.start() : m.end("num")]
    return PaperId(base, _version(text, raw_version))


def _parse_old(text: str, m: re.Match[str]) -> PaperId:
    archive = m["archive"].lower()
    if archive not in OLD_STYLE_ARCHIVES:
        raise InvalidIdError(text, f"unknown arXiv archive {m['archive']!r}")
    yy, mm, num = m["yy"], m["mm"], m["num"]
    month = int(mm)
    if not 1 <= month <= 12:
        raise InvalidIdError(text, f"month {mm} is not a month (01-12)")
    year = (1900 if int(yy) >= 91 else 2000) + int(yy)
    if not (1991, 8) <= (year, month) <= (2007, 3):
        raise InvalidIdError(text, "old-style IDs run from 9108 (Aug 1991) to 0703 (Mar 2007)")
    if int(num) == 0:
        raise InvalidIdError(text, "paper numbers start at 1")
    sc = m["sc"]
    if sc is not None:
        # One spelling per subject class keeps keys (and file names) unique even on
        # case-insensitive file systems: two-letter classes are upper case (math.CA),
        # longer ones lower case (cond-mat.str-el).
        sc = sc.upper() if len(sc) == 2 else sc.lower()
        archive = f"{archive}.{sc}"
    return PaperId(f"{archive}/{yy}{mm}{num}", _version(text, m["version"]))


def _parse_ext(text: str, slug: str) -> PaperId:
    if not slug:
        raise InvalidIdError(text, "ext: needs a name after the colon")
    if slug != slug.lower() and _SLUG_RE.fullmatch(slug.lower()):
        raise InvalidIdError(text, "ext: names are lower case")
    if not _SLUG_RE.fullmatch(slug):
        raise InvalidIdError(
            text, "ext: names are 1-100 of a-z 0-9 . _ - and start with a letter or digit"
        )
    if ".." in slug:
        raise InvalidIdError(text, "ext: names may not contain '..'")
    return PaperId(f"ext:{slug}", None)


def _parse_bare(text: str, candidate: str) -> PaperId:
    """Parse an ID with any URL or ``arXiv:`` prefix already removed."""
    if m := _NEW_RE.fullmatch(candidate):
        return _parse_new(text, m)
    if m := _OLD_RE.fullmatch(candidate):
        return _parse_old(text, m)
    if re.fullmatch(r"\d{4}\.\d+(?:v\d*)?", candidate):
        raise InvalidIdError(text, "a new-style number has 4 or 5 digits after the dot")
    if re.fullmatch(r"[A-Za-z.-]+/\d+(?:v\d*)?", candidate):
        raise InvalidIdError(text, "an old-style number is YYMMNNN (7 digits)")
    if re.fullmatch(r"[^/]+/\d{7}(?:v\d+)?", candidate):
        raise InvalidIdError(text, f"unknown arXiv archive {candidate.split('/')[0]!r}")
    raise InvalidIdError(text, "not an arXiv ID (like 2301.00001 or hep-th/9901001)")


def _parse_url(text: str, stripped: str) -> PaperId:
    m = _URL_RE.fullmatch(stripped)
    assert m is not None  # the pattern matches any string
    scheme, host = m["scheme"], m["host"].lower()
    if scheme is not None and scheme.lower() not in ("http", "https"):
        raise InvalidIdError(text, f"only http(s) arXiv URLs are accepted, not {scheme}:")
    if host not in _ARXIV_HOSTS:
        raise InvalidIdError(text, f"URL host {host!r} is not arxiv.org")
    if "?" in stripped:
        raise InvalidIdError(text, "arXiv URLs with a query string are not accepted")
    pm = _URL_PATH_RE.fullmatch(m["path"] or "")
    if pm is None:
        raise InvalidIdError(text, "an arXiv URL must be /abs/<id> or /pdf/<id>")
    return _parse_bare(text, pm["id"])


def parse_id(text: str) -> PaperId:
    """Parse one arXiv ID, arXiv URL or ``ext:`` name; raise InvalidIdError saying why not."""
    stripped = text.strip()
    # Plain new-style IDs are by far the most common line: take them before the checks
    # below, none of which can fire on digits, a dot and a version.
    if m := _NEW_RE.fullmatch(stripped):
        return _parse_new(text, m)
    if not stripped:
        raise InvalidIdError(text, "empty")
    if len(stripped) > MAX_ID_LENGTH:
        raise InvalidIdError(text, f"longer than {MAX_ID_LENGTH} characters")
    # Traversal and smuggling checks come first so that no later branch has to think
    # about them: keys end up in file names and URLs.
    if "\x00" in stripped:
        raise InvalidIdError(text, "contains a NUL character")
    if "%" in stripped:
        raise InvalidIdError(text, "percent-encoded characters are not accepted")
    if "\\" in stripped:
        raise InvalidIdError(text, "contains a backslash")
    if ".." in stripped or "/./" in stripped or stripped.startswith(("/", ".")):
        raise InvalidIdError(text, "looks like a path ('..', './' or a leading '/' or '.')")
    if any(c.isspace() for c in stripped):
        raise InvalidIdError(text, "contains whitespace inside the ID")
    if any(not c.isprintable() for c in stripped):
        raise InvalidIdError(text, "contains control characters")
    lowered = stripped.lower()
    if lowered.startswith("ext:"):
        return _parse_ext(text, stripped[4:])
    if lowered.startswith("arxiv:"):
        return _parse_bare(text, stripped[6:])
    if "://" in stripped or lowered.split("/", 1)[0] in _ARXIV_HOSTS:
        return _parse_url(text, stripped)
    if ":" in stripped:
        raise InvalidIdError(text, "unknown prefix (only arXiv: and ext: are accepted)")
    if "." in lowered.split("/", 1)[0] and lowered.split("/", 1)[0].endswith(
        (".org", ".com", ".net", ".edu")
    ):
        raise InvalidIdError(text, f"URL host {lowered.split('/', 1)[0]!r} is not arxiv.org")
    return _parse_bare(text, stripped)


def _paper_for_key(key: str) -> PaperId:
    """The PaperId of a canonical key; ValueError for anything parse_id would not produce."""
    try:
        paper = parse_id(key)
    except InvalidIdError as exc:
        raise ValueError(f"not a paper key: {key!r} ({exc.reason})") from None
    if paper.key != key:
        raise ValueError(f"not a canonical paper key: {key!r} (canonical: {paper.key!r})")
    return paper


def storage_name(key: str) -> str:
    """A file-system-safe, single-component name for a queue key (one key, one name).

    ``/`` (old style) and ``:`` (ext) both become ``_``. That is injective because no
    canonical key contains ``_`` except ext slugs, which always start with ``ext_``, and
    no arXiv archive is called ``ext``.
    """
    _paper_for_key(key)
    name = key.replace("/", "_").replace(":", "_")
    # Belt and braces: the parser already rules these out, but a file name is where a
    # mistake would turn into writing outside --out.
    if not name or name.startswith(".") or ".." in name or any(c in name for c in "/\\\x00:"):
        raise ValueError(f"unsafe storage name for {key!r}")
    return name


def validate_url_template(template: str) -> None:
    """Raise ConfigError unless ``template`` is a usable --pdf-url (rpa.config's rule)."""
    validate_pdf_url(template)


def url_for(template: str, key: str) -> str:
    """Fill ``{id}`` in ``template`` with the ``url_id`` of a canonical key."""
    validate_url_template(template)
    # str.replace, not str.format: the template comes from users and must not reach
    # format's attribute/index lookups.
    return template.replace("{id}", _paper_for_key(key).url_id)


@dataclass(frozen=True, slots=True)
class IdLine:
    """One non-blank, non-comment line of an ID list."""

    #: 1-based line number in the file
    lineno: int
    #: the line without its comment and surrounding whitespace
    text: str
    #: the parsed ID, or None when the line is invalid
    paper: PaperId | None
    #: why the line is invalid, or None
    error: InvalidIdError | None


def _raw_chunks(path: Path) -> Iterator[tuple[int, list[str], frozenset[int]]]:
    """Yield (number of the first line, decoded lines, indexes of overlong lines) per read
    block, holding one block and at most one line. Overlong lines are not yet cut."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read ID list {path}: {exc.strerror or exc}") from exc
    with fh:
        lineno = 0
        carry = b""  # the unfinished last line of the previous block
        overlong = False  # the current line passed _MAX_LINE_BYTES: its bytes are dropped
        while block := fh.read(_BLOCK_BYTES):
            end = block.rfind(b"\n")
            if end < 0:
                carry += block
            else:
                # Decode whole lines only, so a multi-byte character is never cut in two;
                # errors="replace": one bad byte makes one invalid line, not a bad file.
                lines = (carry + block[: end + 1]).decode("utf-8", errors="replace").split("\n")
                carry = block[end + 1 :]
                lines.pop()  # the empty string after the final newline
                if lineno == 0 and lines:
                    lines[0] = lines[0].removeprefix("\ufeff")
                long: frozenset[int] = frozenset()
                if lines and (overlong or max(map(len, lines)) > _MAX_LINE_BYTES):
                    long = frozenset(
                        i for i, line in enumerate(lines) if len(line) > _MAX_LINE_BYTES
                    ) | ({0} if overlong else set())
                    overlong = False
                yield lineno + 1, lines, long
                lineno += len(lines)
            if len(carry) > _MAX_LINE_BYTES:
                carry = carry[:_MAX_LINE_BYTES]
                overlong = True
        if carry or overlong:
            line = carry.decode("utf-8", errors="replace")
            line = line.removeprefix("\ufeff") if lineno == 0 else line
            yield lineno + 1, [line], frozenset({0}) if overlong else frozenset()


def _id_line(lineno: int, line: str, overlong: bool) -> IdLine | None:
    """The IdLine of one raw line; None for a blank or comment-only line."""
    cut = line.find("#")
    text = (line if cut < 0 else line[:cut]).strip()
    if overlong:
        snippet = text[:60] + "..."
        error = InvalidIdError(snippet, f"line longer than {_MAX_LINE_BYTES} bytes", lineno)
        return IdLine(lineno, snippet, None, error)
    if not text:
        return None
    try:
        # The common case, a plain new-style ID, skips parse_id's general checks.
        m = _NEW_RE.fullmatch(text)
        return IdLine(lineno, text, _parse_new(text, m) if m else parse_id(text), None)
    except InvalidIdError as exc:
        return IdLine(lineno, text, None, InvalidIdError(text, exc.reason, lineno))


def iter_id_lines(path: Path) -> Iterator[IdLine]:
    """Stream an ID list: one IdLine per line that is neither blank nor only a comment.

    ``#`` starts a comment that runs to the end of the line. The file is read a block at a
    time, never whole. Raises InputError if the file cannot be opened.
    """
    for first, lines, long in _raw_chunks(path):
        for i, line in enumerate(lines):
            item = _id_line(first + i, line[:_MAX_LINE_BYTES], i in long)
            if item is not None:
                yield item


@dataclass(slots=True)
class KeyBatch:
    """Up to ``batch_size`` lines of an ID list, reduced to what queueing them needs."""

    #: non-blank, non-comment lines in this batch
    lines: int
    #: queue keys of the valid lines, in file order
    keys: list[str]
    #: one error per invalid line
    errors: list[InvalidIdError]


#: The commonest line of a big list: a bare five-digit new-style ID without a version.
_PLAIN_NEW_RE = re.compile(r"\d{4}\.\d{5}")


def iter_key_batches(path: Path, batch_size: int = 10_000) -> Iterator[KeyBatch]:
    """Stream an ID list as KeyBatches: the same keys and errors as iter_id_lines, faster.

    A line that is exactly a plain five-digit new-style ID, from a month an earlier line
    already proved valid, is its own key; every other line takes the full parser. This
    keeps a million-line list at well under a microsecond a line.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    plain = _PLAIN_NEW_RE.fullmatch
    good_months: set[str] = set()  # yymm of plain IDs the full parser accepted
    batch = KeyBatch(0, [], [])
    for first, lines, long in _raw_chunks(path):
        for i, line in enumerate(lines):
            if plain(line) and line[:4] in good_months and line[5:] != "00000":
                batch.keys.append(line)
            else:
                item = _id_line(first + i, line[:_MAX_LINE_BYTES], i in long)
                if item is None:
                    continue
                if item.paper is not None:
                    key = item.paper.key
                    batch.keys.append(key)
                    if key == line and plain(line):
                        good_months.add(line[:4])
                else:
                    assert item.error is not None
                    batch.errors.append(item.error)
            batch.lines += 1
            if batch.lines >= batch_size:
                yield batch
                batch = KeyBatch(0, [], [])
    if batch.lines:
        yield batch


def iter_id_batches(path: Path, batch_size: int = 10_000) -> Iterator[list[IdLine]]:
    """Stream an ID list in lists of at most ``batch_size`` lines (one transaction each)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    batch: list[IdLine] = []
    for item in iter_id_lines(path):
        batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch

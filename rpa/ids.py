"""arXiv identifiers: parsing, canonical queue keys, safe file names, URL templates.

Two ID schemes exist (https://info.arxiv.org/help/arxiv_identifier.html):

* new style, from April 2007: ``YYMM.NNNN`` (0704-1412) or ``YYMM.NNNNN`` (from 1501),
  optionally ``vN``;
* old style, August 1991 to March 2007: ``archive[.SC]/YYMMNNN``, optionally ``vN``.

Besides those, ``ext:<slug>`` names a paper that is not on arXiv (mirrors of other
collections, the bundled demo papers). Everything else is rejected with a reason that
says what is wrong, so the reader of an ID list (rpa.idlist) can print it next to the line
number.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

from rpa.errors import ConfigError, InvalidIdError

__all__ = [
    "MAX_ID_LENGTH",
    "OLD_STYLE_ARCHIVES",
    "PDF_URL_SCHEMES",
    "PaperId",
    "parse_id",
    "parse_line",
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

#: the schemes a --pdf-url may have
PDF_URL_SCHEMES = ("http", "https", "file")

_VERSION = r"(?:v(?P<version>[0-9]{1,4}))?"
_NEW_RE = re.compile(r"(?P<yymm>[0-9]{4})\.(?P<num>[0-9]{4,5})" + _VERSION)
_OLD_RE = re.compile(
    r"(?P<archive>[A-Za-z]+(?:-[A-Za-z]+)?)(?:\.(?P<sc>[A-Za-z]+(?:-[A-Za-z]+)?))?"
    r"/(?P<yy>[0-9][0-9])(?P<mm>[0-9][0-9])(?P<num>[0-9]{3})" + _VERSION
)
#: an ID whose tail is a `v` with no digits or too many (the base is checked separately)
_BAD_VERSION_RE = re.compile(r"(?P<base>.+?)v(?P<digits>[0-9]*)")
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_URL_RE = re.compile(
    r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>[^/]*)(?P<path>/.*)?", re.DOTALL
)
_ARXIV_HOSTS = frozenset({"arxiv.org", "www.arxiv.org", "export.arxiv.org"})
#: arXiv's DOIs (10.48550/arXiv.2201.13352), in lower case; and how a DOI is given
_ARXIV_DOI = "10.48550/arxiv."
_DOI_PREFIXES = (
    "doi:", "https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/",
    "doi.org/",
)  # fmt: skip
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


def _refuse_bad_version(text: str, candidate: str) -> None:
    """Say so when an otherwise good ID ends in a version with no number or a too long one
    ('2401.00002v' was refused for the digits of its paper number)."""
    m = _BAD_VERSION_RE.fullmatch(candidate)
    if m is None:
        return
    base = _NEW_RE.fullmatch(m["base"]) or _OLD_RE.fullmatch(m["base"])
    if base is None or base["version"] is not None:
        return
    _parse_bare(text, m["base"])  # the paper number's own fault first ('2401.0002v')
    if not m["digits"]:
        raise InvalidIdError(text, "version 'v' has no number (versions are v1, v2, ...)")
    raise InvalidIdError(text, f"version 'v{m['digits']}' has more than 4 digits")


def _parse_bare(text: str, candidate: str) -> PaperId:
    """Parse an ID with any URL or ``arXiv:`` prefix already removed."""
    if m := _NEW_RE.fullmatch(candidate):
        return _parse_new(text, m)
    if m := _OLD_RE.fullmatch(candidate):
        return _parse_old(text, m)
    _refuse_bad_version(text, candidate)
    if re.fullmatch(r"[0-9]{4}\.[0-9]+(?:v[0-9]*)?", candidate):
        raise InvalidIdError(text, "a new-style number has 4 or 5 digits after the dot")
    if re.fullmatch(r"[A-Za-z.-]+/[0-9]+(?:v[0-9]*)?", candidate):
        raise InvalidIdError(text, "an old-style number is YYMMNNN (7 digits)")
    if re.fullmatch(r"[^/]+/[0-9]{7}(?:v[0-9]+)?", candidate):
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
    # a browser's copy (/abs/2301.00001?context=cs, #S2): what follows the path is not the ID
    path = re.split(r"[?#]", m["path"] or "", maxsplit=1)[0]
    pm = _URL_PATH_RE.fullmatch(path)
    if pm is None:
        raise InvalidIdError(text, "an arXiv URL must be /abs/<id> or /pdf/<id>")
    return _parse_bare(text, pm["id"])


def _parse_doi(text: str, doi: str) -> PaperId:
    """arXiv's own DOI of a paper (10.48550/arXiv.<id>), given without its doi: or doi.org
    prefix."""
    if not doi.lower().startswith(_ARXIV_DOI):
        raise InvalidIdError(text, "not an arXiv DOI (arXiv's prefix is 10.48550/arXiv.)")
    return _parse_bare(text, doi[len(_ARXIV_DOI) :])


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
    if any(c.isdigit() and not c.isascii() for c in stripped):
        # `\d` matched every script's digits: '２３０１.００００１' and '2301.00001' were two papers
        raise InvalidIdError(text, "has a digit that is not ASCII 0-9 (arXiv IDs are ASCII)")
    lowered = stripped.lower()
    if lowered.startswith("ext:"):
        return _parse_ext(text, stripped[4:])
    if lowered.startswith("arxiv:"):
        return _parse_bare(text, stripped[6:])
    for prefix in _DOI_PREFIXES:
        if lowered.startswith(prefix):
            return _parse_doi(text, stripped[len(prefix) :])
    if lowered.startswith("10.") and "/" in lowered:  # a bare DOI
        return _parse_doi(text, stripped)
    if "://" in stripped or lowered.split("/", 1)[0] in _ARXIV_HOSTS:
        return _parse_url(text, stripped)
    if ":" in stripped:
        raise InvalidIdError(text, "unknown prefix (only arXiv: and ext: are accepted)")
    if "." in lowered.split("/", 1)[0] and lowered.split("/", 1)[0].endswith(
        (".org", ".com", ".net", ".edu")
    ):
        raise InvalidIdError(text, f"URL host {lowered.split('/', 1)[0]!r} is not arxiv.org")
    return _parse_bare(text, stripped)


def parse_line(text: str) -> PaperId:
    """parse_id for a trimmed line of an ID list: the same answers, with the common case (a
    plain new-style ID) tried first, before parse_id's general checks."""
    m = _NEW_RE.fullmatch(text)
    return _parse_new(text, m) if m else parse_id(text)


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
    """Refuse a --pdf-url that cannot work, before any work: a scheme other than http, https
    or file, no `{id}`, or any other placeholder (`{y}`, a stray brace)."""
    if "{id}" not in template:
        raise ConfigError(
            f"pdf_url must contain {{id}} (where the paper's ID goes), got {template!r}"
        )
    rest = template.replace("{id}", "")
    if "{" in rest or "}" in rest:
        raise ConfigError(
            f"pdf_url may contain no placeholder but {{id}} (no other braces), got {template!r}"
        )
    scheme, sep, after = template.partition("://")
    if not sep or scheme.lower() not in PDF_URL_SCHEMES:
        raise ConfigError(f"pdf_url must start with http://, https:// or file://, got {template!r}")
    if scheme.lower() in ("http", "https") and not after.split("/", 1)[0].replace("{id}", ""):
        raise ConfigError(f"pdf_url names no host, got {template!r}")


def url_for(template: str, key: str) -> str:
    """Fill ``{id}`` in ``template`` with the ``url_id`` of a canonical key."""
    validate_url_template(template)
    # str.replace, not str.format: the template comes from users and must not reach
    # format's attribute/index lookups.
    return template.replace("{id}", _paper_for_key(key).url_id)

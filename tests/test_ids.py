"""rpa.ids: what is an arXiv ID, what its key and file name are, and streaming ID lists."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import pytest

from rpa.errors import ConfigError, InputError, InvalidIdError
from rpa.idlist import iter_id_batches, iter_id_lines, iter_key_batches
from rpa.ids import (
    MAX_ID_LENGTH,
    OLD_STYLE_ARCHIVES,
    PaperId,
    parse_id,
    storage_name,
    url_for,
)

ACCEPTED: list[tuple[str, str, int | None]] = [
    # (input, canonical base, version)
    ("2301.00001", "2301.00001", None),
    ("2301.00001v2", "2301.00001", 2),
    ("1412.9999", "1412.9999", None),
    ("1501.00001", "1501.00001", None),
    ("0704.0001", "0704.0001", None),
    ("0704.0001v12", "0704.0001", 12),
    ("  2301.00001\t", "2301.00001", None),
    ("hep-th/9901001", "hep-th/9901001", None),
    ("hep-th/9108001", "hep-th/9108001", None),
    ("math.CA/0611800v2", "math.CA/0611800", 2),
    ("math.ca/0611800", "math.CA/0611800", None),
    ("cond-mat.str-el/0101001", "cond-mat.str-el/0101001", None),
    ("cond-mat.STR-EL/0101001", "cond-mat.str-el/0101001", None),
    ("HEP-TH/9901001", "hep-th/9901001", None),
    ("cs/9912018", "cs/9912018", None),
    ("q-bio/0703001", "q-bio/0703001", None),
    ("arXiv:2301.00001", "2301.00001", None),
    ("ARXIV:2301.00001v3", "2301.00001", 3),
    ("arxiv:hep-th/9901001", "hep-th/9901001", None),
    ("https://arxiv.org/abs/2301.00001v2", "2301.00001", 2),
    ("http://arxiv.org/pdf/2301.00001", "2301.00001", None),
    ("https://arxiv.org/pdf/2301.00001v1.pdf", "2301.00001", 1),
    ("https://arxiv.org/abs/hep-th/9901001v2", "hep-th/9901001", 2),
    ("https://export.arxiv.org/abs/2301.00001", "2301.00001", None),
    ("export.arxiv.org/abs/math.CA/0611800", "math.CA/0611800", None),
    ("https://www.arxiv.org/abs/2301.00001/", "2301.00001", None),
    ("HTTPS://ArXiv.org/abs/2301.00001", "2301.00001", None),
    # a browser's copy: the query and the fragment are not the ID
    ("https://arxiv.org/abs/2202.00535v1?context=cs", "2202.00535", 1),
    ("https://arxiv.org/abs/2301.00001#S2", "2301.00001", None),
    ("https://arxiv.org/pdf/2301.00001v2.pdf?download=1", "2301.00001", 2),
    # arXiv's own DOIs
    ("10.48550/arXiv.2201.13352", "2201.13352", None),
    ("doi:10.48550/arXiv.2201.13352", "2201.13352", None),
    ("https://doi.org/10.48550/arXiv.2201.13352", "2201.13352", None),
    ("10.48550/ARXIV.hep-th/9901001", "hep-th/9901001", None),
    ("ext:cermine__bmc-example2", "ext:cermine__bmc-example2", None),
    ("ext:s2orc__2020.acl-main.207", "ext:s2orc__2020.acl-main.207", None),
    ("ext:" + "a" * 100, "ext:" + "a" * 100, None),
]


@pytest.mark.parametrize(("text", "base", "version"), ACCEPTED)
def test_accepts_and_normalizes(text: str, base: str, version: int | None) -> None:
    paper = parse_id(text)
    assert paper == PaperId(base, version)
    # The key is a fixed point: parsing it again gives the same paper.
    assert parse_id(paper.key) == paper


REJECTED: list[tuple[str, str]] = [
    # (input, a word the reason must contain)
    ("2313.00001", "month"),
    ("2300.00001", "month"),
    ("0612.0001", "0704"),
    ("9912.00001", "future"),
    ("2301.0001", "5-digit"),
    ("1412.00001", "4-digit"),
    ("2301.000001", "4 or 5 digits"),
    ("2301.00000", "start at 1"),
    ("2301.00001v0", "v1"),
    # a version marker with no number is refused for that, not for the paper number's digits
    ("2401.00002v", "version 'v' has no number"),
    ("arXiv:2401.00002v", "version 'v' has no number"),
    ("https://arxiv.org/abs/2401.00002v", "version 'v' has no number"),
    ("hep-th/9901001v", "version 'v' has no number"),
    ("2401.00002v12345", "more than 4 digits"),
    ("hep-th/9913001", "month"),
    ("hep-th/9107001", "9108"),
    ("hep-th/0704001", "0703"),
    ("hep-th/990100", "7 digits"),
    ("foo-th/9901001", "unknown arXiv archive"),
    ("ext/9901001", "unknown arXiv archive"),
    ("https://example.com/abs/2301.00001", "not arxiv.org"),
    ("https://arxiv.org.evil.com/abs/2301.00001", "not arxiv.org"),
    ("example.com/abs/2301.00001", "not arxiv.org"),
    ("ftp://arxiv.org/abs/2301.00001", "http"),
    ("https://arxiv.org/list/2301.00001", "/abs/"),
    ("10.1000/xyz", "not an arXiv DOI"),
    ("https://doi.org/10.1000/xyz", "not an arXiv DOI"),
    ("10.48550/arXiv.2301.0001", "5-digit"),
    ("../2301.00001", "path"),
    ("hep-th/../9901001", "path"),
    ("https://arxiv.org/abs/../../etc/passwd", "path"),
    ("hep-th%2F9901001", "percent"),
    ("2301.00001\x00", "NUL"),
    ("hep-th\\9901001", "backslash"),
    ("2301.00001 2301.00002", "whitespace"),
    ("2" * (MAX_ID_LENGTH + 1), "longer"),
    ("", "empty"),
    ("doi:10.1000/xyz", "prefix"),
    ("ext:", "name"),
    ("ext:Foo", "lower case"),
    ("ext:a..b", "path"),
    ("ext:-abc", "start with"),
    ("ext:a/b", "a-z"),
    ("ext:" + "a" * 101, "1-100"),
    ("hello", "not an arXiv ID"),
    # one digit alphabet: other scripts' digits are no arXiv ID (issue 19)
    ("２３０１.００００１", "ASCII"),
    ("٢٣٠١.٠٠٠٠١", "ASCII"),
    ("2301.0000١", "ASCII"),
    ("2301.00001v٢", "ASCII"),
    ("hep-th/99010０1", "ASCII"),
    ("https://arxiv.org/abs/２301.00001", "ASCII"),
    # an empty version after a bad paper number: the number's own fault is said first
    ("2401.0002v", "5-digit"),
    ("1301.00001v", "4-digit"),
    ("hep-xx/9901001v", "archive"),
    ("hep-th/9913001v", "month"),
]


@pytest.mark.parametrize(("text", "reason_word"), REJECTED)
def test_rejects_with_reason(text: str, reason_word: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        parse_id(text)
    assert info.value.text == text
    assert reason_word in info.value.reason


def test_paper_properties() -> None:
    old = parse_id("hep-th/9901001v2")
    assert (old.key, old.url_id, old.is_arxiv) == ("hep-th/9901001v2", "hep-th/9901001v2", True)
    ext = parse_id("ext:demo-1")
    assert (ext.key, ext.url_id, ext.is_arxiv) == ("ext:demo-1", "demo-1", False)


def test_url_for() -> None:
    assert url_for("https://export.arxiv.org/pdf/{id}", "hep-th/9901001v2") == (
        "https://export.arxiv.org/pdf/hep-th/9901001v2"
    )
    assert url_for("http://127.0.0.1:9/pdf/{id}", "ext:demo-1") == "http://127.0.0.1:9/pdf/demo-1"
    with pytest.raises(ConfigError, match="must contain \\{id\\}"):
        url_for("https://export.arxiv.org/pdf/", "2301.00001")
    with pytest.raises(ConfigError, match="no placeholder but"):
        url_for("https://x/{id}/{0.__class__}", "2301.00001")
    with pytest.raises(ValueError):
        url_for("https://x/{id}", "../2301.00001")


def _generated_keys(rng: random.Random, n: int) -> list[str]:
    archives = sorted(OLD_STYLE_ARCHIVES)
    classes = ["", ".CA", ".str-el", ".GT", ".mes-hall", ".AI"]
    keys = []
    for _ in range(n):
        version = rng.choice(["", "", f"v{rng.randint(1, 20)}"])
        style = rng.randrange(4)
        if style == 0:
            yymm = rng.choice([704, 1001, 1412])
            keys.append(f"{yymm:04d}.{rng.randint(1, 9999):04d}{version}")
        elif style == 1:
            yymm = rng.choice([1501, 2012, 2301, 2410])
            keys.append(f"{yymm:04d}.{rng.randint(1, 99999):05d}{version}")
        elif style == 2:
            yy = rng.choice([92, 95, 99, 0, 3, 6])
            num = f"{yy:02d}{rng.randint(1, 12):02d}{rng.randint(1, 999):03d}"
            keys.append(f"{rng.choice(archives)}{rng.choice(classes)}/{num}{version}")
        else:
            alphabet = "abcdefghijklmnopqrstuvwxyz0123456789._-"
            slug = rng.choice("abc123") + "".join(
                rng.choice(alphabet) for _ in range(rng.randint(0, 12))
            )
            keys.append(f"ext:{slug}")
    return keys


def test_storage_name_is_injective_and_safe() -> None:
    rng = random.Random(20240601)
    canonical: set[str] = set()
    for text in _generated_keys(rng, 20_000):
        try:
            canonical.add(parse_id(text).key)
        except InvalidIdError:
            continue  # a generated slug with ".." is rightly refused
    assert len(canonical) > 15_000
    names = {storage_name(key) for key in canonical}
    assert len(names) == len(canonical)
    # Unique even where the file system ignores case.
    assert len({name.lower() for name in names}) == len(canonical)
    for name in names:
        assert name and not name.startswith(".")
        assert not any(bad in name for bad in ("/", "\\", "..", "\x00", ":"))
    assert storage_name("hep-th/9901001v2") == "hep-th_9901001v2"
    assert storage_name("ext:foo") == "ext_foo"


@pytest.mark.parametrize(
    "key",
    ["", "../etc/passwd", "2301.00001 ", "math.ca/0611800", "arXiv:2301.00001", "ext:..", "a/b"],
)
def test_storage_name_refuses_non_keys(key: str) -> None:
    with pytest.raises(ValueError):
        storage_name(key)


def test_id_lines_numbers_comments_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(
        b"\xef\xbb\xbf# a list of papers\n"  # BOM + comment
        b"2301.00001\n"
        b"\n"
        b"   \n"
        b"hep-th/9901001  # trailing comment\n"
        b"2313.00001\n"
        b"https://arxiv.org/abs/2301.00002v2\r\n"
        b"\xff\xfe not utf8\n"
        b"ext:demo-1"  # no final newline
    )
    lines = list(iter_id_lines(path))
    assert [(item.lineno, item.text) for item in lines] == [
        (2, "2301.00001"),
        (5, "hep-th/9901001"),
        (6, "2313.00001"),
        (7, "https://arxiv.org/abs/2301.00002v2"),
        (8, "\ufffd\ufffd not utf8"),
        (9, "ext:demo-1"),
    ]
    assert [item.paper.key for item in lines if item.paper] == [
        "2301.00001",
        "hep-th/9901001",
        "2301.00002v2",
        "ext:demo-1",
    ]
    bad = [item for item in lines if item.error is not None]
    assert [(item.lineno, item.error.line) for item in bad if item.error] == [(6, 6), (8, 8)]
    assert bad[0].error is not None and "line 6" in str(bad[0].error)
    assert all((item.paper is None) != (item.error is None) for item in lines)


def test_overlong_line_is_one_invalid_line(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(b"2301.00001\n" + b"9" * 100_000 + b"\n2301.00002\n")
    lines = list(iter_id_lines(path))
    assert [item.lineno for item in lines] == [1, 2, 3]
    assert lines[1].error is not None and "longer than" in lines[1].error.reason
    assert lines[2].paper == PaperId("2301.00002", None)


def test_unreadable_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        list(iter_id_lines(tmp_path / "missing.txt"))


def test_batches(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("".join(f"2301.{i:05d}\n# c\n" for i in range(1, 26)))
    batches = list(iter_id_batches(path, batch_size=10))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert batches[2][-1].lineno == 49
    with pytest.raises(ValueError):
        next(iter_id_batches(path, batch_size=0))


def test_key_batches_agree_with_the_full_parser(tmp_path: Path) -> None:
    # The fast path must accept and reject exactly what iter_id_lines does: plain IDs from
    # good and bad months, zero numbers, 4-digit numbers after 1412, versions, old style,
    # comments, CRLF, a BOM, an overlong line, bad UTF-8 and no final newline.
    path = tmp_path / "ids.txt"
    path.write_bytes(
        b"\xef\xbb\xbf1501.00001\n1501.00002\n1501.00000\n1513.00001\n1513.00002\n"
        b"9912.00001\n1501.0001\n0704.0001\n0704.00001\n2301.00001v2\n2301.00003 \n"
        b"2301.00004\r\n# 2301.00005\n\n hep-th/9901001 \n2301.00001\n"
        + b"1" * 5000
        + b"\n\xff2301.00006\n2301.00007"
    )
    lines = list(iter_id_lines(path))
    batches = list(iter_key_batches(path, batch_size=4))
    assert [b.lines for b in batches] == [4, 4, 4, 4, 1]
    assert [k for b in batches for k in b.keys] == [i.paper.key for i in lines if i.paper]
    errors = [(e.line, e.reason) for b in batches for e in b.errors]
    assert errors == [(i.error.line, i.error.reason) for i in lines if i.error]
    assert [line for line, _ in errors] == [3, 4, 5, 6, 7, 9, 17, 18]
    assert "2301.00001" in [k for b in batches for k in b.keys]
    with pytest.raises(ValueError):
        next(iter_key_batches(path, batch_size=0))


def _write_big_list(path: Path, *, ids_every: int) -> None:
    # 1,000,000 lines: an ID on every `ids_every`-th line (one in a hundred IDs is
    # invalid), commented-out or blank lines between them.
    with path.open("w") as fh:
        for i in range(1_000_000):
            if i % ids_every:
                fh.write("# 2301.00001v2 skipped: duplicate of the line above\n" if i % 2 else "\n")
            elif i % (100 * ids_every) == 0:
                fh.write("2313.00001  # bad month\n")
            else:
                fh.write(f"2301.{i % 99999 + 1:05d}v{i % 9 + 1}  # listing 2023-01\n")


def _stream_under_tracemalloc(path: Path) -> tuple[int, int, int, int]:
    tracemalloc.start()
    try:
        good = bad = last = 0
        for item in iter_id_lines(path):
            good += item.paper is not None
            bad += item.error is not None
            last = item.lineno
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return good, bad, last, peak


def test_million_lines_stream_without_loading_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    _write_big_list(path, ids_every=10)
    size = path.stat().st_size
    good, bad, last, peak = _stream_under_tracemalloc(path)
    assert (good, bad, last) == (99_000, 1_000, 999_991)
    assert size > 20_000_000
    # Streaming holds one block and one line at a time: a tiny fraction of the file.
    assert peak < size / 50, (peak, size)


@pytest.mark.slow
def test_million_id_lines_stream_without_loading_the_file(tmp_path: Path) -> None:
    # Same as above with an ID on every line; slow only because tracemalloc taxes every
    # allocation of a million parses.
    path = tmp_path / "big.txt"
    _write_big_list(path, ids_every=1)
    size = path.stat().st_size
    good, bad, last, peak = _stream_under_tracemalloc(path)
    assert (good, bad, last) == (990_000, 10_000, 1_000_000)
    assert peak < size / 50, (peak, size)


def test_file_without_newlines_is_not_loaded_whole(tmp_path: Path) -> None:
    path = tmp_path / "one-line.txt"
    with path.open("wb") as fh:
        for _ in range(320):
            fh.write(b"2301.00001" * 6_554)  # ~21 MB, no newline at all
    size = path.stat().st_size
    _, bad, last, peak = _stream_under_tracemalloc(path)
    assert (bad, last) == (1, 1)
    assert peak < size / 50, (peak, size)


def test_other_scripts_digits_are_invalid_lines_not_more_papers(tmp_path: Path) -> None:
    """Before, `\\d` made these three lines three jobs, three downloads, three folders."""
    path = tmp_path / "ids.txt"
    path.write_text("2301.00001\n２３０１.００００１\n٢٣٠١.٠٠٠٠١\n", encoding="utf-8")
    [batch] = list(iter_key_batches(path))
    assert batch.keys == ["2301.00001"]
    assert [(e.line, "ASCII" in e.reason) for e in batch.errors] == [(2, True), (3, True)]

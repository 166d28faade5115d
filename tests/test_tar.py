"""arXiv's bulk PDF tars as a source, with real tars built from real PDFs, named the way
arXiv names their members (`YYMM/<id>.pdf`, the slash of an old-style ID removed)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from conftest import Cli, sample_pdfs, write_ids

from rpa.sources.tar import member_key, read_member, scan_tar, swallowed, tar_path
from rpa.testing.mirror import HTML_PAGE

#: arXiv IDs given to the bundled real papers, and the member names arXiv would use
NAMES = {
    "1501.00001": "1501/1501.00001.pdf",
    "1501.00002": "1501/1501.00002.pdf",
    "0704.0001": "0704/0704.0001.pdf",
    "astro-ph/0001001": "0001/astro-ph0001001.pdf",
    "hep-th/9901001": "9901/hep-th9901001.pdf",
    "cond-mat/0001002": "0001/cond-mat0001002v2.pdf",  # a version suffix is read too
}


def make_tar(path: Path, members: dict[str, bytes], *, cut: int | None = None) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        folder = tarfile.TarInfo("1501")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)  # a directory member: skipped
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    path.write_bytes(data[:cut] if cut else data)
    return path


def bundle(tmp_path: Path) -> dict[str, Path]:
    pdfs = [p.read_bytes() for p in sample_pdfs()]
    folder = tmp_path / "bulk"
    folder.mkdir()
    first = dict(zip(list(NAMES.values())[:3], pdfs[:3], strict=True))
    second = dict(zip(list(NAMES.values())[3:], pdfs[3:6], strict=True))
    second["0001/README.txt"] = b"not a paper"  # a member that is no paper's: not indexed
    second["1502/1502.00007.pdf"] = HTML_PAGE  # a paper's name, but not a PDF
    a = make_tar(folder / "arXiv_pdf_1501_001.tar", first)
    b = make_tar(folder / "arXiv_pdf_0001_001.tar", second)
    # a truncated download: the tar ends inside its second member
    whole = make_tar(tmp_path / "whole.tar", {"1503/1503.00001.pdf": pdfs[0],
                                             "1503/1503.00002.pdf": pdfs[1]})  # fmt: skip
    cut = len(pdfs[0]) + 1536 + len(pdfs[1]) // 2
    c = make_tar(folder / "arXiv_pdf_1503_001.tar", {}, cut=None)
    c.write_bytes(whole.read_bytes()[:cut])
    return {"a": a, "b": b, "c": c}


def test_member_names_map_to_arxiv_ids_the_way_arxiv_names_them() -> None:
    assert member_key("1501/1501.00001.pdf") == ("1501.00001", None)
    assert member_key("0704/0704.0001v3.pdf") == ("0704.0001", 3)
    assert member_key("0001/astro-ph0001001.pdf") == ("astro-ph/0001001", None)
    assert member_key("9901/hep-th9901001v2.pdf") == ("hep-th/9901001", 2)
    assert member_key("./1501/1501.00001.pdf") == ("1501.00001", None)
    for not_a_paper in ("1501/", "1501/README.txt", "0001/notanarchive0001001.pdf",
                        "1501/1501.001.pdf", "a/b/1501.00001.pdf",
                        "1501/１５０１.００００１.pdf", "١٥٠١/1501.00001v٢.pdf",
                        "0001/astro-ph٠٠٠1001.pdf"):  # fmt: skip
        assert member_key(not_a_paper) is None, not_a_paper


def test_a_tar_is_indexed_by_its_headers_and_read_with_one_seek(tmp_path: Path) -> None:
    tars = bundle(tmp_path)
    members, error = scan_tar(tars["b"])
    assert error is None
    assert sorted(m.base for m in members) == ["1502.00007", "astro-ph/0001001",
                                               "cond-mat/0001002", "hep-th/9901001"]  # fmt: skip
    pdf = {m.base: m for m in members}["hep-th/9901001"]
    path = f"tar:{pdf.offset}:{pdf.size}:{pdf.tar}"
    assert read_member(path) == sample_pdfs()[4].read_bytes()
    truncated, why = scan_tar(tars["c"])
    assert why is not None and [m.base for m in truncated] == ["1503.00001", "1503.00002"]


def test_rpa_runs_every_paper_of_the_tars_without_unpacking_them(tmp_path: Path) -> None:
    tars = bundle(tmp_path)
    cli = Cli(tmp_path, "unused")
    knobs = ["--db", str(cli.db), "--out", str(cli.out), "--no-progress", "--max-attempts", "1"]
    pattern = str(tmp_path / "bulk" / "arXiv_pdf_*.tar")
    result = cli.run("run", "--pdf-tar", pattern, *knobs, "--rate-limits", "")
    assert result.returncode == 1, result.stdout + result.stderr  # two papers fail, alone
    assert "rate limit" not in result.stderr  # no request goes to arXiv: no politeness note
    assert "indexed 3 tars (3 new or changed): 9 papers" in result.stdout
    assert "damaged tar" in result.stderr and "arXiv_pdf_1503_001.tar" in result.stderr
    assert "queued 9 new of the tars' 9 papers" in result.stdout
    state = {r[0]: (r[1], r[2]) for r in cli.query("SELECT id, stage, error_kind FROM jobs")}
    assert state.pop("1502.00007") == ("failed", "not_pdf")
    assert state.pop("1503.00002") == ("failed", "truncated_tar")
    assert set(state.values()) == {("done", None)} and len(state) == 7
    assert "cond-mat/0001002v2" in state  # the version its member name gave
    # nothing was unpacked or copied: the records name the tars
    assert not list((cli.out / "pdf").rglob("*.pdf"))
    records = [
        json.loads(line) for line in cli.run("export", "--db", str(cli.db)).stdout.splitlines()
    ]
    old = next(r for r in records if r["id"] == "astro-ph/0001001")
    assert old["pdf"]["path"].startswith("tar:") and str(tars["b"]) in old["pdf"]["path"]
    assert old["pdf"]["url"].endswith("arXiv_pdf_0001_001.tar!0001/astro-ph0001001.pdf")
    assert old["page_count"] > 0 and old["arxiv_id"] == "astro-ph/0001001"
    # a second run indexes nothing again and finds nothing new
    again = cli.run("run", "--pdf-tar", pattern, *knobs)
    assert "(0 new or changed)" in again.stdout and "queued 0 new" in again.stdout


def test_with_an_id_list_only_the_listed_papers_are_queued_and_the_missing_said(
    tmp_path: Path,
) -> None:
    bundle(tmp_path)
    cli = Cli(tmp_path, "unused")
    ids = write_ids(tmp_path / "ids.txt", ["1501.00002", "hep-th/9901001v1", "2301.99999",
                                           "astro-ph/0001999", "not an id"])  # fmt: skip
    pattern = str(tmp_path / "bulk" / "arXiv_pdf_*.tar")
    result = cli.run("run", str(ids), "--pdf-tar", pattern, "--db", str(cli.db), "--out",
                     str(cli.out), "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "queued 2 new of 4 listed IDs (1 invalid)" in result.stdout
    assert "not in the tars: 2 listed IDs: 2301.99999, astro-ph/0001999" in result.stderr
    # said, not done quietly (a newcomer's trial found the version gone without a word)
    said = "versions: the tars hold one version of each paper: hep-th/9901001v1 listed, "
    assert said + "hep-th/9901001 queued\n" in result.stderr
    done = {r[0] for r in cli.query("SELECT id FROM jobs WHERE stage = 'done'")}
    assert done == {"1501.00002", "hep-th/9901001"}  # under the key the tar's member gives
    assert cli.status()["settings"]["pdf_tar"] == pattern
    # the tars are the queue's: `rpa run` without IDs takes all of their papers now
    again = cli.run("run", "--db", str(cli.db), "--no-progress", "--max-attempts", "1")
    assert "(0 new or changed)" in again.stdout and "queued 7 new of the tars' 9" in again.stdout
    assert again.returncode == 1  # the two broken members fail, alone
    bare = cli.run("run", "--db", str(tmp_path / "other.db"))
    assert bare.returncode == 2 and "give a file of IDs" in bare.stderr


def _lie_about_size(tar: Path, member: str, extra: int) -> None:
    """Make `member`'s header claim `extra` more bytes than it holds (checksum recomputed), as
    a tar written by a broken tool can."""
    with tarfile.open(tar) as t:
        offset = t.getmember(member).offset
    data = bytearray(tar.read_bytes())
    header = data[offset : offset + 512]
    size = int(header[124:136].rstrip(b"\0 ").decode(), 8) + extra
    header[124:136] = f"{size:011o}\0".encode()
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\0 ".encode()
    data[offset : offset + 512] = header
    tar.write_bytes(bytes(data))


def test_a_member_that_claims_more_than_it_holds_is_left_out_and_the_rest_indexed(
    tmp_path: Path,
) -> None:
    """Before: tarfile took the garbled next header for the end: the later papers were never
    indexed, nothing was said, and the liar was accepted with 4 KB of the next header."""
    pdfs = [p.read_bytes() for p in sample_pdfs()]
    folder = tmp_path / "bulk"
    folder.mkdir()
    names = [f"1501/1501.0000{i}.pdf" for i in (1, 2, 3)]
    tar = make_tar(folder / "arXiv_pdf_1501_001.tar", dict(zip(names, pdfs, strict=False)))
    _lie_about_size(tar, "1501/1501.00001.pdf", 4096)
    members, error = scan_tar(tar)
    assert [m.base for m in members] == ["1501.00002", "1501.00003"]
    assert error is not None and "damaged tar" in error and "1501.00001.pdf" in error
    for m in members:  # each one whole, nothing of a neighbour in it
        assert read_member(tar_path(m))[:5] == b"%PDF-"


def test_a_member_whose_claim_ends_on_a_later_header_is_refused_naming_what_it_swallowed(
    tmp_path: Path,
) -> None:
    """Before: a header claiming exactly the next member's header and data more than it holds
    ran the index on from the member after: the tar looked whole, the liar was accepted with
    1,536 bytes of another member, and the swallowed member was never indexed, unsaid. The
    index reads headers only, so it cannot see this; the check that reads the member anyway
    does: the liar fails as damaged_tar, naming the member it swallowed."""
    pdfs = [p.read_bytes() for p in sample_pdfs()]
    folder = tmp_path / "bulk"
    folder.mkdir()
    names = [f"1501/1501.0000{i}.pdf" for i in (1, 2, 3)]
    tar = make_tar(folder / "arXiv_pdf_1501_001.tar", dict(zip(names, pdfs, strict=False)))
    _lie_about_size(tar, names[0], 512 + -(-len(pdfs[1]) // 512) * 512)
    members, _ = scan_tar(tar)
    assert [m.base for m in members] == ["1501.00001", "1501.00003"]  # what headers show
    liar, honest = members
    assert swallowed(read_member(tar_path(honest))) == []
    assert [info.name for _, info in swallowed(read_member(tar_path(liar)))] == [names[1]]
    for pdf in sample_pdfs():  # a real paper holds no tar header on the grid
        assert swallowed(pdf.read_bytes()) == []
    cli = Cli(tmp_path, "unused")
    result = cli.run("run", "--pdf-tar", str(tar), "--db", str(cli.db), "--out", str(cli.out),
                     "--no-progress", "--max-attempts", "1")  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {r[0]: r[1:] for r in cli.query("SELECT id, stage, error_kind, error_message FROM jobs")}
    assert rows["1501.00003"][:2] == ("done", None)
    stage, kind, message = rows["1501.00001"]
    assert (stage, kind) == ("failed", "damaged_tar")
    assert "damaged tar" in message and repr(names[1]) in message, message
    assert "damaged_tar" in result.stdout + result.stderr, result.stdout + result.stderr
    assert "1501.00002" not in rows  # the swallowed paper stays lost, but it is named


def test_a_compressed_tar_says_why_it_is_not_read(tmp_path: Path) -> None:
    import gzip

    folder = tmp_path / "bulk"
    folder.mkdir()
    plain = make_tar(folder / "x.tar", {"1501/1501.00001.pdf": sample_pdfs()[0].read_bytes()})
    packed = folder / "arXiv_pdf_1501_001.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    cli = Cli(tmp_path, "unused")
    knobs = ["--db", str(cli.db), "--out", str(cli.out), "--no-progress"]
    result = cli.run("run", "--pdf-tar", str(packed), *knobs)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "gzip-compressed tar" in result.stderr and "decompress it first" in result.stderr
    again = cli.run("run", "--pdf-tar", str(packed), *knobs)
    assert "gzip-compressed tar" in again.stderr  # said again, from what the queue stored

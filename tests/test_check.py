"""The mechanisms each concern has one of: the PDF check (rpa.sources.check) wherever a PDF
comes from, a stored PDF's adoption and verification (rpa.sources.stored), and the atomic
write (rpa.files). In-process and quick: the sources' and the runs' tests cover them end to
end."""

from __future__ import annotations

import asyncio
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rpa import errors
from rpa.files import AtomicFile, atomic_file, atomic_write, temp_owner
from rpa.sources.check import PdfCheck
from rpa.sources.local import LocalSource
from rpa.sources.stored import adopt_pdf, open_pdf, verify_pdf
from rpa.sources.tar import check_member

PDF = b"%PDF-1.4\n" + b"x" * 5000
HTML = b"<html>\n<p>Access to this page has been restricted</p>\n</html>"


def local(path: Path, max_bytes: int) -> tuple[int, str]:
    async def fetch() -> tuple[int, str]:
        with ThreadPoolExecutor(1) as io:
            source = LocalSource(io, f"file://{path.parent}/{{id}}.pdf", max_bytes=max_bytes)
            got = await source.fetch(f"ext:{path.stem}", path)
        return got.bytes, str(got.sha256)

    return asyncio.run(fetch())


def failure(call: object, *args: object) -> tuple[str, str]:
    with pytest.raises(errors.JobError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value.kind, caught.value.message


def test_the_local_source_checks_size_magic_and_hash_with_its_messages(tmp_path: Path) -> None:
    pdf, html = tmp_path / "a.pdf", tmp_path / "b.pdf"
    pdf.write_bytes(PDF)
    html.write_bytes(HTML)
    assert local(pdf, 10**6) == (len(PDF), hashlib.sha256(PDF).hexdigest())
    assert failure(local, pdf, 100) == ("too_large", f"{len(PDF)} bytes, cap 100: {pdf}")
    start = "<html> <p>Access to this page has been restricted</p> </html>"[:60].strip()
    assert failure(local, html, 10**6) == ("not_pdf", f"not a PDF (starts {start!r}): {html}")
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")  # an empty file or body is said so, not "starts ''"
    assert failure(local, empty, 10**6) == ("not_pdf", f"not a PDF (empty): {empty}")
    assert failure(local, tmp_path / "no.pdf", 10) == (
        "not_found",
        f"no such file: {tmp_path / 'no.pdf'}",
    )


def test_a_tar_member_is_checked_the_same_way(tmp_path: Path) -> None:
    tar = tmp_path / "t.tar"
    tar.write_bytes(b"\0" * 512 + PDF + HTML)
    member, other = f"tar:512:{len(PDF)}:{tar}", f"tar:{512 + len(PDF)}:{len(HTML)}:{tar}"
    assert check_member(member, None) == (len(PDF), hashlib.sha256(PDF).hexdigest())
    assert failure(check_member, member, 10) == ("too_large", f"{len(PDF)} bytes, cap 10")
    kind, message = failure(check_member, other, 10**6)
    assert kind == "not_pdf" and message.startswith("the tar member is not a PDF (starts '<html>")
    cut = f"tar:512:{len(PDF) + 10**4}:{tar}"
    assert failure(check_member, cut, None)[0] == "truncated_tar"
    assert open_pdf(member).read() == PDF


def test_a_body_is_capped_and_sniffed_as_it_comes() -> None:
    check = PdfCheck(2048)
    assert failure(check.declared, 4096) == ("too_large", "4096 bytes declared, cap 2048")
    check.feed(PDF[:1000])
    check.feed(b"")
    assert failure(check.feed, b"y" * 2000) == ("too_large", "over 2048 bytes")
    short = PdfCheck(None)
    short.feed(b"%PDF-1.7")
    assert short.finish() == 8
    html = PdfCheck(None)
    assert failure(html.feed, HTML * 20)[0] == "not_pdf"  # as soon as 1024 bytes are in


def test_a_stored_pdf_is_adopted_or_verified_by_size_and_hash(tmp_path: Path) -> None:
    pdf, html = tmp_path / "a.pdf", tmp_path / "b.pdf"
    pdf.write_bytes(PDF)
    html.write_bytes(HTML)
    size, sha = len(PDF), hashlib.sha256(PDF).hexdigest()
    assert adopt_pdf(pdf) == (size, sha)
    assert adopt_pdf(html) is None and not html.exists()  # not a whole PDF: removed
    assert adopt_pdf(tmp_path / "none.pdf") is None
    assert verify_pdf(str(pdf), size, sha) and verify_pdf(str(pdf), None, None)
    assert not verify_pdf(str(pdf), size + 1, sha) and not verify_pdf(str(pdf), size, "0" * 64)
    assert not verify_pdf(str(tmp_path / "none.pdf"), size, sha)
    tar = tmp_path / "t.tar"
    tar.write_bytes(PDF)
    assert verify_pdf(f"tar:0:{size}:{tar}", size, sha)
    assert not verify_pdf(f"tar:0:{size}:{tmp_path / 'gone.tar'}", size, sha)


def test_a_file_appears_whole_under_its_final_name_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "out.json"
    with atomic_file(final, run_id="run1") as fh:
        (temp,) = final.parent.iterdir()
        assert temp_owner(temp.name) == "run1" and temp.name.endswith(".out.json")
        fh.write(b"half")
        assert not final.exists()
    assert final.read_bytes() == b"half" and list(final.parent.iterdir()) == [final]
    with pytest.raises(RuntimeError), atomic_file(final, run_id="run1") as fh:
        fh.write(b"other")
        raise RuntimeError
    assert final.read_bytes() == b"half" and list(final.parent.iterdir()) == [final]
    atomic_write(final, "é", run_id="run2", mode=0o640)
    assert final.read_text("utf-8") == "é" and final.stat().st_mode & 0o777 == 0o640
    private = tmp_path / "text.txt"
    with atomic_file(private, create_mode=0o600) as fh:
        assert os.fstat(fh.fileno()).st_mode & 0o077 == 0
    partial = AtomicFile(tmp_path / "dl.pdf", run_id="run3")
    partial.write(b"%PDF-")
    assert temp_owner(partial.temp.name) == "run3" and partial.temp.exists()
    partial.discard()
    assert not partial.temp.exists() and not (tmp_path / "dl.pdf").exists()

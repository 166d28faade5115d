"""arXiv's bulk PDF tars as a source: `rpa run --pdf-tar 'bulk/arXiv_pdf_*.tar' [IDS]`.

arXiv's sanctioned route to PDFs in bulk is its requester-pays S3 bucket: `pdf/arXiv_pdf_YYMM_NNN.
tar`, chunks of ~500 MB of one month (YYMM) in sequence (NNN), listed by
`pdf/arXiv_pdf_manifest.xml` (https://info.arxiv.org/help/bulk_data_s3.html). Inside a tar each
paper is one member under its month, named by its ID with the slash of an old-style ID removed
and, in the tars seen, no version:

    1501/1501.00001.pdf          new style (YYMM.NNNN from 0704, YYMM.NNNNN from 1501)
    0001/astro-ph0001001.pdf     old style: archive + YYMMNNN (no subject class)

(arxiv-public-datasets' `id_to_tarpdf` and CORE's ArXivFileGetter build exactly these names;
a `vN` suffix is accepted too.) rpa indexes every tar's members once (name, data offset, size)
into the queue, and reads a paper with one seek into the tar: the tar is never unpacked, and
no copy of a PDF is made (the record names `tar:OFFSET:SIZE:PATH`). A truncated tar, or a
member that is not a PDF, fails only its papers.
"""

from __future__ import annotations

import asyncio
import glob
import io
import os
import re
import tarfile
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import BinaryIO

from rpa import errors
from rpa.classify import classify
from rpa.ids import OLD_STYLE_ARCHIVES, parse_id
from rpa.queue.model import TarMember as Member
from rpa.sources.base import Download
from rpa.sources.check import check_pdf, opening

__all__ = [
    "TAR_PREFIX",
    "Member",
    "TarSource",
    "check_member",
    "member_key",
    "open_member",
    "parse_tar_path",
    "read_checked",
    "read_member",
    "scan_tar",
    "swallowed",
    "tar_files",
    "tar_path",
]

TAR_PREFIX = "tar:"
_MEMBER = re.compile(r"^(?:\./)?(?:[0-9]{4}/)?(?P<stem>[^/]+)\.pdf$")
_NEW = re.compile(r"^(?P<id>[0-9]{4}\.[0-9]{4,5})(?P<v>v[0-9]+)?$")
_OLD = re.compile(r"^(?P<archive>[a-z]+(?:-[a-z]+)?)(?P<num>[0-9]{7})(?P<v>v[0-9]+)?$")


def member_key(name: str) -> tuple[str, int | None] | None:
    """(arXiv ID without version, version or None) of a member name, None for anything
    that is not a paper's PDF named the way arXiv names them."""
    m = _MEMBER.match(name)
    if m is None:
        return None
    stem = m.group("stem")
    if n := _NEW.match(stem):
        v = n.group("v")
        return n.group("id"), int(v[1:]) if v else None
    if o := _OLD.match(stem):
        if o.group("archive") not in OLD_STYLE_ARCHIVES:
            return None
        v = o.group("v")
        return f"{o.group('archive')}/{o.group('num')}", int(v[1:]) if v else None
    return None


def tar_files(pattern: str) -> list[Path]:
    """The tars a --pdf-tar glob names, in order (a path without wildcards is itself)."""
    found = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern)))
    return [p for p in found if p.is_file()]


#: what a compressed tar starts with: such a tar cannot be read in place, one seek a paper
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
               b"\x28\xb5\x2f\xfd": "zstd"}  # fmt: skip
_BLOCK = 512


def scan_tar(path: Path) -> tuple[list[Member], str | None]:
    """Every paper member of a tar, read header by header (data is skipped, not read), and
    what is wrong with the tar (truncated, damaged, compressed), or None. Blocking.

    Python's tarfile takes a header it cannot read for the end of the archive. So where it
    stops, the next block must be the end (zeros, or the end of the file); if it is not, the
    member before claimed more bytes than it holds and ran into the next header: it is left
    out (never accepted with another's bytes), the next valid header is looked for, and the
    scan goes on from there, saying what was lost."""
    members: list[Member] = []
    problems: list[str] = []
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            kind = next((k for magic, k in _COMPRESSED.items() if head.startswith(magic)), None)
            if kind is not None:
                return [], (
                    f"a {kind}-compressed tar: rpa reads a tar in place, one seek a paper, "
                    "and cannot seek in a compressed one; decompress it first"
                )
            start: int | None = 0
            while start is not None:
                start = _scan_from(fh, path, start, members, problems)
    except (tarfile.TarError, EOFError, OSError) as exc:
        problems.append(
            f"damaged tar ({type(exc).__name__}: {exc}): its members up to there are indexed"
        )
    return members, "; ".join(problems) or None


def _scan_from(
    fh: BinaryIO, path: Path, start: int, members: list[Member], problems: list[str]
) -> int | None:
    """Index the members from byte `start` on; where to go on after damage, or None."""
    fh.seek(start)
    last: tarfile.TarInfo | None = None
    with tarfile.open(fileobj=fh, mode="r:") as tar:
        for info in _each(tar):
            last = info
            if info.isreg() and (key := member_key(info.name)) is not None:
                members.append(
                    Member(key[0], key[1], str(path), info.name, info.offset_data, info.size)
                )
        stopped = tar.offset
    fh.seek(stopped)
    block = fh.read(_BLOCK)
    if not block.strip(b"\0"):
        return None  # the end of the archive (or of the file): whole
    # past this member's header (or the bad block): the search always moves forward
    after = last.offset_data if last is not None else stopped + _BLOCK
    if last is not None and members and members[-1].name == last.name:
        members.pop()
    resume = _next_header(fh, after)
    liar = f"{last.name!r} claims {last.size:,} bytes and runs into the next header" if last else (
        f"no valid tar header at byte {stopped:,}")  # fmt: skip
    lost = f"the scan went on at byte {resume:,}" if resume is not None else "nothing after it"
    problems.append(f"damaged tar: {liar}; it is left out, {lost}")
    return resume


def _next_header(fh: BinaryIO, position: int) -> int | None:
    """The offset of the first valid tar header at or after `position` (block-aligned)."""
    position = -(-position // _BLOCK) * _BLOCK
    fh.seek(position)
    while block := fh.read(_BLOCK):
        if len(block) == _BLOCK and block.strip(b"\0"):
            try:
                tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
                return position
            except tarfile.HeaderError:
                pass
        position += _BLOCK
    return None


def _each(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (info := tar.next()) is not None:
        yield info


def tar_path(member: Member) -> str:
    """The PDF path a checkpoint records for a member: `tar:OFFSET:SIZE:PATH`."""
    return f"{TAR_PREFIX}{member.offset}:{member.size}:{member.tar}"


def parse_tar_path(path: str) -> tuple[Path, int, int]:
    """(tar, offset, size) of a `tar:` path."""
    offset, size, tar = path[len(TAR_PREFIX) :].split(":", 2)
    return Path(tar), int(offset), int(size)


def read_member(path: str) -> bytes:
    """A member's bytes, with one seek into its tar. Blocking. Raises a JobError when the tar
    is shorter than the member (truncated)."""
    tar, offset, size = parse_tar_path(path)
    try:
        with tar.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(size)
    except FileNotFoundError:
        raise errors.NotFound(f"the tar is gone: {tar}") from None
    if len(data) < size:
        raise errors.TruncatedTar(f"{tar} ends {size - len(data)} bytes into this member")
    return data


def open_member(path: str) -> io.BytesIO:
    """A member as a file object, for the extractors."""
    return io.BytesIO(read_member(path))


#: where a POSIX or GNU tar header holds its magic, `ustar`
_MAGIC_AT = 257
#: the swallowed members a DamagedTar names
_NAMED = 5


def swallowed(data: bytes) -> list[tuple[int, tarfile.TarInfo]]:
    """(position, header) of each valid tar header at a block boundary of a member's bytes
    whose member lies whole inside them: what a member swallowed whose header claims so many
    bytes that its end lands exactly on a later member's header (the index, read by headers
    alone, cannot see it: tarfile goes on from there). A PDF holds no such block (a tar
    inside a paper would have to sit on the tar's 512-byte grid with a good checksum).

    Only blocks with the magic at byte 257 are parsed, found without a scan of every byte:
    the byte at 257 of each block, taken with one strided slice (a byte in 512), says which
    blocks may hold it (~7 us a paper; a `find` of the magic over all of a 0.8 MB PDF took
    0.3 ms of the extraction process's CPU). A pre-POSIX (v7) header has no magic and is not
    seen; arXiv's tars, GNU tar's and Python's are ustar or GNU."""
    found: list[tuple[int, tarfile.TarInfo]] = []
    end = -(-len(data) // _BLOCK) * _BLOCK
    firsts = data[_MAGIC_AT::_BLOCK]  # the first byte of where each block's magic would be
    block = firsts.find(b"u")
    while block != -1:
        start = block * _BLOCK
        if data.startswith(b"ustar", start + _MAGIC_AT):
            try:
                info = tarfile.TarInfo.frombuf(
                    data[start : start + _BLOCK], tarfile.ENCODING, "surrogateescape"
                )
            except tarfile.HeaderError:
                pass
            else:
                if start + _BLOCK + -(-info.size // _BLOCK) * _BLOCK <= end:
                    found.append((start, info))
        block = firsts.find(b"u", block + 1)
    return found


def _read_whole(path: str) -> bytes:
    """A member's bytes, refused (DamagedTar) if they hold another member."""
    data = read_member(path)
    if inside := swallowed(data):
        tar, offset, size = parse_tar_path(path)
        names = [info.name for _, info in inside if info.isreg()]
        lost = ", ".join(repr(n) for n in names[:_NAMED]) + (
            f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")  # fmt: skip
        raise errors.DamagedTar(
            f"damaged tar {tar}: this member claims {size:,} bytes and holds another member's "
            f"header at byte {offset + inside[0][0]:,}; it is refused, and the members inside "
            f"it were never indexed: {lost or 'none named'}"
        )
    return data


def check_member(path: str, max_bytes: int | None) -> tuple[int, str]:
    """(size, sha256) of a member that passes a download's checks (`check_pdf`; None: no
    size cap) and holds no other member's header (`swallowed`: DamagedTar). Blocking."""
    size, sha256, _ = read_checked(path, max_bytes)
    return size, sha256


def read_checked(path: str, max_bytes: int | None) -> tuple[int, str, bytes]:
    """`check_member`'s (size, sha256), and the bytes it read: its extraction parses them,
    not a second read (~0.15 ms a paper). An oversized member is refused unread."""
    _, _, size = parse_tar_path(path)
    read: list[bytes] = []

    def opened() -> io.BytesIO:
        read.append(_read_whole(path))
        return io.BytesIO(read[0])

    size, sha256 = check_pdf(
        opened,
        size,
        max_bytes,
        not_pdf=lambda head: errors.NotPdf(f"the tar member is not a PDF ({opening(head)})"),
    )
    return size, sha256, read[0]


class TarSource:
    """Papers from the indexed bulk tars: one seek and one read each, in the I/O pool."""

    network = False

    def __init__(
        self,
        lookup: Callable[[str], Awaitable[Member | None]],
        io: Executor,
        *,
        max_bytes: int,
        checked: bool = True,
    ) -> None:
        self.lookup = lookup
        #: False: the member is named, not read; the extraction process checks it
        self.checked = checked
        self.io = io
        self.max_bytes = max_bytes

    async def fetch(self, job_id: str, dest: Path) -> Download:
        """`dest` is unused: the PDF stays in its tar."""
        start = time.perf_counter()
        member = await self.lookup(parse_id(job_id).base)
        if member is None:
            raise errors.NotFound(f"{job_id} is in none of the indexed tars")
        path = tar_path(member)
        where = f"{member.tar}!{member.name}"
        if not self.checked:
            return Download(path, parse_tar_path(path)[2], None, where, 0,
                            time.perf_counter() - start, check="tar")  # fmt: skip
        loop = asyncio.get_running_loop()
        try:
            size, sha256 = await loop.run_in_executor(self.io, check_member, path, self.max_bytes)
        except OSError as exc:
            raise classify(exc, f"reading {member.tar}", reading=True) from None
        return Download(path=path, bytes=size, sha256=sha256, final_url=where, status=0,
                        seconds=time.perf_counter() - start)  # fmt: skip

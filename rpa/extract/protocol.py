"""The pipes between ExtractPool (the parent) and one extraction process (the child).

    task pipe     parent ──▶ child    a `Task` (pickled by Connection.send), or STOP:
                                      a PDF to extract, or a `PaperTask` (a paper's whole work)
    result pipe   parent ◀── child    frames: an 8-byte big-endian length, then that many bytes

On the result pipe the empty frame (`ACK`) means "I have received the task" (a death from
then on is the paper's doing); any other frame is one pickled result dict (`extract_pdf`'s,
plus "rss_mb"). The parent reads that pipe with non-blocking `os.read` from a loop reader
callback, so it gets raw frames (Connection.recv would block); `split_frames` cuts them out of
what has arrived.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from rpa.queue.model import Job

__all__ = [
    "ACK",
    "CHECKS",
    "PDF_MISSING",
    "STOP",
    "Extractor",
    "PaperTask",
    "Task",
    "decode_result",
    "encode_result",
    "split_frames",
    "write_all",
]


class Extractor(Protocol):
    """What an extraction runs: rpa.extract.pdf.extract_pdf(pdf, text, extractor, run_id)."""

    def __call__(
        self, pdf_path: str, text_path: str, extractor: str = ..., run_id: str = ...,
        *, sync: bool = ..., data: bytes | None = ...,
    ) -> dict[str, object]: ...  # fmt: skip


#: how the PDF named by a PaperTask is checked before it is trusted (rpa.extract.paper)
CHECKS = ("download", "local", "tar", "verify")


@dataclass(frozen=True, slots=True)
class PaperTask:
    """One paper's work, as the main process sends it (pickled: small)."""

    job: Job  # as claimed, with its download fields filled in by the main process
    run_id: str
    extractor: str
    pdf: str  # where the bytes are: a private download, a local file, a tar path
    check: str  # one of CHECKS
    text_path: str
    outcome_path: str
    max_bytes: int | None = None
    publish_to: str | None = None  # a download: its final name
    first: bool = False  # the job's first claim: a file at publish_to is foreign, as long as
    vouch: str = ""  # until when the run's leases surely hold (rpa.queue.clock.Vouch)
    folder: str | None = None  # a local source: the folder every file must lie in
    metadata: dict[str, Any] | None = None
    keep_pdf: str = "always"  # a download's PDF once its paper is done: always | failed | never


#: (pdf path, text path, extractor, run id): `extract_pdf`'s arguments; or a paper's whole
#: work (rpa.extract.paper.work_paper)
Task = tuple[str, str, str, str] | PaperTask
#: sent instead of a task: exit
STOP = None
#: a result's "kind" when the stored PDF was not there to parse (never stored: the job
#: processor downloads it again, rpa.run.job)
PDF_MISSING = "pdf_missing"
_FRAME = struct.Struct("!Q")  # result frame header: payload length
#: the empty frame a worker sends when it has received a task
ACK = _FRAME.pack(0)


def encode_result(result: dict[str, object]) -> bytes:
    """One result as a frame."""
    payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    return _FRAME.pack(len(payload)) + payload


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to the (blocking) pipe `fd`; OSError when the reader is gone."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def split_frames(buffer: bytearray) -> Iterator[bytes]:
    """The payloads of the whole frames at the start of `buffer`, each removed from it as it
    is yielded (b"" for an ACK); a partial frame stays for the next read."""
    while len(buffer) >= _FRAME.size:
        (size,) = _FRAME.unpack_from(buffer)
        if len(buffer) < _FRAME.size + size:
            return
        payload = bytes(buffer[_FRAME.size : _FRAME.size + size])
        del buffer[: _FRAME.size + size]
        yield payload


def decode_result(payload: bytes) -> dict[str, object]:
    """A result frame's payload as the result dict."""
    result: dict[str, object] = pickle.loads(payload)
    return result

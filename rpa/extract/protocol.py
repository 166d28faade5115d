"""The pipes between ExtractPool (the parent) and one extraction process (the child).

    task pipe     parent ──▶ child    a `Task` (pickled by Connection.send), or STOP
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

__all__ = [
    "ACK",
    "PDF_MISSING",
    "STOP",
    "Task",
    "decode_result",
    "encode_result",
    "split_frames",
    "write_all",
]

#: (pdf path, text path, extractor, run id): `extract_pdf`'s arguments
Task = tuple[str, str, str, str]
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

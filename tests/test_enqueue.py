"""Queueing an ID list: the report, FIFO order across batches, strict mode, errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rpa.errors import InputError
from rpa.idlist import check_id_source
from rpa.queue import QueueStore, jobs, open_store, reads
from rpa.queue.enqueue import _read_ahead, enqueue_file


def _ids(tmp_path: Path) -> Path:
    path = tmp_path / "ids.txt"
    lines = [f"2301.{i:05d}" for i in range(1, 40)]
    lines[5] = "2313.00001  # bad month"
    lines[9] = "2301.00001"  # repeated
    lines[20] = "hep-th/9901001v2"
    path.write_text("# header\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QueueStore]:
    s = open_store(tmp_path / "q.db")
    yield s
    s.close()


def test_report_and_fifo_order_across_batches(tmp_path: Path, store: QueueStore) -> None:
    ids = _ids(tmp_path)
    seen: list[int] = []
    report = enqueue_file(store, ids, batch_size=7, on_invalid=lambda e: seen.append(e.line or 0))
    assert (report.lines, report.valid, report.new, report.invalid) == (39, 38, 37, 1)
    assert report.duplicates == 1 and seen == [7]
    assert report.errors[0].line == 7 and "13 is not a month" in report.errors[0].reason
    again = enqueue_file(store, ids, batch_size=5)
    assert (again.new, again.duplicates) == (0, 38)
    order = [job.id for job in jobs.claim(store, "r", 100, 60, 0.0)]
    expected = [line.split()[0] for line in ids.read_text().splitlines()[1:] if "bad" not in line]
    assert order == list(dict.fromkeys(expected))


def test_strict_refuses_the_whole_file(tmp_path: Path, store: QueueStore) -> None:
    with pytest.raises(InputError, match=r"1 invalid line .*line 7.*nothing was queued"):
        enqueue_file(store, _ids(tmp_path), strict=True, batch_size=4)
    assert reads.totals(store, 0.0).total == 0


def test_unreadable_list_is_an_input_error(tmp_path: Path, store: QueueStore) -> None:
    with pytest.raises(InputError, match="cannot read ID list"):
        enqueue_file(store, tmp_path / "missing.txt")
    with pytest.raises(InputError, match="cannot read ID list"):
        enqueue_file(store, tmp_path)  # a directory


def test_leaving_early_stops_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("".join(f"2301.{i:05d}\n" for i in range(1, 5001)))
    batches = _read_ahead(path, 10)
    assert next(batches).keys[0] == "2301.00001"
    batches.close()  # what a failing insert does to the loop in enqueue_file
    assert not [t for t in threading.enumerate() if t.name == "rpa-enqueue-read"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_id_list_is_named_so(tmp_path: Path, encoding: str) -> None:
    """Windows Notepad's UTF-16: every line was refused as 'contains a NUL character', with no
    word of why."""
    ids = tmp_path / "ids.txt"
    ids.write_bytes("2301.00001\n2301.00002\n".encode(encoding))
    with pytest.raises(InputError, match=r"is UTF-16 text .*: save it as UTF-8"):
        check_id_source(ids)
    ids.write_bytes(b"2301.00001\n\x00\x00\n")  # a NUL in a UTF-8 list: that line's error
    check_id_source(ids)

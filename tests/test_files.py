"""The atomic-write mechanism's durability: what survives a power cut.

A power cut cannot be produced in a test, so these record the `fsync` calls the real
mechanism makes (a spy on os.fsync that still fsyncs), and check their order against the
rename: the file's data before the rename, its folder after it, and every folder made for it
in its own parent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rpa.files import AtomicFile, atomic_write, make_folder


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each fsync call was about, in order: a folder's path or 'file:<name>'."""
    calls: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        calls.append(str(target) if target.is_dir() else f"file:{target.name}")
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


def test_a_commit_syncs_the_data_then_the_folder_holding_the_new_name(
    tmp_path: Path, synced: list[str]
) -> None:
    target = tmp_path / "outcome" / "2401" / "2401.00001.json"
    atomic_write(target, "{}")
    assert target.read_text() == "{}"
    # the two folders made for it, each synced in its parent; the data; the rename's folder
    assert synced[:2] == [str(tmp_path), str(tmp_path / "outcome")]
    assert synced[2].startswith("file:.rpa-tmp.")  # the data, under its temporary name
    assert synced[3:] == [str(target.parent)]  # after the rename: the name is durable


def test_a_discarded_file_leaves_nothing_and_syncs_no_folder(
    tmp_path: Path, synced: list[str]
) -> None:
    target = AtomicFile(tmp_path / "a.pdf", run_id="r1")
    target.write(b"%PDF-")
    target.discard()
    assert list(tmp_path.iterdir()) == []
    assert synced == []


def test_make_folder_syncs_only_the_folders_it_made(tmp_path: Path, synced: list[str]) -> None:
    (tmp_path / "a").mkdir()
    make_folder(tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c").is_dir()
    assert synced == [str(tmp_path / "a"), str(tmp_path / "a" / "b")]
    synced.clear()
    make_folder(tmp_path / "a" / "b" / "c")  # there already: nothing to make durable
    assert synced == []
    (tmp_path / "f").write_text("")
    with pytest.raises(OSError):
        make_folder(tmp_path / "f" / "g")  # a file in the way is an error, as for mkdir -p

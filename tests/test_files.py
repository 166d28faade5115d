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


def test_a_papers_work_fsyncs_only_its_pdf_before_its_final_name(
    tmp_path: Path, synced: list[str]
) -> None:
    """The extraction process writes the text and the record without an fsync each (the batch
    that commits the paper syncs the file system: the next test); the downloaded PDF is
    fsynced before its final name points at it, since a final name is trusted before any
    commit (a later claim adopts it)."""
    from conftest import sample_pdfs

    from rpa.extract.paper import work_paper
    from rpa.extract.pdf import extract_pdf
    from rpa.extract.protocol import PaperTask
    from rpa.queue.model import Job

    source = sample_pdfs()[0]
    private = tmp_path / "pdf" / ".rpa-tmp.r1.ab.x.pdf"
    private.parent.mkdir()
    private.write_bytes(source.read_bytes())
    task = PaperTask(
        job=Job("ext:x", 1, "queued", 0, 0), run_id="r1", extractor="pypdf", pdf=str(private),
        check="download", text_path=str(tmp_path / "text" / "x.txt"),
        outcome_path=str(tmp_path / "outcome" / "x.json"),
        publish_to=str(tmp_path / "pdf" / "x.pdf"), first=True,
    )  # fmt: skip
    result = work_paper(task, extract_pdf)
    assert result["ok"], result
    assert (tmp_path / "pdf" / "x.pdf").read_bytes() == source.read_bytes()
    files = [c for c in synced if c.startswith("file:")]
    assert files == ["file:.rpa-tmp.r1.ab.x.pdf"], synced  # the PDF's data, nothing else


def test_a_batch_syncs_the_file_system_before_it_commits(tmp_path: Path) -> None:
    """The order that makes a committed paper's files durable: syncfs(--out), then the
    transaction. The queue here is a stand-in that records the order (a power cut between
    the two cannot be produced); the syncfs is the real one."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from typing import Any

    import rpa.run.completer as completer_module
    from rpa.queue.model import Completion, Lease
    from rpa.run.completer import Completer

    order: list[str] = []
    real_sync = completer_module.sync_filesystem  # type: ignore[attr-defined]

    class Queue:
        async def run_fenced_many(self, fn: Any, confirm: Any, run_id: str,
                                  batch: list[Completion], now: float) -> list[bool]:  # fmt: skip
            order.append(f"commit {len(batch)}")
            return [True] * len(batch)

    def sync(folder: Path) -> None:
        order.append(f"syncfs {folder.name}")
        real_sync(folder)

    staged = []
    for i in range(3):
        private = tmp_path / f".rpa-tmp.r1.ab.{i}.json"
        private.write_text("{}")
        staged.append(private)

    async def main() -> list[bool]:
        with ThreadPoolExecutor(2) as io:
            done = Completer(Queue(), io, "r1", tmp_path)  # type: ignore[arg-type]
            runner = asyncio.create_task(done.run())
            row: dict[str, Any] = {}
            answers = await asyncio.gather(*(
                done.complete(Completion(Lease(f"ext:{i}", 1), str(tmp_path / f"{i}.json"), row,
                                         None, 0, "", None, None, None, "", 0.0), private)
                for i, private in enumerate(staged)
            ))  # fmt: skip
            runner.cancel()
            return list(answers)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(completer_module, "sync_filesystem", sync)
        assert asyncio.run(main()) == [True, True, True]
    assert order == [f"syncfs {tmp_path.name}", "commit 3"]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["0.json", "1.json", "2.json"]


def test_a_batch_waits_longer_only_while_papers_wait_for_the_extraction(tmp_path: Path) -> None:
    """The linger's rule: LINGER_BUSY while the extract gate has papers waiting (the workers
    holding answers then idle no core; LINGER_BUSY_LOCAL where no paper is downloaded), else
    LINGER; ENOUGH completions do not wait. The rule, not the clock, is under test."""
    from typing import Any

    from rpa.run.completer import ENOUGH, LINGER, LINGER_BUSY, LINGER_BUSY_LOCAL, Completer

    busy = [False]
    http = Completer(None, None, "r1", tmp_path, saturated=lambda: busy[0])  # type: ignore[arg-type]
    tar = Completer(None, None, "r1", tmp_path, lambda: busy[0], downloads=False)  # type: ignore[arg-type]
    asked = []
    for pending in (1, ENOUGH - 1, ENOUGH):
        http._pending = tar._pending = [Any] * pending  # type: ignore[list-item]
        for busy[0] in (False, True):
            asked.append((pending, busy[0], http.linger_seconds(), tar.linger_seconds()))
    assert asked == [
        (1, False, LINGER, LINGER), (1, True, LINGER_BUSY, LINGER_BUSY_LOCAL),
        (ENOUGH - 1, False, LINGER, LINGER), (ENOUGH - 1, True, LINGER_BUSY, LINGER_BUSY_LOCAL),
        (ENOUGH, False, 0.0, 0.0), (ENOUGH, True, 0.0, 0.0),
    ]  # fmt: skip
    assert LINGER < LINGER_BUSY < LINGER_BUSY_LOCAL


def test_enough_completions_end_a_batchs_wait(tmp_path: Path) -> None:
    """A fast pipeline's papers do not each wait the whole linger: with an hour's linger, the
    ENOUGH-th completion commits them all at once (one transaction). The queue is a stand-in
    that records the commits; the syncfs and the renames are real."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from typing import Any, Literal

    from rpa.queue.model import Completion, Lease
    from rpa.run.completer import ENOUGH, Completer

    commits: list[int] = []

    class Queue:
        async def run_fenced_many(self, fn: Any, confirm: Any, run_id: str,
                                  batch: list[Completion], now: float) -> list[bool]:  # fmt: skip
            commits.append(len(batch))
            return [True] * len(batch)

    staged = []
    for i in range(ENOUGH):
        private = tmp_path / f".rpa-tmp.r1.ab.{i}.json"
        private.write_text("{}")
        staged.append(private)

    lingering = asyncio.Event()

    class Watched(asyncio.Event):
        async def wait(self) -> Literal[True]:
            lingering.set()  # the batch waits for more now
            return await super().wait()

    def completion(i: int) -> Completion:
        return Completion(Lease(f"ext:{i}", 1), str(tmp_path / f"{i}.json"), {}, None, 0, "",
                          None, None, None, "", 0.0)  # fmt: skip

    async def main() -> list[bool]:
        with ThreadPoolExecutor(2) as io:
            done = Completer(Queue(), io, "r1", tmp_path, saturated=lambda: True)  # type: ignore[arg-type]
            done.busy = 3600.0
            done._enough = Watched()
            runner = asyncio.create_task(done.run())
            first = asyncio.ensure_future(done.complete(completion(0), staged[0]))
            await lingering.wait()  # its batch would wait an hour for more, but for the rest:
            rest = [done.complete(completion(i), staged[i]) for i in range(1, ENOUGH)]
            answers = await asyncio.wait_for(asyncio.gather(first, *rest), timeout=30)
            runner.cancel()
            return list(answers)

    assert asyncio.run(main()) == [True] * ENOUGH
    assert commits == [ENOUGH]
    assert len(list(tmp_path.glob("[0-9]*.json"))) == ENOUGH


def test_every_connection_to_an_sqlite_queue_commits_to_disk(tmp_path: Path) -> None:
    """The queue's side of a power cut: SQLite in WAL mode with `synchronous = FULL` syncs the
    WAL at every commit, so a commit that returned survives one (with NORMAL the last commits
    could be lost, and their papers done again). Every connection sets it: the run's first,
    and each database thread's own (opened later, `create=False`)."""
    import asyncio

    from rpa.queue import open_store
    from rpa.queue.aio import AsyncQueue

    db = tmp_path / "q.db"
    first = open_store(db)
    try:
        row = first.sql.one("PRAGMA synchronous")
        assert row is not None and row["synchronous"] == 2  # FULL
        mode = first.sql.one("PRAGMA journal_mode")
        assert mode is not None and mode["journal_mode"] == "wal"
    finally:
        first.close()

    async def thread_setting() -> int:
        queue = AsyncQueue(db)
        await queue.open(create=False)
        try:
            row = await queue.run(lambda store: store.sql.one("PRAGMA synchronous"))
            return int(row["synchronous"]) if row is not None else -1
        finally:
            await queue.close()

    assert asyncio.run(thread_setting()) == 2

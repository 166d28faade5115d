"""The outcome file under --out is a copy of the queue's record: a run killed between a stage's
commit and the file's rewrite leaves a note (rpa.stages.records), and the next start rewrites
the record from the queue. Real CLI, real files."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import sample_pdfs
from test_stages import IDS, KNOBS, _setup
from test_stages_store import _done_queue

from rpa.queue.aio import AsyncQueue
from rpa.stages import records, store
from rpa.stages.records import JOURNAL
from rpa.testing.mirror import Mirror

WORDS = ["--stage", "words=mystages:words"]


def test_a_record_a_kill_left_without_its_stage_result_is_rewritten_at_the_next_start(
    tmp_path: Path,
) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror:
        cli, ids = _setup(tmp_path, mirror)
        knobs = cli.knobs(**KNOBS)
        first = cli.run("run", str(ids), *knobs, *WORDS)
        assert first.returncode == 0, first.stderr + first.stdout
        journal = cli.out / JOURNAL
        assert journal.is_dir() and not list(journal.iterdir())  # every note removed
        rows = cli.query(
            "SELECT j.id, j.outcome_path, r.outcome_json FROM jobs j JOIN results r ON r.id = j.id"
        )
        queue = {job: (Path(path), json.loads(text)) for job, path, text in rows}
        for path, record in queue.values():  # the files are the queue's records
            assert json.loads(path.read_text()) == record and "words" in record["stages"]
        # What a kill -9 between the commit and the rewrite leaves (made here by hand: no kill
        # lands in that window on purpose): the queue has the result, the file has the
        # record as it was before, and the killed run's note names the paper.
        (run_id,) = cli.query("SELECT id FROM runs")[0]
        path, record = queue[IDS[2]]
        stale = {k: v for k, v in record.items() if k != "stages"}
        path.write_text(json.dumps(stale))
        (journal / f"{run_id}.0123456789ab").write_text(json.dumps({"id": IDS[2]}))
        # nothing is left to run, but a record is to repair: the run starts, and repairs it
        again = cli.run("resume", *knobs)
        assert again.returncode == 0, again.stderr + again.stdout
        assert "nothing left to do" not in again.stdout
        assert "rewrote 1 outcome records a stopped run left" in " ".join(again.stderr.split())
        assert json.loads(path.read_text()) == record
        assert not list(journal.iterdir())
        for path, record in queue.values():
            assert json.loads(path.read_text()) == record
        # with nothing noted, nothing left: no run
        bare = cli.run("resume", *knobs)
        assert "nothing left to do" in bare.stdout, bare.stdout + bare.stderr


async def test_two_stages_that_finish_together_leave_the_file_with_both_results(
    tmp_path: Path,
) -> None:
    """Two stages of one paper commit one after the other and their rewrites land in the
    other order (what the run's I/O threads, or two processes, can do; made here by calling
    them in that order): the file ends as the queue's record, with both results."""
    db = str(tmp_path / "q.db")
    s = _done_queue(db)
    try:
        (a,) = store.claim(s, "kp", "1", [], "run-a", 0, 1, time.time())
        (b,) = store.claim(s, "post", "1", [], "run-a", 0, 1, time.time())
        assert a.job_id == b.job_id
        first = store.complete(s, a.job_id, "kp", "run-a", a.token, {"k": 1}, 0.1, 1.0)
        second = store.complete(s, b.job_id, "post", "run-a", b.token, {"p": 2}, 0.1, 1.0)
    finally:
        s.close()
    assert first is not None and second is not None
    path = tmp_path / "record.json"
    queue = AsyncQueue(db)
    with ThreadPoolExecutor(1) as io:
        try:
            await records.settle(queue, io, path, b.job_id, second, "run-a", None)
            note = records.mark(tmp_path, "run-a", a.job_id)
            await records.settle(queue, io, path, a.job_id, first, "run-a", note)
        finally:
            await queue.close()
    assert json.loads(path.read_text())["stages"] == {"kp": {"k": 1}, "post": {"p": 2}}
    assert not list((tmp_path / JOURNAL).iterdir())  # the note is dropped once settled

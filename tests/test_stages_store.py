"""The user stages' checkpoints (rpa.stages.store), one contract for both backends: a real
SQLite file and a real PostgreSQL server. Claims are fenced (two runs claiming at once, each
on its own connection, never get the same paper), completes and failures are fenced by the
lease token, a new version re-opens done rows, `after` waits for the stage it names."""

from __future__ import annotations

import json
import threading
import time

from rpa.queue import QueueStore, open_store, runs
from rpa.queue.model import RunInfo
from rpa.stages import store

IDS = [f"ext:p{i:03}" for i in range(40)]


def _done_queue(db: str) -> QueueStore:
    s = open_store(db, create=True)
    s.enqueue(IDS, time.time())
    with s.sql.transaction():
        s.sql.execute("UPDATE jobs SET stage = 'done', done_at = ?", (time.time(),))
        for i in IDS:
            s.sql.execute(
                "INSERT INTO results (id, outcome_json) VALUES (?, ?)",
                (i, json.dumps({"id": i, "title": f"title of {i}"})),
            )
    for run_id in ("run-a", "run-b"):
        runs.register_run(
            s, RunInfo(id=run_id, command="run", started_at=runs.clock(s),
                       heartbeat_seconds=60.0, settings_json="{}"),
        )  # fmt: skip
    return s


def test_claims_are_fenced_and_checkpoints_merge_into_the_record(queue_db: str) -> None:
    s = _done_queue(queue_db)
    try:
        a = store.claim(s, "sum", "1", [], "run-a", 0, 10, time.time())
        assert [c.job_id for c in a] == IDS[:10] and a[0].record["title"] == "title of ext:p000"
        rest = store.claim(s, "sum", "1", [], "run-b", 0, 100, time.time())
        assert {c.job_id for c in rest} == set(IDS[10:])  # never what run-a holds
        first = a[0]
        assert store.complete(s, first.job_id, "sum", "run-b", first.token, {}, 0.1, 1.0) is None
        record = store.complete(s, first.job_id, "sum", "run-a", first.token, {"n": 3}, 0.1, 1.0)
        assert record is not None and record["stages"] == {"sum": {"n": 3}}
        row = s.sql.one("SELECT outcome_json FROM results WHERE id = ?", (first.job_id,))
        assert row is not None and json.loads(row["outcome_json"])["stages"]["sum"] == {"n": 3}
        # a failure to retry later, one for good, the rest given back
        assert store.fail(
            s,
            a[1].job_id,
            "sum",
            "run-a",
            a[1].token,
            final=False,
            counted=True,
            next_at=time.time() + 60,
            kind="timeout",
            message="slow",
            now=1.0,
        )
        assert store.fail(s, a[2].job_id, "sum", "run-a", a[2].token, final=True, counted=True,
                          next_at=0.0, kind="internal", message="bug", now=1.0)  # fmt: skip
        store.give_back(s, "sum", "run-a", [(c.job_id, c.token) for c in a[3:]], 0.0)
        store.release_run(s, "run-b")
        due = store.next_due(s, [("sum", "1")], "run-c", time.time())
        assert due is not None and due <= time.time()  # the given-back ones are due now
        counts = store.counts(s)["sum"]
        assert (counts["done"], counts["failed"], counts["retry"]) == (1, 1, len(IDS) - 2)
        assert counts["failures"] == {"internal": 1}
        again = store.claim(s, "sum", "1", [], "run-a", 0, 100, time.time())
        assert len(again) == len(IDS) - 3  # not done, not failed, not the one due in 60 s
        # a later stage waits for the earlier one
        after = store.claim(s, "later", "1", [("sum", "1")], "run-b", 0, 100, time.time())
        assert [c.job_id for c in after] == [first.job_id]
        assert after[0].results == {"sum": {"n": 3}}
        # a new version re-opens what is done, failed or waiting (not what a live run holds),
        # at once and with fresh attempts
        v2 = store.claim(s, "sum", "2", [], "run-b", 0, 100, time.time())
        assert {c.job_id for c in v2} == {first.job_id, a[1].job_id, a[2].job_id}
        assert {c.attempts for c in v2} == {0}
        assert store.export_columns(s) == [("sum", "n")]
        reopened = store.reopen(s, "sum", ["internal"], time.time())
        assert reopened == {}  # a[2] is running at version 2 now, not failed
    finally:
        s.close()


def test_two_runs_claiming_at_once_never_share_a_paper(queue_db: str) -> None:
    _done_queue(queue_db).close()
    got: dict[str, list[str]] = {}
    start = threading.Barrier(2)

    def claim(run_id: str) -> None:
        s = open_store(queue_db, create=False)
        try:
            start.wait()
            mine: list[str] = []
            while batch := store.claim(s, "sum", "1", [], run_id, 0, 3, time.time()):
                mine += [c.job_id for c in batch]
            got[run_id] = mine
        finally:
            s.close()

    threads = [threading.Thread(target=claim, args=(r,)) for r in ("run-a", "run-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not set(got["run-a"]) & set(got["run-b"])
    assert sorted(got["run-a"] + got["run-b"]) == IDS

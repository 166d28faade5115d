"""The files rpa writes on request (`rpa export -o`, `--metrics-file`) never replace the queue
database, nor a file of the user's that is not rpa's: found by an adversary's trial, where
`rpa export -o rpa.db` left the queue 0 bytes and `--metrics-file q.db` replaced it while the
run said "finished". The real CLI on real SQLite queues."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import Cli, clean_env, sample_pdfs, write_ids

from rpa.queue import jobs, open_store, runs
from rpa.queue.model import RunInfo
from rpa.testing.mirror import Mirror


def _rpa(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpa", *args], cwd=cwd, env=clean_env(), capture_output=True,
        text=True, timeout=90,
    )  # fmt: skip


def _queue(db: Path) -> None:
    """A queue with two papers done."""
    store = open_store(db)
    store.enqueue(["2301.00001", "2301.00002"], 0.0)
    runs.register_run(store, RunInfo("r", "run", 0.0, 5.0, "{}"))
    for job in jobs.claim(store, "r", 2, 1e9, 0.0):
        jobs.complete(store, "r", job.lease, {"id": job.id, "pdf": {}}, "/o.json", 0.0)
    store.close()


def _done(cwd: Path, db: str) -> int:
    status = _rpa(cwd, "status", "--db", db, "--json")
    assert status.returncode == 0, status.stderr
    return int(json.loads(status.stdout)["totals"]["done"])


def test_export_refuses_to_write_over_the_queue_and_replaces_a_file_whole(
    tmp_path: Path,
) -> None:
    _queue(tmp_path / "rpa.db")
    _queue(tmp_path / "q.db")
    for args in (
        ("-o", "rpa.db"),
        ("--db", "q.db", "-o", "q.db"),
        ("--db", "q.db", "-o", "q.db-wal"),
    ):
        refused = _rpa(tmp_path, "export", *args)
        assert refused.returncode == 2, (args, refused.stderr)
        assert "is the queue database's file: name another file" in refused.stderr
    assert _done(tmp_path, "rpa.db") == 2 and _done(tmp_path, "q.db") == 2
    (tmp_path / "out.csv").write_text("an older export\n")
    made = _rpa(tmp_path, "export", "-o", "out.csv")
    assert made.returncode == 0, made.stderr
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0].startswith("id,") and len(lines) == 3
    assert not [p.name for p in tmp_path.iterdir() if ".rpa-tmp" in p.name]


def test_a_metrics_file_that_is_the_queue_or_a_users_file_is_refused(tmp_path: Path) -> None:
    _queue(tmp_path / "q.db")
    ids = write_ids(tmp_path / "ids.txt", ["2301.00003"])
    (tmp_path / "notes.txt").write_text("my notes\n")
    common = ["--db", "q.db", "--pdf-url", "http://127.0.0.1:9/{id}", "--no-progress"]
    for name, said in (
        ("q.db", "--metrics-file q.db is the queue database's file: name another file"),
        ("notes.txt", "--metrics-file notes.txt exists and is not a metrics file rpa wrote"),
    ):
        run = _rpa(tmp_path, "run", str(ids), *common, "--metrics-file", name)
        assert run.returncode == 2 and said in run.stderr, run.stderr
        status = _rpa(tmp_path, "status", "--db", "q.db", "--metrics-file", name)
        assert status.returncode == 2 and said in status.stderr, status.stderr
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"
    assert _done(tmp_path, "q.db") == 2
    # nothing was queued by the refused runs
    store = open_store(tmp_path / "q.db", readonly=True)
    try:
        assert [r["id"] for r in store.sql.rows("SELECT id FROM jobs ORDER BY id")] == [
            "2301.00001", "2301.00002",
        ]  # fmt: skip
    finally:
        store.close()
    # a metrics file rpa wrote is replaced, as it is at every beat
    written = _rpa(tmp_path, "status", "--db", "q.db", "--metrics-file", "m.txt")
    again = _rpa(tmp_path, "status", "--db", "q.db", "--metrics-file", "m.txt")
    assert written.returncode == 0 and again.returncode == 0, again.stderr
    assert (tmp_path / "m.txt").read_text().startswith("# ")


def test_an_out_folder_holds_one_queues_files(tmp_path: Path) -> None:
    """A second queue on the first's --out is refused before it queues anything (it replaced
    the first's files for the same IDs, whose records then named PDFs the other had
    written); the folder's marker can be removed to hand it over."""
    one, two = sample_pdfs()[:2]
    with Mirror({"p": one}) as first, Mirror({"p": two}) as second:
        a = Cli(tmp_path, first.url_template, str(tmp_path / "a.db"))
        ids = write_ids(tmp_path / "ids.txt", ["ext:p"])
        ran = a.run("run", str(ids), *a.knobs(progress=False))
        assert ran.returncode == 0, ran.stdout + ran.stderr
        record = (a.out / "outcome" / "ext" / "ext_p.json").read_bytes()
        b = Cli(tmp_path, second.url_template, str(tmp_path / "b.db"))
        refused = b.run("run", str(ids), *b.knobs(progress=False))
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"--out {a.out} holds the results of another queue" in said, said
        assert f"remove {a.out / '.rpa-queue'} and its files may be replaced" in said
        assert (a.out / "outcome" / "ext" / "ext_p.json").read_bytes() == record
        assert not (tmp_path / "b.db").exists()  # refused: nothing made
        # the first queue goes on there as before
        again = a.run("resume", *a.knobs(progress=False))
        assert again.returncode == 0, again.stdout + again.stderr
        # the first queue deleted (starting over): the folder is taken over, and said so
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp_path / 'a.db'}{suffix}").unlink(missing_ok=True)
        taken = b.run("run", str(ids), *b.knobs(progress=False))
        assert taken.returncode == 0, taken.stdout + taken.stderr
        said = " ".join((taken.stdout + taken.stderr).split())
        assert (
            f"--out {a.out} was the results of the queue {tmp_path / 'a.db'}, which is gone" in said
        )
        # and handed over by hand: the marker removed
        c = Cli(tmp_path, second.url_template, str(tmp_path / "c.db"))
        assert c.run("run", str(ids), *c.knobs(progress=False)).returncode == 2
        (a.out / ".rpa-queue").unlink()
        handed = c.run("run", str(ids), *c.knobs(progress=False))
        assert handed.returncode == 0, handed.stdout + handed.stderr

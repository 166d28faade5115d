"""End to end: the real CLI, a real HTTP server on 127.0.0.1, real PDFs, real SQLite, real
extraction processes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from conftest import Cli, sample_pdfs, wait_for, write_ids

from rpa.queue import open_store
from rpa.testing.mirror import Mirror


def sample_ids() -> list[str]:
    return [f"ext:{p.stem}" for p in sample_pdfs()]


def test_a_batch_completes_and_a_broken_pdf_fails_alone(
    cli: Cli, sample_mirror: Mirror, tmp_path: Path
) -> None:
    ids = [
        *sample_ids(),
        "ext:qpdf--bad7-attributeerror",  # pypdf raises AttributeError opening it
        "ext:qpdf--not-a-pdf",  # served as a PDF, but is text
        "ext:no-such-paper",  # 404
        "not an id at all",  # invalid line: reported, the rest still runs
        sample_ids()[0],  # duplicate: counted once
    ]
    ids_file = write_ids(tmp_path / "ids.txt", ids)
    result = cli.run("run", str(ids_file), *cli.knobs(workers=20, extract_workers=2))
    assert result.returncode == 1, result.stdout + result.stderr  # some failed
    assert "ids.txt:10" in result.stderr and "not an id at all" in result.stderr
    assert "queued 9 new of 10 valid IDs" in result.stdout

    status = cli.status()
    assert status["totals"]["done"] == len(sample_ids())
    assert status["totals"]["failed"] == 3
    kinds = {f["kind"]: f for f in status["failures"]}
    assert set(kinds) == {"invalid_pdf", "not_pdf", "not_found"}
    assert kinds["not_found"]["sample_id"] == "ext:no-such-paper"
    assert "404" in kinds["not_found"]["sample_message"]
    assert status["stuck"]["count"] == 0

    # each PDF was fetched once; the 404 is permanent, so it was asked for only once too
    for job in sample_ids():
        assert sample_mirror.requests(job.removeprefix("ext:")) == 1
    assert sample_mirror.requests("no-such-paper") == 1

    exported = cli.run("export", "--db", str(cli.db), "--format", "jsonl")
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert sorted(r["id"] for r in records) == sorted(sample_ids())
    for record in records:
        assert record["page_count"] > 0
        assert record["word_count"] > 100
        assert record["title"]
        assert record["arxiv_id"] is None  # ext: papers are not passed off as arXiv papers
        assert len(record["pdf"]["sha256"]) == 64
        text = Path(record["text_path"]).read_text()
        assert "[PAGE 1]" in text
        assert Path(record["pdf"]["path"]).is_relative_to(cli.out)
    csv_out = cli.run("export", "--db", str(cli.db), "--format", "csv")
    assert csv_out.stdout.splitlines()[0].startswith("id,arxiv_id,version,title")
    assert len(csv_out.stdout.splitlines()) >= 1 + len(sample_ids())

    # a second run with the same list is idempotent: nothing new, nothing fetched again
    again = cli.run("run", str(ids_file), *cli.knobs(workers=5))
    assert "queued 0 new" in again.stdout
    assert sample_mirror.total_requests == len(sample_ids()) + 3


def test_usage_errors_exit_2(cli: Cli, tmp_path: Path) -> None:
    ids_file = write_ids(tmp_path / "ids.txt", ["2301.00001", "2301.13"])
    strict = cli.run("run", str(ids_file), "--strict", *cli.knobs())
    assert strict.returncode == 2
    assert "nothing was queued" in strict.stderr
    bad_knob = cli.run("run", str(ids_file), *cli.knobs(workers=0))
    assert bad_knob.returncode == 2 and "workers" in bad_knob.stderr
    env_knob = cli.run("run", str(ids_file), *cli.knobs(), RPA_EXTRACT_POOL="fork")
    # a knob with fixed values is checked by the option itself, which names them
    assert env_knob.returncode == 2 and "RPA_EXTRACT_POOL" in env_knob.stderr
    assert "'fork' is not one of 'process', 'thread'" in env_knob.stderr
    no_db = cli.run("resume", "--db", str(tmp_path / "missing.db"))
    assert no_db.returncode == 2
    assert cli.run("status", "--db", str(tmp_path / "missing.db")).returncode == 2


@pytest.mark.timeout(180)
def test_kill_9_then_resume_loses_nothing_and_refetches_nothing(
    tmp_path: Path, queue_db: str
) -> None:
    # 48 jobs: the 6 samples, each under 8 names, so the run lasts long enough to be killed
    files = {f"{p.stem}-{i}": p for p in sample_pdfs() for i in range(8)}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template, queue_db)
        ids_file = write_ids(tmp_path / "ids.txt", [f"ext:{name}" for name in files])
        knobs = cli.knobs(workers=50, extract_workers=1, progress=False, heartbeat_seconds=1)
        proc = cli.popen("run", str(ids_file), *knobs)
        try:
            wait_for(lambda: cli.count("stage = 'done'") >= 5, 120, "some papers done")
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        # what was checkpointed as downloaded (or further) at the moment of the kill
        fetched_before = {
            row[0] for row in cli.query("SELECT id FROM jobs WHERE stage != 'queued'")
        }
        done_before = cli.query("SELECT count(*) FROM jobs WHERE stage = 'done'")[0][0]
        assert done_before < len(files), "the run finished before the kill: test proves nothing"
        requests_before = {name: mirror.requests(name) for name in files}

        # status reads the database left by the killed run: once its heartbeat is 8 s old
        # (by the database's clock; never judged by its pid), it is dead and its leases stuck
        wait_for(lambda: cli.status()["runs"][0]["status"] == "dead", 60, "the run found dead")
        stuck = cli.status()
        assert stuck["stuck"]["count"] == stuck["totals"]["in_progress"] > 0

        resumed = cli.run("resume", *cli.knobs(workers=50, extract_workers=2), timeout=150)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "reclaimed" in resumed.stdout

        after = cli.status()
        assert after["totals"]["done"] == len(files)
        assert after["stuck"]["count"] == 0
        # nothing lost, nothing duplicated
        results = cli.query("SELECT id FROM results")
        assert len(results) == len({r[0] for r in results}) == len(files)
        # no PDF that was checkpointed before the kill was fetched again
        for job in fetched_before:
            name = job.removeprefix("ext:")
            assert mirror.requests(name) == requests_before[name] == 1, job
        # a download cut by the kill may be fetched again, but nothing more than once more
        assert all(mirror.requests(name) <= 2 for name in files)
        # no temporary file survived, and every outcome file is whole JSON
        assert not list(cli.out.rglob(".rpa-tmp.*"))
        outcomes = list((cli.out / "outcome").rglob("*.json"))
        assert len(outcomes) == len(files)
        for path in outcomes:
            json.loads(path.read_text())


@pytest.mark.timeout(180)
def test_the_demo_says_where_its_results_went_and_when_it_already_ran(tmp_path: Path) -> None:
    cli = Cli(tmp_path, "unused")
    first = cli.run("demo", "--workers", "10", "--no-progress", timeout=150)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"results: {tmp_path / 'rpa-demo-data'}" in first.stdout
    assert "next: rpa status --db rpa-demo.db" in first.stdout
    assert "rpa export --db rpa-demo.db" in first.stdout
    again = cli.run("demo", timeout=60)
    assert again.returncode == 0
    assert again.stdout.startswith("the demo already ran: 6 papers done, 0 failed")
    assert "rpa demo --fresh" in again.stdout and "serving" not in again.stdout
    fresh = cli.run("demo", "--fresh", "--workers", "10", "--no-progress", timeout=150)
    assert fresh.returncode == 0 and "queued 6 new of 6 valid IDs" in fresh.stdout
    assert cli.run("status", "--db", str(tmp_path / "rpa-demo.db")).returncode == 0


def test_the_demo_leaves_a_queue_of_other_papers_and_its_folder_alone(tmp_path: Path) -> None:
    """`rpa demo --db rpa.db` on the user's own queue queued the samples there and moved its
    pdf_url to the demo's mirror; with --fresh it deleted that queue, and --out's folder."""
    cli = Cli(tmp_path, "unused")
    store = open_store(tmp_path / "mine.db")
    store.enqueue(["2301.00001", "2301.00002"], 0.0)
    store.close()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "keep.txt").write_text("mine")
    said = "mine.db holds 2 papers that are not the demo's: the demo keeps a queue of its own"
    for extra in ((), ("--fresh",), ("--fresh", "--out", "results")):
        refused = cli.run("demo", "--db", "mine.db", *extra, timeout=60)
        assert refused.returncode == 2 and said in refused.stderr, (extra, refused.stderr)
        assert (tmp_path / "mine.db").exists() and (tmp_path / "results" / "keep.txt").exists()
    mine = Cli(tmp_path, "unused", str(tmp_path / "mine.db"))
    assert [r[0] for r in mine.query("SELECT id FROM jobs ORDER BY id")] == [
        "2301.00001", "2301.00002",
    ]  # fmt: skip
    # --out alone: the demo's own queue; in a folder of yours, --fresh deletes only the
    # demo's files (it deleted the folder, absolute --out given as the demo had run with)
    results = str(tmp_path / "results")
    ran = cli.run("demo", "--out", results, "--no-progress", timeout=150)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert len(list((tmp_path / "results" / "outcome").rglob("*.json"))) == 6
    fresh = cli.run("demo", "--fresh", "--out", results, "--no-progress", timeout=150)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert f"kept in {results}/ what is not the demo's (1 file)" in fresh.stderr
    assert (tmp_path / "results" / "keep.txt").read_text() == "mine"
    assert len(list((tmp_path / "results" / "outcome").rglob("*.json"))) == 6  # the new run's

"""Hostile servers, signals and broken local state, with the real CLI and real servers.

A remote server cannot stop rpa (a Retry-After of '²'), blow up its memory (gzip bombs), hold a
download slot for ever (a body that trickles), or pull it to another site (redirects). A
SIGTERM to rpa's whole process group is a graceful stop, and charges no paper. A broken,
too-new or read-only database, or an unusable --out, is one line and exit 2, before any work.
Waits are said, with what rpa waits for and until when.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Cli, clean_env, sample_pdfs, write_ids
from test_crash import descendants, has_open
from test_faults import FAST, interrupt, run_log, wait_until

from rpa.queue import catalog, open_store
from rpa.testing.mirror import Fault, Mirror

PAPERS = {p.stem: p for p in sample_pdfs()}
SMALL = min(sample_pdfs(), key=lambda p: p.stat().st_size)


def kinds(cli: Cli) -> dict[str, tuple[str, str | None, str | None]]:
    rows = cli.query("SELECT id, stage, error_kind, error_message FROM jobs")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real small filesystem (a full disk, a read-only mount): needs root to mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def readonly(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


# ---------------------------------------------------------------------------- servers


def test_a_malformed_retry_after_is_ignored_and_noted_not_a_crash(tmp_path: Path) -> None:
    """'²' is a digit to str.isdigit() and not to float(): it crashed every run and resume."""
    faults = {
        "once": Fault.status(503, retry_after="²", times=1),
        "always": Fault.status(503, retry_after="²"),
    }
    with Mirror(dict.fromkeys(faults, SMALL), faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:once", "ext:always"])
        result = cli.run("run", str(ids), *cli.knobs(**{**FAST, "max_attempts": 2}))
        assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
        # A 503 whose Retry-After is ignored is a server error: until the host has answered
        # between two of its failures (when "once" is served), "always" goes back uncounted
        # (the host may be down), so it is asked at least three times for its two attempts.
        assert mirror.requests("once") == 2 and mirror.requests("always") >= 3
    state = kinds(cli)
    assert cli.query("SELECT attempts FROM jobs WHERE id = 'ext:always'")[0][0] == 2
    assert state["ext:once"][:2] == ("done", None)
    assert state["ext:always"][:2] == ("failed", "http_transient")
    assert "(ignored: malformed Retry-After '²')" in (state["ext:always"][2] or "")


def test_a_gzip_encoded_pdf_is_decoded_and_its_size_cap_counts_what_is_written(
    tmp_path: Path,
) -> None:
    big = max(sample_pdfs(), key=lambda p: p.stat().st_size)
    with Mirror({"p": big}, faults={"p": Fault.gzip()}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:p"])
        result = cli.run("run", str(ids), *cli.knobs(**FAST))
        assert result.returncode == 0, result.stdout + result.stderr
    assert len(gzip.compress(big.read_bytes())) < big.stat().st_size  # really compressed
    sha, size = cli.query("SELECT pdf_sha256, pdf_bytes FROM jobs")[0]
    assert sha == hashlib.sha256(big.read_bytes()).hexdigest() and size == big.stat().st_size


@pytest.mark.timeout(180)
def test_gzip_bombs_fail_as_too_large_without_the_memory_to_hold_them(tmp_path: Path) -> None:
    """16 bombs at once, each 200 MB of zeros in 200 KB on the wire, cap 20 MB: each fails
    `too_large`, and rpa's own peak RSS stays far below what decoding them whole would take
    (before: httpx decoded without a bound; 64 bombs took the process to 4.4 GB)."""
    names = [f"bomb{i}" for i in range(16)]
    faults = {n: Fault.gzip_bomb(200) for n in names}
    with Mirror(dict.fromkeys(names, SMALL), faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in names])
        rss = tmp_path / "maxrss"
        # rpa in a process that reports its own peak RSS when it exits (getrusage, not a mock)
        wrapper = (
            "import atexit, resource, sys\n"
            f"atexit.register(lambda: open({str(rss)!r}, 'w').write(str("
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))\n"
            "from rpa.cli import main\nsys.argv = ['rpa'] + sys.argv[1:]\nmain()\n"
        )
        args = ["run", str(ids), *cli.knobs(**FAST, max_pdf_mb=20, download_concurrency=16)]
        result = subprocess.run(
            [sys.executable, "-c", wrapper, *args], cwd=tmp_path, env=clean_env(),
            capture_output=True, text=True, timeout=150,
        )  # fmt: skip
        assert result.returncode == 1, result.stdout + result.stderr
    assert {v[:2] for v in kinds(cli).values()} == {("failed", "too_large")}
    peak_mb = int(rss.read_text()) / 1024
    assert peak_mb < 400, f"peak RSS {peak_mb:.0f} MB"


def test_a_trickling_body_is_cut_by_the_download_deadline_and_retried(tmp_path: Path) -> None:
    """One byte every 0.2 s never trips the read timeout (1 s); --download-timeout 1.5 ends
    it, and the job is retried, then fails as `timeout`, saying why. Its first cut is not
    counted (an outage that begins under a download looks the same), its next two are."""
    with Mirror({"p": SMALL}, faults={"p": Fault.trickle(0.2)}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:p"])
        start = time.monotonic()
        result = cli.run("run", str(ids), *cli.knobs(**{**FAST, "max_attempts": 2},
                                                      download_timeout=1.5))  # fmt: skip
        took = time.monotonic() - start
        assert result.returncode == 1
        assert mirror.requests("p") == 3  # retried twice: the first cut uncounted
    stage, kind, message = kinds(cli)["ext:p"]
    assert (stage, kind) == ("failed", "timeout")
    assert "--download-timeout" in (message or "")
    assert took < 30  # not the hours a slow server could hold a slot


def test_redirects_stay_on_the_same_site_unless_asked(tmp_path: Path) -> None:
    with Mirror({"p": SMALL}) as mirror:
        away = f"http://localhost:{mirror.port}/pdf/p"  # another host name (for 127.0.0.1)
        mirror.set_fault("moved", Fault.redirect_to(away))
        mirror.set_fault("here", Fault.redirect("p"))
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:moved", "ext:here"])
        assert cli.run("run", str(ids), *cli.knobs(**FAST)).returncode == 1
        state = kinds(cli)
        assert state["ext:here"][:2] == ("done", None)  # same host: followed
        assert state["ext:moved"][:2] == ("failed", "http_error")
        assert "to another site (localhost) not followed" in (state["ext:moved"][2] or "")
        assert "--follow-redirects any" in (state["ext:moved"][2] or "")
        # asked for: followed to the other host, through that host's own gate
        other = Cli(tmp_path / "any", mirror.url_template)
        other.workdir.mkdir()
        write_ids(other.workdir / "ids.txt", ["ext:moved"])
        knobs = other.knobs(**FAST, follow_redirects="any")
        result = other.run("run", str(other.workdir / "ids.txt"), *knobs)
        assert result.returncode == 0, result.stdout + result.stderr
        assert kinds(other)["ext:moved"][:2] == ("done", None)


# ---------------------------------------------------------------------------- signals


@pytest.mark.timeout(120)
def test_sigterm_to_the_whole_process_group_is_a_graceful_stop_that_charges_no_paper(
    tmp_path: Path,
) -> None:
    """What `timeout`, systemd and `kill -TERM -PGID` send: every process of the group gets
    it, the extraction processes too. Before, each died under its paper (worker_crashed, and
    a good paper interrupted twice ended as poison)."""
    big = max(sample_pdfs(), key=lambda p: p.stat().st_size)
    files = {f"p{i}": big for i in range(8)}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = cli.knobs(workers=4, extract_workers=2, grace=30, progress=False,
                          poison_after=1)  # fmt: skip
        for _ in range(2):  # twice: a second interruption used to make poison of a paper
            with (cli.workdir / "run.log").open("ab") as log:
                proc = subprocess.Popen(
                    cli.args("resume" if cli.db.exists() else "run",
                             *([] if cli.db.exists() else [str(ids)]), *knobs),
                    cwd=cli.workdir, env=clean_env(), stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip

            def parsing(pid: int = proc.pid) -> bool:
                return any(
                    has_open(child, cli.out / "pdf" / "ext" / f"ext_{n}.pdf")
                    for child in descendants(pid)
                    for n in files
                )

            wait_until(parsing, 60, "an extraction in progress", proc)
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=60) == 130, run_log(cli)
        crashes = cli.query("SELECT count(*) FROM jobs WHERE crashes > 0 OR stage = 'failed'")
        assert crashes[0][0] == 0, run_log(cli)
        lost = cli.query("SELECT count(*) FROM attempts WHERE error_kind = 'worker_crashed'")
        assert lost[0][0] == 0
        assert cli.run("resume", *knobs).returncode == 0, run_log(cli)
    assert cli.count("stage = 'done'") == len(files)


# ---------------------------------------------------------------------------- local state


def test_broken_too_new_or_unusable_databases_are_one_line_and_exit_2(tmp_path: Path) -> None:
    cli = Cli(tmp_path, "http://127.0.0.1:9/pdf/{id}")
    ids = write_ids(tmp_path / "ids.txt", ["2301.00001"])
    cases: dict[str, tuple[Path, str]] = {}
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    cases["garbage"] = (garbage, "not an SQLite database")
    newer = tmp_path / "newer.db"
    open_store(newer).close()
    raw = sqlite3.connect(newer)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    cases["newer"] = (newer, "made by a newer rpa (schema 99")
    torn = tmp_path / "torn.db"  # a real queue whose pages after the first are garbage
    store = open_store(torn)
    store.enqueue([f"2301.{i:05d}" for i in range(1, 5000)], 0.0)
    store.close()
    data = bytearray(torn.read_bytes())
    data[4096:] = os.urandom(len(data) - 4096)
    torn.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(f"{torn}{suffix}").unlink(missing_ok=True)
    cases["torn"] = (torn, "malformed")
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    cases["folder"] = (folder, "is a directory")
    for name, (db, says) in cases.items():
        out = ["--out", str(tmp_path / "out")]
        for args in (["resume", *out], ["run", str(ids), *out], ["status"], ["export"],
                     ["retry"]):  # fmt: skip
            result = cli.run(*args, "--db", str(db))
            where = f"{name} {args[0]}"
            assert result.returncode == 2, (where, result.stdout, result.stderr)
            assert says in result.stderr, (where, result.stderr)
            assert "Traceback" not in result.stderr, where
            assert len(result.stderr.strip().splitlines()) <= 2, (where, result.stderr)


def _remount(path: Path, mode: str) -> bool:
    """remount,`mode`; False while a file is open for writing there (EBUSY: try again)."""
    done = subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.mark.timeout(150)
def test_out_removed_then_read_only_mid_run_pauses_and_charges_no_paper(tmp_path: Path) -> None:
    """--out's files removed mid-run, then --out made read-only for a while: the run makes the
    folders again and fetches the vanished PDFs, then pauses claiming while it cannot write
    (before: 819 of 1,000 papers failed `write_error` in 1.5 s, each after a full download),
    says so, and finishes when it can; no paper failed or charged."""
    pdfs = sample_pdfs()
    names = [f"p{i:02d}" for i in range(24)]
    files = {n: pdfs[i % len(pdfs)] for i, n in enumerate(names)}
    with (
        tmpfs(tmp_path / "out", "64m") as out,
        Mirror(files, faults={n: Fault.slow_body(0.3) for n in names}) as mirror,
    ):
        cli = Cli(tmp_path, mirror.url_template)
        cli.out = out
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in names])
        knobs = cli.knobs(
            progress=False, workers=4, download_concurrency=2, heartbeat_seconds=1, min_free_mb=1
        )
        proc = cli.popen("run", str(ids), *knobs)
        try:
            wait_until(lambda: cli.count("stage = 'done'") >= 4, 60, "4 papers done", proc)
            for kind in ("pdf", "text", "outcome"):
                subprocess.run(["rm", "-rf", str(out / kind)], check=True)
            removed_upto = cli.count("stage = 'done'")  # these may have lost their files
            wait_until(lambda: cli.count("stage = 'done'") >= 8, 60, "8 papers done", proc)
            wait_until(lambda: _remount(out, "ro"), 30, "a read-only --out", proc)
            wait_until(lambda: "cannot be written" in run_log(cli), 30, "the pause said", proc)
            paused_at = cli.count("stage = 'done'")
            time.sleep(3)  # the read-only spell itself
            assert cli.count("stage = 'failed'") == 0
            assert cli.count("stage = 'done'") <= paused_at + 4  # in flight, not new claims
            wait_until(lambda: _remount(out, "rw"), 30, "a writable --out", proc)
            assert proc.wait(timeout=90) == 0, run_log(cli)[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _remount(out, "rw")
        said = run_log(cli)
        assert "Traceback" not in said and "takes files again" in said
        assert cli.count("stage = 'done'") == len(names)
        assert cli.query("SELECT count(*) FROM jobs WHERE attempts > 0")[0][0] == 0
        # the papers done after the removal have their files; those before it, their records
        # in the queue (the files were the user's to remove)
        assert len(list(out.glob("outcome/*/*.json"))) >= len(names) - removed_upto


def test_a_read_only_database_or_output_folder_is_refused_before_any_work(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "ro", "8m") as mount:
        db = mount / "q.db"
        store = open_store(db)
        store.enqueue(["2301.00001"], 0.0)
        store.close()
        readonly(mount)
        cli = Cli(tmp_path, "http://127.0.0.1:9/pdf/{id}")
        result = cli.run("resume", "--db", str(db), "--out", str(tmp_path / "out"))
        assert result.returncode == 2 and "read-only" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        ids = write_ids(tmp_path / "ids.txt", ["2301.00002"])
        result = cli.run("run", str(ids), "--db", str(tmp_path / "q.db"), "--out",
                         str(mount / "out"))  # fmt: skip
        assert result.returncode == 2 and "cannot be written" in result.stderr, result.stderr
        assert not (tmp_path / "q.db").exists()  # refused before the IDs were queued


def test_resume_migrates_a_database_an_older_rpa_made(tmp_path: Path) -> None:
    from test_sqlite import old_database

    db = tmp_path / "old.db"
    old_database(db)
    with Mirror({n.split(".")[0]: SMALL for n in ["2301.00001", "2301.00002"]}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        cli.db = db
        # the old run's settings are the queue's now: its pdf_url is another mirror's
        knobs = ["--pdf-url", mirror.url_template, "--out", str(tmp_path / "out")]
        result = cli.run("resume", "--db", str(db), *knobs, "--reconfigure", "--no-progress")
        assert "schema" not in result.stderr, result.stderr
        assert result.returncode == 1  # (its two queued IDs are not on this mirror: not found)
    assert {v[:2] for k, v in kinds(cli).items() if k.startswith("2301.0000")} >= {
        ("failed", "not_found")
    }


def test_a_relative_out_an_older_rpa_stored_is_anchored_beside_the_queue(
    tmp_path: Path,
) -> None:
    """Schema 4 kept `out` as typed ("old-out"): a resume from another folder wrote to
    another folder's old-out. It is anchored beside the queue's file, and stored so."""
    from test_sqlite import old_database

    (tmp_path / "made").mkdir()
    (elsewhere := tmp_path / "elsewhere").mkdir()
    db = tmp_path / "made" / "old.db"
    old_database(db, out="old-out")
    ids = ["2301.00001", "2301.00002"]
    with Mirror(dict.fromkeys(ids, SMALL)) as mirror:
        cli = Cli(elsewhere, mirror.url_template)
        cli.db = db
        result = cli.run("resume", "--db", str(db), "--pdf-url", mirror.url_template,
                         "--reconfigure", "--no-progress")  # fmt: skip
    anchored = tmp_path / "made" / "old-out"
    assert f"was stored relative by an older rpa: '{anchored}'" in result.stderr + result.stdout
    assert sorted(p.name for p in anchored.glob("outcome/*/*.json")) == [f"{i}.json" for i in ids]
    assert not (elsewhere / "old-out").exists()
    store = open_store(db)
    try:
        assert catalog.queue_settings(store)["out"] == str(anchored)
    finally:
        store.close()


# ---------------------------------------------------------------------------- waits


@pytest.mark.timeout(90)
def test_waits_are_said_even_without_a_live_table_and_progress_lines_keep_coming(
    tmp_path: Path,
) -> None:
    with Mirror({"p": SMALL}, faults={"p": Fault.status(429, retry_after="3600")}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:p", "ext:q"])
        mirror.set_fault("q", Fault.status(429, retry_after="3600"))
        log = tmp_path / "run.log"
        proc = cli.popen("run", str(ids), *cli.knobs(**{**FAST, "progress": True}))
        try:
            wait_until(lambda: "(Retry-After)" in log.read_text(), 30, "the cooldown notice")
            # the non-terminal progress lines go on while nothing can be done (every 5 s)
            wait_until(lambda: log.read_text().count("waiting for") >= 2, 30, "two idle lines")
        finally:
            interrupt(proc, signal.SIGINT)
        text = log.read_text()
        assert "asked us to wait 3600s (Retry-After): no request to it before" in text
        assert "waiting for 127.0.0.1 cooldown until" in text
    # --no-progress: no progress lines, but the disk guard's wait is still said
    cli2 = Cli(tmp_path / "disk", mirror.url_template)
    cli2.workdir.mkdir()
    write_ids(cli2.workdir / "ids.txt", ["ext:p"])
    proc = cli2.popen("run", str(cli2.workdir / "ids.txt"),
                      *cli2.knobs(progress=False, min_free_mb=10**9))  # fmt: skip
    try:
        wait_until(lambda: "claiming paused" in run_log(cli2), 30, "the disk notice", proc)
    finally:
        interrupt(proc, signal.SIGINT)
    said = run_log(cli2)
    assert "below --min-free-mb 1e+09: claiming paused, looking again every 5 s" in said


def test_no_space_left_pauses_claiming_until_space_returns_and_charges_no_paper(
    tmp_path: Path,
) -> None:
    """The outcome folder on its own full filesystem (a tmpfs, filled): writing the record
    fails with ENOSPC. Before: a traceback; then `disk_full` charged until the paper failed
    for good. Now the paper goes back uncounted, claiming pauses (said, naming the folder),
    and when space returns (the filler removed) the paper is done."""
    big = max(sample_pdfs(), key=lambda p: p.stat().st_size)
    with Mirror({"big": big, "small": SMALL}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        outcomes = cli.out / "outcome" / "ext"
        with tmpfs(outcomes, "64k"):
            filler = outcomes / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as fh:
                fh.write(bytes(1 << 20))  # fill it up: no byte left
            ids = write_ids(tmp_path / "ids.txt", ["ext:big"])
            knobs = cli.knobs(**{**FAST, "max_attempts": 2}, min_free_mb=0, workers=1)
            proc = cli.popen("run", str(ids), *knobs)
            try:
                wait_until(lambda: "No space left" in run_log(cli), 60, "the pause said", proc)
                time.sleep(2)  # paused: nothing charged, nothing failed meanwhile
                assert cli.count("stage = 'failed'") == 0
                filler.unlink()
                assert proc.wait(timeout=60) == 0, run_log(cli)[-3000:]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            outcome_attempts = cli.query("SELECT error_kind FROM attempts WHERE stage = 'outcome'")
    said = run_log(cli)
    assert "Traceback" not in said and "cannot be written" in said
    assert kinds(cli)["ext:big"][:2] == ("done", None)
    assert cli.query("SELECT attempts FROM jobs")[0][0] == 0  # never the paper's fault
    assert ("disk_full",) in outcome_attempts and outcome_attempts[-1] == (None,)

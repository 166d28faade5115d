"""What a run waits for, in `rpa status` from another process (issue 18: "the wait said on
screen and in `status`"): each run stores its wait, and since when, on its row at every
heartbeat; the next beat after the wait ends clears it, and so does the run's end.

Real parts: the queue functions on real SQLite and PostgreSQL queues; real runs of the CLI whose
`--out` is full (a real tmpfs, filled) or whose memory is over `--memory-pause` (the machine's
real reading, against a line set below it), read by `rpa status` in another process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, sample_pdfs, write_ids
from test_faults import wait_until
from test_hostile import tmpfs

from rpa.queue import open_store, reads, runs
from rpa.queue.model import RunInfo, Wait
from rpa.run.memory import read_memory
from rpa.show.status_view import make_status
from rpa.testing.mirror import Fault, Mirror

NOW = 1_700_000_000.0
DISK = "--out /data cannot be written (No space left on device): claiming paused"


def _status(db: str, now: float) -> dict[str, Any]:
    store = open_store(db, readonly=True)
    try:
        return reads.status(store, now)
    finally:
        store.close()


def _runs(db: str, now: float) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in _status(db, now)["runs"]}


def _text(status: dict[str, Any]) -> str:
    """The text `rpa status` prints, its wrapped lines joined (a reason may be wrapped)."""
    return " ".join("".join(text for text, _ in line) for line in make_status(status).lines)


def test_a_wait_is_stored_at_each_beat_and_cleared_by_the_next_the_end_and_death(
    queue_db: str,
) -> None:
    store = open_store(queue_db)
    try:
        runs.register_run(store, RunInfo("run-a", "run", NOW - 100, 5.0, "{}"))
        # a wait that began 30 s ago (by this process's monotonic clock): its start is
        # stored by the database's clock (the injected NOW here), whatever this host's is
        runs.heartbeat(store, "run-a", [], 60.0, NOW, wait=Wait(DISK, time.monotonic() - 30))
        row = _runs(queue_db, NOW)["run-a"]
        assert row["status"] == "running" and row["waiting"] == DISK
        assert row["waiting_since"] == pytest.approx(NOW - 30, abs=1.0)
        text = _text(_status(queue_db, NOW))
        assert "waiting since" in text and "(0m30s) for --out /data cannot be written" in text
        # the next beat without a wait clears it
        runs.heartbeat(store, "run-a", [], 60.0, NOW + 1)
        row = _runs(queue_db, NOW + 1)["run-a"]
        assert (row["waiting"], row["waiting_since"]) == (None, None)
        assert "waiting since" not in _text(_status(queue_db, NOW + 1))
        # the run's end clears it, whatever the last beat said
        runs.heartbeat(store, "run-a", [], 60.0, NOW + 2, wait=Wait("memory", time.monotonic()))
        assert _runs(queue_db, NOW + 2)["run-a"]["waiting"] == "memory"
        assert runs.end_run(store, "run-a", "finished", NOW + 3)
        row = _runs(queue_db, NOW + 3)["run-a"]
        assert (row["status"], row["waiting"], row["waiting_since"]) == ("finished", None, None)
        # a run whose heartbeat stopped is shown with what it last said; found dead (crashed),
        # it keeps none
        runs.register_run(store, RunInfo("run-b", "resume", NOW, 5.0, "{}"))
        runs.heartbeat(store, "run-b", [], 60.0, NOW + 1, wait=Wait(DISK, time.monotonic()))
        later = NOW + 100
        status = _status(queue_db, later)
        row = {r["id"]: r for r in status["runs"]}["run-b"]
        assert row["status"] == "dead" and row["waiting"] == DISK
        assert "it last said it was waiting since" in _text(status)
        assert runs.reclaim_stale(store, later, by="run-c").dead_runs == 1
        row = _runs(queue_db, later)["run-b"]
        assert (row["status"], row["waiting"], row["waiting_since"]) == ("crashed", None, None)
    finally:
        store.close()


@contextlib.contextmanager
def _run(cli: Cli, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`rpa run ARGS` in the background; killed if the test leaves it running."""
    proc = cli.popen("run", *args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _finish(proc: subprocess.Popen[bytes], mirror: Mirror, cli: Cli) -> None:
    """Let the held download finish; the run ends, exit 0."""
    mirror.release_stalled()
    assert proc.wait(timeout=60) == 0, (cli.workdir / "run.log").read_text()[-3000:]


def _said_wait(cli: Cli, proc: subprocess.Popen[bytes], *words: str) -> dict[str, Any]:
    """The run's row in `rpa status --json` (another process) once it says it waits for
    something with all of `words` (case aside)."""
    found: list[dict[str, Any]] = []

    def said() -> bool:
        result = cli.run("status", "--json", "--db", str(cli.db))
        if result.returncode != 0 or not json.loads(result.stdout)["runs"]:
            return False  # the queue or the run not made yet
        row = json.loads(result.stdout)["runs"][0]
        found[:] = [row]
        waiting = (row["waiting"] or "").lower()
        return row["status"] == "running" and all(w.lower() in waiting for w in words)

    wait_until(said, 60, f"status saying the run waits for {words}", proc)
    return found[0]


@pytest.mark.timeout(180)
def test_a_full_out_is_said_by_status_while_it_lasts_and_not_after(
    tmp_path: Path, queue_db: str
) -> None:
    """The outcome folder on its own full filesystem: the run pauses claiming (rpa.run.disk);
    `rpa status --json` and its text, in another process, say what the run waits for, why and
    since when. Once space returns the run goes on (a download held by the server keeps it
    alive) and status says no wait; after the run's end, none either."""
    big = max(sample_pdfs(), key=lambda p: p.stat().st_size)
    with Mirror({"big": big, "held": sample_pdfs()[0]}) as mirror:
        mirror.set_fault("held", Fault.slow_body(120.0))  # until release_stalled()
        cli = Cli(tmp_path, mirror.url_template, queue_db)
        outcomes = cli.out / "outcome" / "ext"
        with tmpfs(outcomes, "64k"):
            filler = outcomes / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as fh:
                fh.write(bytes(1 << 20))  # no byte left
            ids = write_ids(tmp_path / "ids.txt", ["ext:big", "ext:held"])
            # two workers: the held download keeps the run alive whatever order they go in
            knobs = cli.knobs(
                workers=2, min_free_mb=0, progress=False, heartbeat_seconds=0.5,
                read_timeout=150, retry_base=0.05, retry_max=0.5,
            )  # fmt: skip
            with _run(cli, str(ids), *knobs) as proc:
                started = time.time()
                # the write's error first, then the disk guard's look: no space left
                row = _said_wait(cli, proc, "cannot be written", "no space left")
                assert "claiming paused" in row["waiting"]
                # since when: after the run started, not after the status was read (the
                # database's clock is this machine's here)
                assert started - 5 < row["waiting_since"] <= time.time()
                text = cli.run("status", "--db", str(cli.db))
                assert text.returncode == 0, text.stderr
                shown = " ".join(text.stdout.split())
                assert "waiting since" in shown and "cannot be written" in shown, shown
                # the same wait keeps its start from beat to beat
                again = cli.status()["runs"][0]
                assert again["waiting_since"] == pytest.approx(row["waiting_since"], abs=0.5)
                filler.unlink()  # space returns: the run goes on

                def cleared() -> bool:
                    now = cli.status()
                    r = now["runs"][0]
                    return (r["status"], r["waiting"], r["waiting_since"]) == (
                        "running", None, None) and now["totals"]["done"] == 1  # fmt: skip

                wait_until(cleared, 60, "status saying the run no longer waits", proc)
                assert proc.poll() is None, "the run ended: the wait's end was not seen live"
                _finish(proc, mirror, cli)
    after = cli.status()
    run = after["runs"][0]
    assert (run["status"], run["waiting"], run["waiting_since"]) == ("finished", None, None)
    assert after["totals"]["done"] == 2 and after["totals"]["failed"] == 0


@pytest.mark.timeout(180)
def test_a_memory_pause_is_said_by_status_with_its_figures_and_not_after_the_run(
    tmp_path: Path,
) -> None:
    """The memory governor's pause, by the machine's real reading: `--memory-pause` set at its
    least (1%), below the memory in use now, so the run is paused from its first sample (paused
    is not stopped: one paper at a time still goes; a download held by the server keeps the run
    alive). `rpa status --json` from another process says the run waits for memory, with the
    figures and the lines; after the run, nothing."""
    if read_memory().fraction < 0.02:
        pytest.skip("this machine uses under 2% of its memory: no pause line below it")
    with Mirror({"held": sample_pdfs()[0]}) as mirror:
        mirror.set_fault("held", Fault.slow_body(120.0))  # until release_stalled()
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:held"])
        knobs = cli.knobs(
            progress=False, heartbeat_seconds=0.5, read_timeout=150,
            memory_pause="0.01", memory_resume="0", memory_kill="0.9999",
        )  # fmt: skip
        with _run(cli, str(ids), *knobs) as proc:
            row = _said_wait(cli, proc, "memory to fall under --memory-resume 0%")
            assert "GiB in use (" in row["waiting"] and "over --memory-pause 1%" in row["waiting"]
            assert row["waiting_since"] is not None
            assert row["waiting_since"] <= cli.status()["generated_at"]
            _finish(proc, mirror, cli)
    run = cli.status()["runs"][0]
    assert (run["status"], run["waiting"], run["waiting_since"]) == ("finished", None, None)
    assert json.loads(json.dumps(run)) == run  # plain JSON


def test_status_says_how_long_a_live_run_has_been_silent(tmp_path: Path) -> None:
    """After kill -9 a run stays `running` until `dead_after` passes without a heartbeat (no
    one can tell a killed run from a paused or cut-off one sooner): meanwhile `rpa status`
    says how long it has been silent, and when it will count as dead."""
    db = str(tmp_path / "q.db")
    store = open_store(db)
    runs.register_run(store, RunInfo("r-1", "run", NOW, 5.0, "{}"))
    store.close()
    fresh, quiet = (" ".join(_text(_status(db, NOW + t)).split()) for t in (3, 14))
    assert "(3s ago)" in fresh and "silent" not in fresh
    assert "(14s ago: silent; dead once 20s pass without one)" in quiet
    assert "dead once" not in _text(_status(db, NOW + 21))  # dead now: said as its status

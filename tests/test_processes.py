"""`--processes N`: several conductor processes on one queue, one table, one summary.

End to end with the real CLI, a real HTTP server on 127.0.0.1 serving real PDFs, a real SQLite
queue and real processes; the merging of the processes' figures as plain functions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from conftest import Cli, sample_pdfs, wait_for, write_ids

from rpa.gates import GateStatistics
from rpa.metrics import WindowStats
from rpa.queue.model import Totals
from rpa.run.merge import merge_snapshots, merge_summaries, merge_windows
from rpa.run.processes import shares
from rpa.run.snapshot import PoolStatistics, RunSnapshot, RunSummary, StageSnapshot
from rpa.testing.mirror import Fault, Mirror

COPIES = 12


def _mirror(faults: dict[str, Fault] | None = None) -> tuple[Mirror, list[str]]:
    files = {f"c{k}-{p.stem}": p for k in range(COPIES) for p in sample_pdfs()}
    return Mirror(files, faults=faults), [f"ext:{name}" for name in files]


def _once(cli: Cli) -> None:
    """Every paper extracted and recorded exactly once, whatever ran it."""
    rows = cli.query(
        "SELECT job_id, count(*) FROM attempts WHERE stage = 'outcome' AND outcome = 'ok' "
        "GROUP BY job_id HAVING count(*) > 1"
    )
    assert rows == []


def test_two_processes_do_the_queue_once_with_one_summary(tmp_path: Path) -> None:
    mirror, ids = _mirror()
    with mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids_file = write_ids(tmp_path / "ids.txt", ids)
        result = cli.run("run", str(ids_file), "--processes", "2",
                         *cli.knobs(workers=8, extract_workers=2))  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "(2 processes) finished" in result.stdout
        assert f"queue: {len(ids)} done, 0 failed, 0 remaining" in result.stdout
        assert "Traceback" not in result.stderr
        assert all(mirror.requests(i.removeprefix("ext:")) == 1 for i in ids)
    _once(cli)
    # two runs did the work, each its share: both are in the queue's runs
    runs = cli.query("SELECT count(DISTINCT run_id) FROM attempts WHERE stage = 'outcome'")
    assert runs[0][0] == 2
    assert cli.status()["totals"]["done"] == len(ids)


def test_a_small_queue_is_shared_by_the_group_s_processes(tmp_path: Path) -> None:
    """24 papers, 2 processes of 100 workers each: the first to claim takes its share, not
    the whole queue while the other process (and its extraction core) has nothing to do. (The
    other may start late on a loaded machine, and the first then does more: a quarter each
    at least.)"""
    mirror, ids = _mirror()
    with mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids_file = write_ids(tmp_path / "ids.txt", ids[:24])
        result = cli.run("run", str(ids_file), "--processes", "2",
                         *cli.knobs(extract_workers=2))  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
    _once(cli)
    done_by = cli.query(
        "SELECT run_id, count(*) FROM attempts WHERE stage = 'outcome' AND outcome = 'ok' "
        "GROUP BY run_id"
    )
    assert len(done_by) == 2 and min(n for _, n in done_by) >= 6, done_by


def test_json_lines_of_a_group(tmp_path: Path) -> None:
    """--log-format json off a terminal: every stdout line is JSON, the group's summary last."""
    mirror, ids = _mirror()
    with mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids_file = write_ids(tmp_path / "ids.txt", ids[:20])
        result = cli.run("run", str(ids_file), "--processes", "2", "--log-format", "json",
                         *cli.knobs(workers=8, extract_workers=2))  # fmt: skip
        assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    summary = lines[-1]
    assert summary["status"] == "finished" and "(2 processes)" in summary["run_id"]
    assert summary["done"] == 20


def test_ctrl_c_stops_every_process_and_resume_finishes(tmp_path: Path) -> None:
    """SIGINT to the group's process (as Ctrl-C sends it) reaches each of its processes; the
    run ends interrupted (130); `rpa resume --processes 2` finishes with nothing done twice."""
    stalled = f"c{COPIES - 1}-{sample_pdfs()[-1].stem}"
    mirror, ids = _mirror({stalled: Fault.slow_body(60.0, times=1)})
    with mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids_file = write_ids(tmp_path / "ids.txt", ids)
        proc = cli.popen("run", str(ids_file), "--processes", "2",
                         *cli.knobs(workers=8, extract_workers=2, grace=2))  # fmt: skip
        try:
            # the stalled paper holds the run open: done papers while one is not
            wait_for(lambda: cli.count("stage = 'done'") >= 5 and mirror.requests(stalled) >= 1,
                     60, "papers done while one download stalls")  # fmt: skip
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        log = (tmp_path / "run.log").read_text()
        assert code == 130, log
        assert "interrupted" in log and "Traceback" not in log
        # each process saw its sibling's leases at its end: not "another live run" of the queue
        assert "in another live run" not in log, log
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        left = [r for r in ps.splitlines() if str(cli.db) in r]
        assert left == [], left  # no process of the group outlived it
        mirror.release_stalled()
        again = cli.run("resume", "--db", str(cli.db), "--processes", "2", timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"queue: {len(ids)} done, 0 failed, 0 remaining" in again.stdout
    _once(cli)


# ---- the figures of several processes as one -------------------------------------------------


def _snap(done: int, in_use: int, lag_max: float, elapsed: float, queued: int) -> RunSnapshot:
    gate = GateStatistics("extract", in_use, 2, 1, 0.01, 0.02, done)
    stage = StageSnapshot("extract", 1, done, 0, 0, WindowStats(done, 0.1, 0.2, 0.3, 0.4))
    pool = PoolStatistics("process", 2, 2, in_use, in_use, 2, 0, 0, 0, 0)
    return RunSnapshot(
        run_id="r", elapsed=elapsed, gates=[gate], stages=[stage],
        totals=Totals(queued=queued, done=done), papers_per_min=60.0, pages_per_s=10.0,
        mb_per_s=1.0, eta_seconds=None, lag=WindowStats(10, 0.001, 0.002, 0.003, lag_max),
        workers_busy=3, workers_total=4, pool=pool, done_this_run=done, failed_this_run=0,
    )  # fmt: skip


def test_snapshots_add_up() -> None:
    merged = merge_snapshots([_snap(10, 1, 0.004, 1.0, 50), _snap(30, 2, 0.009, 2.0, 40)], "g", 3.0)
    assert merged.done_this_run == 40 and merged.workers_total == 8
    assert merged.gates[0].in_use == 3 and merged.gates[0].capacity == 4
    assert (
        merged.stages[0].done == 40 and merged.pool.workers == 4 and merged.pool.mode == "process"
    )
    assert merged.totals.queued == 40  # the newest report's queue
    assert merged.papers_per_min == 120.0 and merged.eta_seconds == 40 / 120 * 60
    assert merged.lag.max == 0.009 and merged.lag.count == 20


def test_percentiles_merge_by_count_and_by_maximum() -> None:
    a, b = WindowStats(1, 1.0, 1.0, 1.0, 1.0), WindowStats(3, 3.0, 5.0, 6.0, 7.0)
    merged = merge_windows([a, b, WindowStats(0, 0.0, 0.0, 0.0, 0.0)])
    assert merged == WindowStats(4, 2.5, 5.0, 6.0, 7.0)
    assert merge_windows([]).count == 0


def test_summaries_take_the_worst_status_and_the_last_totals() -> None:
    def summary(status: str, done: int, queued: int) -> RunSummary:
        return RunSummary("r", status, done, 0, Totals(queued=queued, done=done), 1.0,
                          WindowStats(0, 0, 0, 0, 0), {"not_found": 1}, {}, [], [], [])  # fmt: skip

    merged = merge_summaries([summary("finished", 5, 3), summary("interrupted", 7, 1)], "g", 9.0)
    assert merged.status == "interrupted" and merged.exit_code == 130
    assert merged.done == 12 and merged.totals.queued == 1 and merged.failures == {"not_found": 2}
    crashed = merge_summaries([summary("crashed", 1, 0), summary("finished", 1, 0)], "g", 1.0)
    assert crashed.status == "crashed"


def test_shares_are_even_and_never_zero() -> None:
    assert shares(200, 3) == [67, 67, 66]
    assert shares(2, 2) == [1, 1]
    assert shares(1, 3) == [1, 1, 1]


def _group_processes(db: Path) -> list[int]:
    """The pids of the group's processes: `rpa resume --db DB` (found by pid in /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"resume" in args and str(db).encode() in args:
            found.append(int(entry.name))
    return found


def test_a_process_killed_is_named_and_the_others_or_resume_finish(tmp_path: Path) -> None:
    """kill -9 of one process of the group: the other goes on and, its own work done, waits
    for the killed one's leases until its heartbeat is found stale, then does those papers:
    the run ends with every paper done once (exit 0), the summary naming the lost process."""
    stalled = f"c{COPIES - 1}-{sample_pdfs()[-1].stem}"
    mirror, ids = _mirror({stalled: Fault.slow_body(3.0, times=1)})
    with mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids_file = write_ids(tmp_path / "ids.txt", ids)
        knobs = cli.knobs(workers=8, extract_workers=2, heartbeat_seconds=0.5)
        proc = cli.popen("run", str(ids_file), "--processes", "2", *knobs)

        def at_work() -> bool:
            return len(_group_processes(cli.db)) == 2 and cli.count("stage = 'done'") >= 3

        try:
            wait_for(at_work, 60, "both processes at work")
            victim = _group_processes(cli.db)[0]
            os.kill(victim, signal.SIGKILL)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        log = (tmp_path / "run.log").read_text()
        assert code == 0, log
        assert f"(pid {victim}) ended with signal 9 and no summary" in log
        assert "reclaimed" in log and "Traceback" not in log
        assert f"queue: {len(ids)} done, 0 failed, 0 remaining" in log
        again = cli.run("resume", "--db", str(cli.db))
        assert again.returncode == 0 and "nothing left to do" in again.stdout
    _once(cli)

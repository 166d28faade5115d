"""Past one process: many rpa processes on one queue, with a real PostgreSQL server (and the
same on one SQLite file), one loopback server with a rate limit, a SIGKILL mid-run.

The server's own request timestamps never show more than N requests in any T-second window
across all processes; every job is done once; no PDF is fetched twice except those in flight
at the kill; the killed run's leases go to the live ones after its heartbeat stops.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Cli, clean_env, sample_pdfs, write_ids
from test_faults import most_in_any_window, wait_until

from rpa.queue import open_store, reads
from rpa.testing.mirror import Fault, Mirror

N, T = 3, 1.0  # the budget: at most 3 requests in any second, for the whole fleet


def fleet_knobs(cli: Cli, db: str) -> list[str]:
    return [
        "--db", db, "--out", str(cli.out), "--pdf-url", cli.template,
        "--rate-limits", f"127.0.0.1={N}/{T:g}s", "--workers", "6", "--extract-workers", "1",
        "--no-progress", "--heartbeat-seconds", "0.5", "--connect-timeout", "2",
        "--read-timeout", "3", "--retry-base", "0.05", "--retry-max", "0.5",
    ]  # fmt: skip


def start(cli: Cli, *args: str) -> subprocess.Popen[bytes]:
    with (cli.workdir / "run.log").open("ab") as log:
        return subprocess.Popen(
            cli.args(*args), cwd=cli.workdir, env=clean_env(), stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


def fleet_run(tmp_path: Path, db: str) -> None:
    files = {f"{p.stem}-{i}": p for i in range(5) for p in sample_pdfs()}  # 30 papers
    # every download takes a moment, so the kill finds some in flight
    faults = {name: Fault.slow_body(0.3) for name in files}
    with Mirror(files, faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = fleet_knobs(cli, db)
        first = start(cli, "run", str(ids), *knobs)
        wait_until(lambda: mirror.total_requests >= 1, 60, "the first run's requests", first)
        others = [start(cli, "resume", *knobs) for _ in range(2)]
        victim = others[0]
        wait_until(lambda: mirror.total_requests >= 9, 60, "three runs at work", victim)
        in_flight_at_kill = mirror.total_requests
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        codes = [p.wait(timeout=180) for p in (first, others[1])]
        log = (cli.workdir / "run.log").read_text(errors="replace")
        assert codes == [0, 0], log[-4000:]
        # a resume finds the queue finished (or finishes it) and has nothing left
        resumed = subprocess.run(
            cli.args("resume", *knobs), cwd=cli.workdir, env=clean_env(),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        times = mirror.request_times()
        counts = {name: mirror.requests(name) for name in files}
    store = open_store(db, readonly=True)
    try:
        status = reads.status(store, 0.0)
        results = reads.results_page(store, "", 1000)
        extracted_twice = store.sql.rows(
            "SELECT job_id, count(*) AS n FROM attempts WHERE stage = 'outcome' "
            "AND outcome = 'ok' GROUP BY job_id HAVING count(*) > 1"
        )
    finally:
        store.close()
    assert status["totals"]["done"] == len(files) and status["totals"]["failed"] == 0
    assert len(results) == len(files) and extracted_twice == []  # each job done once
    # the budget held across all processes, as the server saw it
    assert most_in_any_window(times, T) <= N, sorted(times)
    # nothing fetched twice but what the kill cut short (it held at most 6 jobs)
    again = [name for name, n in counts.items() if n > 1]
    assert len(again) <= 6 and all(n <= 2 for n in counts.values()), counts
    assert in_flight_at_kill < len(files)  # the kill came mid-run: this proved something
    runs = {r["status"] for r in status["runs"]}
    assert "crashed" in runs and "finished" in runs  # the killed run was found dead


@pytest.mark.timeout(300)
def test_three_processes_on_one_postgres_queue_one_budget_nothing_lost(
    tmp_path: Path, postgres_db: Callable[[], str]
) -> None:
    fleet_run(tmp_path, postgres_db())


@pytest.mark.timeout(300)
def test_three_processes_on_one_sqlite_queue_share_the_budget_too(tmp_path: Path) -> None:
    fleet_run(tmp_path, str(tmp_path / "fleet.db"))
